/* timers: one-shot callbacks at monotonic times, run by the main loop. */
#ifndef ENVOY_ROUTER_TIMERS_H
#define ENVOY_ROUTER_TIMERS_H

#include <stdint.h>

struct timers;
typedef void (*timer_fn)(void *arg);

/* Monotonic clock in milliseconds (CLOCK_MONOTONIC). */
int64_t clock_ms(void);

/* Wall clock in seconds since the epoch, with sub-second precision. */
double clock_wall(void);

/* New empty set of timers; NULL when out of memory. */
struct timers *timers_new(void);

/* Frees the set without running anything; timers_free(NULL) does nothing. */
void timers_free(struct timers *t);

/* Runs fn(arg) once at `at_ms` (or on the first timers_run after it).
 * Returns an id > 0 for timers_cancel, or 0 when out of memory. */
uint64_t timers_add(struct timers *t, int64_t at_ms, timer_fn fn, void *arg);

/* Cancels a pending timer; unknown or already-run ids are ignored. */
void timers_cancel(struct timers *t, uint64_t id);

/* Earliest pending time, or INT64_MAX when none is pending. */
int64_t timers_next(const struct timers *t);

/* Runs, in time order, every timer due at now_ms. A callback may add or
 * cancel timers; timers it adds that are already due run in this call too.
 * Returns how many ran. */
int timers_run(struct timers *t, int64_t now_ms);

#endif
