/* events: Kubernetes Events (core/v1) on pods, for the problems the
 * reconciler reports (NameConflict, ScriptError, ChildRejected, RouteNotAccepted,
 * RouteRefsUnresolved, RouteNotAnswered).
 *
 * Each Event is type Warning, names the pod (with its uid) as involvedObject
 * and envoy-router as source and reporting component. A problem repeated
 * with the same (pod uid, reason, message) within the window (10 minutes
 * since it was last seen) is not a new Event: the existing one's count and
 * lastTimestamp are updated with a PATCH, at most once per update interval
 * (1 minute), carrying every repetition seen meanwhile. Writes to the API
 * server pass a global token bucket (10/s, burst 25); what does not fit is
 * dropped and counted in envoy_router_events_dropped_total. Only an enabled
 * recorder (the leader's) writes. Main loop only. */
#ifndef ENVOY_ROUTER_EVENTS_H
#define ENVOY_ROUTER_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kube.h"
#include "timers.h"

struct events;

#define EVENTS_RATE 10.0
#define EVENTS_BURST 25
#define EVENTS_WINDOW_MS (10 * 60 * 1000)
#define EVENTS_UPDATE_MS (60 * 1000)
#define EVENTS_MAX_ENTRIES 4096

struct events_options {
    const char *component;          /* source.component, reportingComponent */
    const char *instance;           /* reportingInstance (the identity) */
    double rate;                    /* writes per second; 0: EVENTS_RATE */
    unsigned burst;                 /* 0: EVENTS_BURST */
    int64_t window_ms;              /* 0: EVENTS_WINDOW_MS */
    int64_t update_ms;              /* 0: EVENTS_UPDATE_MS */
    size_t max_entries;             /* remembered Events; 0: EVENTS_MAX_ENTRIES */
    const struct kube_transport *transport; /* NULL: kube_transport(k) */
    double (*wall)(void);           /* seconds since the epoch; NULL: clock_wall */
};

/* New recorder, disabled. Strings and the transport are copied. `t` runs
 * the deferred count updates. NULL when out of memory or without component
 * or instance. */
struct events *events_new(struct kube *k, struct timers *t, const struct events_options *o);

/* Cancels its calls and timers and frees; events_free(NULL) does nothing.
 * Free it before the kube client and the timers. */
void events_free(struct events *e);

/* Enables writing (the leader) or disables it (standby, shutting down):
 * while disabled, reports and due updates are ignored. Disabling forgets
 * every Event remembered: their writes queued, in flight or waiting for a
 * retry are cancelled without callbacks and their due count updates
 * dropped, so nothing of a replica that lost the Lease lands later.
 * Returns how many calls were cancelled. */
size_t events_set_enabled(struct events *e, bool enabled);

/* Reports a problem of pod ns/name (uid): creates an Event, or counts a
 * repetition of a recent one. Copies what it keeps. */
void events_report(struct events *e, const char *ns, const char *pod, const char *uid,
                   const char *reason, const char *message);

/* Events remembered now (for tests). */
size_t events_tracked(const struct events *e);

/* --- the global rate limit (exported for the tests) --------------------------- */

struct events_bucket {
    double tokens, rate, burst;
    int64_t last_ms;
};

/* A full bucket of `burst` tokens refilled at `rate` per second. */
void events_bucket_init(struct events_bucket *b, double rate, double burst, int64_t now_ms);

/* Takes one token at now_ms: true when there was one. */
bool events_bucket_take(struct events_bucket *b, int64_t now_ms);

#endif
