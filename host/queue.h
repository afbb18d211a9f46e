/* queue: the work queue of pod keys ("namespace/name").
 *
 * Semantics (those of client-go's rate-limited work queue):
 * - a key is held at most once: adding a key already waiting does nothing
 *   (except bringing a delayed key forward when the new time is earlier);
 * - a key being processed (popped, not yet done) is never handed out twice;
 *   adding it meanwhile marks it dirty and it comes back when done;
 * - queue_retry schedules a key after a per-key exponential backoff,
 *   base * 2^failures capped at max; queue_forget resets its failures.
 * Times are monotonic milliseconds supplied by the caller, so tests control
 * the clock. Not thread-safe: owned by the main loop.
 * Metrics (labelled name=<queue name>) are updated inside: workqueue_depth,
 * workqueue_adds_total, workqueue_retries_total,
 * workqueue_queue_duration_seconds, workqueue_work_duration_seconds,
 * workqueue_longest_running_processor_seconds is not kept. */
#ifndef ENVOY_ROUTER_QUEUE_H
#define ENVOY_ROUTER_QUEUE_H

#include <stddef.h>
#include <stdint.h>

struct queue;

/* New empty queue named `name` (for metrics), with retry backoff from
 * base_ms doubling up to max_ms. NULL when out of memory. */
struct queue *queue_new(const char *name, int64_t base_ms, int64_t max_ms);

/* Frees the queue and its keys; queue_free(NULL) does nothing. */
void queue_free(struct queue *q);

/* Makes `key` ready now (see the rules above). The key is copied.
 * Returns 0 or -ENOMEM. */
int queue_add(struct queue *q, const char *key, int64_t now_ms);

/* Makes `key` ready at now_ms + delay_ms, unless it is already due sooner.
 * Returns 0 or -ENOMEM. */
int queue_add_after(struct queue *q, const char *key, int64_t delay_ms, int64_t now_ms);

/* Hands out the oldest ready key, or NULL if none is ready at now_ms. The
 * key stays owned by the queue and valid until queue_done for it. */
const char *queue_pop(struct queue *q, int64_t now_ms);

/* Ends processing of a popped key. If it was added meanwhile, it is ready
 * again at once. Unknown keys are ignored. */
void queue_done(struct queue *q, const char *key, int64_t now_ms);

/* Schedules `key` again after its backoff and counts a failure; call before
 * or after queue_done. Returns the delay chosen in ms, or -ENOMEM. */
int64_t queue_retry(struct queue *q, const char *key, int64_t now_ms);

/* Forgets the failures of `key` (after a success). */
void queue_forget(struct queue *q, const char *key);

/* Forgets the failures of every key (the API server answers again after an
 * outage: what failed during it starts again from the base backoff). Keys
 * waiting keep their place and due time. */
void queue_forget_all(struct queue *q);

/* Failures counted for `key` since it last succeeded. */
unsigned queue_failures(const struct queue *q, const char *key);

/* Monotonic ms at which the next delayed key becomes ready; INT64_MAX if
 * none is delayed. Ready keys are not counted: check queue_ready first. */
int64_t queue_next_deadline(const struct queue *q);

/* Keys ready now (waiting, not delayed, not in processing). */
size_t queue_ready(const struct queue *q);

/* Keys waiting, ready or delayed (the workqueue_depth gauge counts ready). */
size_t queue_len(const struct queue *q);

/* Keys popped and not yet done. */
size_t queue_processing(const struct queue *q);

#endif
