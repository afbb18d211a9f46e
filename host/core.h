/* core: the host's trusted Lua state (host/core.lua, compiled in).
 *
 * It holds the caches (selected pods, observed children), decodes list and
 * watch bodies with lua-cjson, and plans each pod's writes by running the
 * user's scripts through a sandbox and comparing with what is observed,
 * and reads and builds the leader's Lease.
 * Every call into Lua is protected; errors come back as return values with a
 * message. Main loop only. */
#ifndef ENVOY_ROUTER_CORE_H
#define ENVOY_ROUTER_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sandbox.h"

struct core;

/* Called for each pod key ("namespace/name") that needs a reconcile. */
typedef void (*core_enqueue_fn)(void *arg, const char *key);

/* The resource names core knows: "pods" and the child resources. */
extern const char *const core_child_resources[3];

/* New core rendering with `sb` (not owned; may be NULL for a core that only
 * caches). Returns NULL with err on failure (out of memory, core.lua broken). */
struct core *core_new(struct sandbox *sb, core_enqueue_fn enqueue, void *arg,
                      char *err, size_t errlen);

/* The route drain delay: a pod's Service and EndpointSlice are deleted this
 * many ms after its HTTPRoutes are seen gone (plans say when to look again). */
void core_set_drain(struct core *c, int64_t drain_ms);

/* The clock of host.now_ms (NULL: clock_ms); for tests. */
void core_set_clock(struct core *c, int64_t (*clock)(void));

/* Closes the state; core_free(NULL) does nothing. */
void core_free(struct core *c);

/* Renders with `sb` from now on (the caller frees the previous one). */
void core_set_sandbox(struct core *c, struct sandbox *sb);

/* Renders and checks every cached pod with `candidate`, writing nothing.
 * Returns 0, or -1 with the first failure ("pod ns/name: ...") in err. */
int core_validate(struct core *c, struct sandbox *candidate, char *err, size_t errlen);

/* The same in slices, so the main loop serves between them: begin takes
 * the cached pods' keys (returns how many, or -1 with err; it replaces a
 * validation in progress); each step renders with `candidate` until every
 * pod is done or `budget_ms` has passed (at least one pod per step).
 * A step returns 1 when every pod passed, 0 when some remain, -1 with the
 * first failure ("pod ns/name: ...") in err. */
int core_validate_begin(struct core *c, char *err, size_t errlen);
int core_validate_step(struct core *c, struct sandbox *candidate, int64_t budget_ms,
                       char *err, size_t errlen);

/* A list of `res` begins / one page of it / it ended. A page returns its
 * resourceVersion and continue token in malloc'd strings (caller frees).
 * list_end drops objects the list did not contain and queues their pods.
 * Return 0, or -1 with err (malformed body). */
int core_list_begin(struct core *c, const char *res);
int core_list_page(struct core *c, const char *res, const char *body, size_t len,
                   char **rv, char **cont, char *err, size_t errlen);
int core_list_end(struct core *c, const char *res);

/* One line of a watch stream. Fills *rv (malloc'd, or NULL for events
 * without one) and, for an ERROR event, *code (e.g. 410) else 0.
 * Returns 0, or -1 with err (malformed event: the caller restarts). */
int core_watch_event(struct core *c, const char *res, const char *line, size_t len,
                     char **rv, long *code, char *err, size_t errlen);

/* One write of a plan. */
struct core_action {
    char *verb;          /* "create", "apply" (both server-side apply), "delete",
                          * "unfinalize" (a pod), "get" (a probe of a taken name) */
    char *res;           /* "services", "endpointslices", "httproutes" */
    char *key;           /* object key "namespace/name" */
    char *kind;          /* "Service", ... */
    char *method;        /* "PATCH", "DELETE", "GET" */
    char *path;          /* with query */
    char *content_type;
    char *body;
    size_t body_len;
    char *why;           /* apply: the first field that differs, or NULL */
};

/* Something the pod's owner should hear about (a Kubernetes Event). */
struct core_problem {
    char *reason;        /* "NameConflict", "RouteNotAccepted", ... */
    char *message;
    bool notice;         /* reported once, nothing to retry (a route's state) */
};

