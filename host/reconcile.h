/* reconcile: takes pod keys from the queue, asks core for each pod's plan
 * and carries the writes out through kube, at most `max_active` pods at a
 * time. A key is done when every write of its plan has an answer: then it
 * is forgotten (success) or retried with the queue's backoff (script error,
 * conflict, rejected or failed write). Metrics: controller_runtime_reconcile_*
 * with controller="pod", controller_runtime_active_workers,
 * envoy_router_script_errors_total. Main loop only. */
#ifndef ENVOY_ROUTER_RECONCILE_H
#define ENVOY_ROUTER_RECONCILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "transport.h"
#include "queue.h"

struct reconciler;

/* Something a pod's owner should hear about: reason (CamelCase) and message
 * for the pod of `plan` (a Kubernetes Event, a log line). */
typedef void (*reconcile_report_fn)(void *arg, const struct core_plan *plan,
                                    const char *reason, const char *message);

/* Pods to take at once for `max_writes` writes in flight (the client's
 * limit): twice as many, so that when a write is answered the next one is
 * already planned and waiting in the client's queue, not behind a trip
 * through the work queue and the planner on the next turn of the loop. */
unsigned reconciler_jobs_for(unsigned max_writes);

/* New reconciler, paused, writing through `io` (copied; kube_transport()
 * of the client) and timing keys on io's clock. NULL when out of memory. */
struct reconciler *reconciler_new(struct queue *q, struct core *core,
                                  const struct kube_transport *io, unsigned max_active);

/* Frees it and any job still running (their calls must be cancelled first,
 * e.g. by kube_free); reconciler_free(NULL) does nothing. */
void reconciler_free(struct reconciler *r);

/* Where problems are reported (default: logged only). */
void reconciler_set_reporter(struct reconciler *r, reconcile_report_fn fn, void *arg);

/* While paused (caches not synced, not the leader, shutting down) no new
 * key is taken; jobs already started finish. */
void reconciler_pause(struct reconciler *r, bool paused);

/* Starts jobs for ready keys while fewer than max_active run. */
void reconciler_pump(struct reconciler *r, int64_t now_ms);

/* True when reconciler_pump would take a ready key now (not paused, a
 * slot free). */
bool reconciler_can_take(const struct reconciler *r);

/* Drops every job at once (leadership lost): their kube calls, queued,
 * in flight or waiting for a retry, are cancelled without callbacks, their
 * keys are done in the queue without a retry (a new leader reconciles
 * every pod anyway). Returns how many calls were cancelled. */
size_t reconciler_cancel(struct reconciler *r);

/* Jobs running now. */
size_t reconciler_active(const struct reconciler *r);

/* Writes sent since start (for tests and the restart-without-writes check). */
uint64_t reconciler_writes(const struct reconciler *r);

#endif
