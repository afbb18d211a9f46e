/* transport: the seam between the host's controllers (watch.c, reconcile.c,
 * events.c) and the Kubernetes client. A controller starts requests and
 * watches and cancels them through a struct kube_transport; the real client
 * implements it (kube_transport() in kube.h: bounds, retries, metrics stay
 * behind it), and a unit test scripts it (host/test/scripted.h: answers each
 * call by hand, feeds watch streams chunk by chunk, moves a fake clock).
 * What crosses it is what the controllers act on: an HTTP status, the body,
 * a transport error. Main loop only. */
#ifndef ENVOY_ROUTER_TRANSPORT_H
#define ENVOY_ROUTER_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "timers.h"

/* A call in progress; opaque, owned by the transport. */
struct kube_call;

struct kube_response {
    long status;              /* HTTP status; 0 when no response (error set);
                                 a watch cut off after its 200 has 200 and error */
    const char *body;         /* response body (NUL-terminated), or a watch's
                                 error body; "" when none */
    size_t len;
    const char *error;        /* transport error text, or NULL */
};

/* Called once when a call ends (success, HTTP error after retries, transport
 * error, or the end of a watch stream). `r` is valid only during the call.
 * Callbacks may start and cancel calls. */
typedef void (*kube_done_fn)(void *arg, const struct kube_response *r);

/* Called with each chunk of a watch body while the status is 200. Return 0
 * to go on, non-zero to abort the stream (done is then called with
 * status 200 and error "aborted"). */
typedef int (*kube_data_fn)(void *arg, const char *data, size_t len);

struct kube_transport {
    /* Starts `method` on `path` (escaped, from kubepath.h) with an optional
     * body (copied) of `content_type` (NULL: application/json). Returns a
     * handle valid until `done` runs or cancel, or NULL (done is then not
     * called). */
    struct kube_call *(*request)(void *arg, const char *method, const char *path,
                                 const char *content_type, const char *body, size_t len,
                                 kube_done_fn done, void *done_arg);
    /* Starts a watch GET on `path`: chunks to `data`, the end to `done`
     * (a non-200 status delivers the error body). NULL as for request. */
    struct kube_call *(*watch)(void *arg, const char *path, kube_data_fn data,
                               kube_done_fn done, void *done_arg);
    /* Stops a call; its done is not called. NULL is ignored. */
    void (*cancel)(void *arg, struct kube_call *c);
    /* The monotonic clock in ms the controllers time backoffs with
     * (NULL: clock_ms). */
    int64_t (*now_ms)(void *arg);
    void *arg;
};

/* The time on t's clock. */
static inline int64_t transport_now(const struct kube_transport *t)
{
    return t->now_ms ? t->now_ms(t->arg) : clock_ms();
}

#endif