struct core_plan {
    struct core_action *actions;
    size_t n_actions;
    struct core_problem *problems;
    size_t n_problems;
    char *error;         /* script error or invalid child: write nothing */
    bool has_pod;        /* the pod is cached (selected) */
    char *pod_name, *pod_namespace, *pod_uid;
    int64_t requeue_ms;  /* > 0: plan the pod again after this many ms (drain delay) */
};

/* Plans pod `key`. Returns 0 with *plan filled (free with core_plan_free),
 * or -1 with err when core.lua itself failed. */
int core_reconcile(struct core *c, const char *key, struct core_plan *plan,
                   char *err, size_t errlen);

/* Frees a plan's contents; safe on a zeroed plan. */
void core_plan_free(struct core_plan *plan);

enum core_outcome { CORE_OK, CORE_RETRY, CORE_CONFLICT, CORE_REJECTED };

/* Records the API server's answer to action `a` (status 0: no answer) and
 * classifies it. A successful write updates the cache from the body. */
enum core_outcome core_result(struct core *c, const struct core_action *a, long status,
                              const char *body, size_t len);

/* Renders a pod given as JSON text, as `envoy-router render` prints it:
 * returns a malloc'd JSON array, or NULL with the reason in err. */
char *core_render(struct core *c, const char *pod_json, size_t len, char *err, size_t errlen);

/* Renders the built-in fixture pods (host/fixtures.lua: plain, not ready,
 * terminating, IPv6, awkward names) with the current scripts, writing
 * nothing. Returns how many rendered, or -1 with the first failure in err. */
int core_check(struct core *c, char *err, size_t errlen);

/* Queues every cached pod and every owner of a cached child; returns how many. */
size_t core_enqueue_all(struct core *c);

/* The writes in flight were cancelled (their answers will never come):
 * forgets what the core kept for them, so that later watch events of
 * those children are news again rather than taken for echoes. */
void core_writes_cancelled(struct core *c);

/* Cached HTTPRoutes by what their Gateway controller wrote in
 * status.parents[].conditions for the route's own parentRefs: Accepted=True
 * (and ResolvedRefs not False), Accepted=False, Accepted=True with
 * ResolvedRefs=False, no (current) answer yet. Derived from the cache.
 * Call it every second or so with the monotonic clock (now_ms): a route
 * without an answer for 30 s from the first call that counted it pending
 * leaves a RouteNotAnswered notice for its pod and queues the pod. */
void core_route_states(struct core *c, int64_t now_ms, size_t *accepted,
                       size_t *not_accepted, size_t *unresolved, size_t *pending);

/* Pods with at least one child, cached pods, cached children. */
void core_stats(struct core *c, size_t *managed, size_t *pods, size_t *children);

/* Bytes the core state holds, after a full garbage collection. */
size_t core_memory(struct core *c);

/* Collects the core state's garbage in full and hands free heap pages back
 * to the system (malloc_trim): for quiet moments after a burst. */
void core_trim(struct core *c);

/* The spec fields of a coordination.k8s.io/v1 Lease that leader election
 * reads and writes (host/leader.c). */
struct core_lease {
    char holder[256];           /* holderIdentity; "" when none */
    int lease_seconds;          /* leaseDurationSeconds */
    char acquire_time[40];      /* acquireTime (MicroTime text) */
    char renew_time[40];        /* renewTime (MicroTime text) */
    int transitions;            /* leaseTransitions */
};

/* Reads the election fields of a Lease given as JSON text into *out
 * (absent or ill-typed ones: "" and 0; longer strings cut to fit).
 * Returns 0, or -1 with the reason in err (not JSON, not an object with
 * metadata). */
int core_lease_parse(struct core *c, const char *text, size_t len, struct core_lease *out,
                     char *err, size_t errlen);

/* The Lease carrying *rec as JSON text, malloc'd (caller frees), its
 * length in *len. Built on `base` (base_len bytes: the Lease last read),
 * keeping its resourceVersion and every field election does not own, less
 * managedFields; with base NULL, a new Lease ns/name. NULL with err when
 * base is not a Lease or out of memory. */
char *core_lease_body(struct core *c, const char *base, size_t base_len, const char *ns,
                      const char *name, const struct core_lease *rec, size_t *len,
                      char *err, size_t errlen);

#endif
