/* kube: an asynchronous client of the Kubernetes API on libcurl multi.
 *
 * One curl multi handle (connections and TLS sessions reused, HTTP/2 when the
 * server offers it) driven by the main loop through kube_wait/kube_perform.
 * Requests carry the credentials of a struct kube_auth; a token file is
 * re-read when it changes (checked at most once a second) and after a 401.
 * Ordinary calls are bounded (max_in_flight at once, the rest wait FIFO; an
 * optional QPS token bucket), and retried with jittered exponential backoff on
 * transport errors, 429 and 5xx, honouring Retry-After, up to `max_attempts`.
 * Watches are streams: not bounded, not retried (the caller relists).
 * Every response counts in rest_client_requests_total{code,method} and
 * rest_client_request_duration_seconds{verb}. Not thread-safe: main loop only. */
#ifndef ENVOY_ROUTER_KUBE_H
#define ENVOY_ROUTER_KUBE_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>

#include "kubeconfig.h"
#include "kubepath.h"    /* the paths calls take */
#include "transport.h"   /* responses, callbacks; the seam kube implements */

struct kube;

struct kube_options {
    unsigned max_in_flight;   /* ordinary calls at once (>= 1) */
    double qps;               /* 0: no client-side rate limit */
    unsigned burst;           /* bucket size when qps > 0 */
    unsigned max_attempts;    /* tries per call, >= 1 (5 is sensible) */
    long timeout_ms;          /* per attempt of an ordinary call; 0 = 30000 */
    const char *user_agent;   /* "envoy-router/<version>" */
};

/* New client. `auth` is copied. Returns NULL with one line in err on failure. */
struct kube *kube_new(const struct kube_auth *auth, const struct kube_options *o,
                      char *err, size_t errlen);

/* Cancels every call (no callbacks) and frees; kube_free(NULL) does nothing. */
void kube_free(struct kube *k);

/* Starts `method` on `path` ("/api/v1/namespaces/x/pods?labelSelector=..",
 * already escaped), with an optional body (copied) of `content_type`
 * (NULL: application/json). Returns a handle valid until `done` runs or
 * kube_cancel, or NULL when out of memory or given a path not starting with
 * '/', no done or a method longer than 7 letters (done is then not called). */
struct kube_call *kube_request(struct kube *k, const char *method, const char *path,
                               const char *content_type, const char *body, size_t len,
                               kube_done_fn done, void *arg);

/* As kube_request, for calls that must not wait behind a backlog of writes
 * (Lease renewals: missing the renew deadline would step the leader down):
 * queued ahead of ordinary calls, exempt from the QPS bucket and started in
 * slots of their own (two at once), so ordinary calls filling
 * max_in_flight never hold one back; retried the same way. */
struct kube_call *kube_request_urgent(struct kube *k, const char *method, const char *path,
                                      const char *content_type, const char *body, size_t len,
                                      kube_done_fn done, void *arg);

/* Starts a watch GET on `path`; chunks go to `data`, the end to `done`.
 * A non-200 status delivers the (bounded) error body to done. */
struct kube_call *kube_watch(struct kube *k, const char *path, kube_data_fn data,
                             kube_done_fn done, void *arg);

/* Called (from kube_perform) when an answer, any HTTP status, arrives after
 * attempts that got none (connection refused, reset, timed out): the API
 * server is back, and whatever waits out a long backoff may go now. */
typedef void (*kube_recovered_fn)(void *arg);

/* Sets (or, with NULL, clears) the recovery callback. */
void kube_set_recovered(struct kube *k, kube_recovered_fn fn, void *arg);

/* Stops a call; its done callback is not called. NULL is ignored. */
void kube_cancel(struct kube *k, struct kube_call *c);

/* The client as the controllers' transport: kube_request, kube_watch and
 * kube_cancel on k, and clock_ms. Valid while k lives. */
struct kube_transport kube_transport(struct kube *k);

/* Waits up to timeout_ms for network activity or for one of the caller's
 * `fds` to become readable (revents filled in), whichever is first. Returns
 * 0 or -1 on a poll error. */
int kube_wait(struct kube *k, struct pollfd *fds, unsigned nfds, int timeout_ms);

/* Moves transfers on and runs the callbacks of finished calls and due
 * retries; calls that took the slots of the answered ones are sent before it
 * returns. Call after kube_wait, and freely in between. Callbacks may start
 * and cancel calls, but not call kube_free, kube_wait or kube_perform. */
void kube_perform(struct kube *k);

/* Ordinary calls started and not finished (queued, waiting or in flight). */
size_t kube_pending(const struct kube *k);

/* Milliseconds until the next queued retry or rate-limit slot; -1 if none. */
long kube_next_timeout(const struct kube *k);

#endif
