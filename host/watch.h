/* watch: keeps one resource's cache in step with the API server (an
 * informer): list (paged), then watch from the list's resourceVersion with
 * bookmarks; on 410 Gone (status or ERROR event) or a malformed event,
 * relist; on a dropped or failed stream, resume from the last
 * resourceVersion after a jittered backoff, so no event is lost. Objects go
 * to core (core_list_* / core_watch_event), which queues the pods they
 * concern. Main loop only. */
#ifndef ENVOY_ROUTER_WATCH_H
#define ENVOY_ROUTER_WATCH_H

#include <stdbool.h>

#include "core.h"
#include "kubepath.h"
#include "transport.h"
#include "timers.h"

struct watch;

/* New idle watch of `res` (core's name: "pods", "services", ...) of
 * resource r in namespace ns ("" = all) with label selector `selector`,
 * calling the API server through `io` (copied; kube_transport() of the
 * client) and timing its backoffs on io's clock with `t`. Strings are
 * copied. NULL when out of memory. */
struct watch *watch_new(const struct kube_transport *io, struct timers *t, struct core *core,
                        const char *res, const struct kube_resource *r,
                        const char *ns, const char *selector);

/* Cancels its call and timer and frees; watch_free(NULL) does nothing. */
void watch_free(struct watch *w);

/* Starts with a list (or restarts with a relist if running). */
void watch_start(struct watch *w);

/* True once a list has completed since watch_start. */
bool watch_synced(const struct watch *w);

/* Changes the label selector; if different, relists with it. Returns 0 or
 * -ENOMEM. */
int watch_set_selector(struct watch *w, const char *selector);

/* Lists failed in a row before a watch counts as failing. */
#define WATCH_FAILING_AFTER 4

/* NULL while the watch lists fine; once WATCH_FAILING_AFTER lists in a row
 * were refused or malformed (its cache is going stale), why ("pods: list
 * failed 4 times in a row (HTTP 403)"), until a list succeeds. The
 * gauge envoy_router_watch_failing{resource} follows it. Valid until the
 * next call into w. */
const char *watch_failing(const struct watch *w);

/* Lists again (same selector), for the core to project every object anew;
 * `reason` goes to the log and the restarts metric. */
void watch_relist(struct watch *w, const char *reason);

/* The resource name given to watch_new. */
const char *watch_resource(const struct watch *w);

#endif
