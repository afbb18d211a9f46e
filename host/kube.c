/* kube: Kubernetes API calls on top of http.c: credentials, bounds, retries,
 * metrics and the paths of the resources the host uses (see kube.h). */
#include "kube.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dup.h"
#include "http.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "timers.h"
#include "token.h"

#define BACKOFF_BASE_MS 200
#define BACKOFF_MAX_MS 10000
#define RETRY_AFTER_MAX_S 60
/* A 503 is a part of the server not ready (a restarted kube-apiserver
 * answers so, with Retry-After: 5, until its CRDs' paths are served): the
 * usual backoff is soon enough. 429 (APF shedding load) gets its wait. */
#define RETRY_AFTER_503_MAX_S 1
#define WATCH_ERROR_MAX (64 * 1024)
#define WATCH_LOW_SPEED_SECS 150
#define BODY_MAX ((size_t)512 << 20)  /* page big lists with limit/continue */
/* Urgent calls (the Lease) in flight at once, outside max_in_flight: a
 * renewal must not wait for a slot held by slow writes. */
#define URGENT_SLOTS 2

enum call_state { C_QUEUED, C_WAITING, C_ACTIVE, C_FAILED };

#define CALL(n) list_entry(n, struct kube_call, node)

struct kube_call {
    struct kube *k;
    struct list_node node;          /* in the list of its state */
    enum call_state state;
    bool watch;
    bool urgent;                    /* ahead of the queue, outside the QPS bucket */
    bool retried_401;
    unsigned attempt;               /* attempts started */
    int64_t due_ms;                 /* C_WAITING: when to go again */
    char *url;                      /* server + path */
    const char *path;               /* inside url, for logs */
    char method[8];
    char *content_type;
    char *body;
    size_t len;
    const char *error;              /* C_FAILED: what to report */
    struct http_xfer *xfer;         /* C_ACTIVE */
    kube_done_fn done;
    kube_data_fn data;
    void *arg;
};

struct kube {
    struct http *http;
    char *server;
    struct token *token;            /* fixed, or a file re-read as it rotates */
    struct kube_options o;
    struct list queued;             /* FIFO waiting for a slot */
    struct list waiting;            /* backing off before a retry */
    struct list active;             /* in flight (calls and watches) */
    struct list failed;             /* could not start; done runs in perform */
    unsigned in_flight;             /* ordinary calls in flight */
    unsigned urgent_in_flight;      /* urgent calls in flight (own slots) */
    uint64_t started;               /* attempts started, ever */
    size_t pending;                 /* ordinary calls not finished */
    double tokens;                  /* QPS bucket */
    int64_t tokens_ms;
    uint64_t rng;
    struct metric *m_requests;
    struct metric *m_duration;
    bool unreachable;               /* the last attempt got no HTTP answer */
    bool recovered;                 /* an answer came since: tell in perform */
    kube_recovered_fn on_recovered;
    void *recovered_arg;
};

/* --- small helpers ------------------------------------------------------ */

static struct list *state_list(struct kube *k, enum call_state s)
{
    switch (s) {
    case C_QUEUED: return &k->queued;
    case C_WAITING: return &k->waiting;
    case C_ACTIVE: return &k->active;
    case C_FAILED: return &k->failed;
    }
    return &k->failed;
}

static void set_state(struct kube *k, struct kube_call *c, enum call_state s, bool front)
{
    list_unlink(state_list(k, c->state), &c->node);
    c->state = s;
    if (front)
        list_push_front(state_list(k, s), &c->node);
    else
        list_push(state_list(k, s), &c->node);
}

static void call_free(struct kube_call *c)
{
    free(c->url);
    free(c->content_type);
    free(c->body);
    free(c);
}

static double rand01(struct kube *k)
{
    /* xorshift64*: jitter needs spread, not secrecy */
    k->rng ^= k->rng >> 12;
    k->rng ^= k->rng << 25;
    k->rng ^= k->rng >> 27;
    return (double)((k->rng * UINT64_C(0x2545F4914F6CDD1D)) >> 11) / 9007199254740992.0;
}

/* --- attempts ----------------------------------------------------------- */

static void on_http_done(void *arg, const struct http_result *r);

static int on_http_data(void *arg, const char *data, size_t len)
{
    struct kube_call *c = arg;

    return c->data(c->arg, data, len);   /* c may be freed after this */
}

/* Starts one attempt of c; false when the transfer could not start. */
static bool attempt_start(struct kube *k, struct kube_call *c)
{
    const char *headers[4];
    char *auth = NULL, *ctype = NULL;
    unsigned nh = 0;
    struct http_request rq = { 0 };
    int rc = token_refresh(k->token, false, clock_ms());
    const char *token = token_value(k->token);

    if (rc < 0)
        log_warn("kube: token file %s: %s (keeping the previous token)",
                 token_file(k->token), token_strerror(rc));
    headers[nh++] = "Accept: application/json";
    if (token && token[0]) {
        size_t n = strlen(token) + sizeof("Authorization: Bearer ");

        auth = malloc(n);
        if (auth) {
            snprintf(auth, n, "Authorization: Bearer %s", token);
            headers[nh++] = auth;
        }
    }
    if (c->body) {
        size_t n = strlen(c->content_type) + sizeof("Content-Type: ");

        ctype = malloc(n);
        if (ctype) {
            snprintf(ctype, n, "Content-Type: %s", c->content_type);
            headers[nh++] = ctype;
        }
    }
    headers[nh] = NULL;
    rq.method = c->method;
    rq.url = c->url;
    rq.headers = headers;
    rq.body = c->body;
    rq.len = c->len;
    if (c->watch) {
        rq.low_speed_secs = WATCH_LOW_SPEED_SECS;
        rq.data = on_http_data;
        rq.max_body = WATCH_ERROR_MAX;
    } else {
        rq.timeout_ms = k->o.timeout_ms > 0 ? k->o.timeout_ms : 30000;
        rq.compressed = true;
        rq.max_body = BODY_MAX;
    }
    c->attempt++;
    c->xfer = NULL;
    if ((!token || auth) && (!c->body || ctype))
        c->xfer = http_start(k->http, &rq, on_http_done, c);
    free(auth);
    free(ctype);
    if (!c->xfer)
        return false;
    set_state(k, c, C_ACTIVE, false);
    k->started++;
    if (c->urgent)
        k->urgent_in_flight++;
    else if (!c->watch)
        k->in_flight++;
    return true;
}

static long backoff_ms(struct kube *k, unsigned attempt)
{
    double d = BACKOFF_BASE_MS;

    for (unsigned i = 1; i < attempt && d < BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > BACKOFF_MAX_MS)
        d = BACKOFF_MAX_MS;
    return (long)(d * (0.8 + 0.4 * rand01(k)));
}

static void bucket_refill(struct kube *k, int64_t now)
{
    unsigned burst = k->o.burst ? k->o.burst : 1;

    if (k->o.qps <= 0)
        return;
    k->tokens += (double)(now - k->tokens_ms) * k->o.qps / 1000.0;
    if (k->tokens > burst)
        k->tokens = burst;
    k->tokens_ms = now;
}

/* A queued call that could not start: back off, or fail for good. */
static void start_failed(struct kube *k, struct kube_call *c, int64_t now)
{
    if (c->attempt < k->o.max_attempts) {
        c->due_ms = now + backoff_ms(k, c->attempt);
        set_state(k, c, C_WAITING, false);
    } else {
        c->error = "cannot start the transfer (out of memory or refused options)";
        set_state(k, c, C_FAILED, false);
    }
}

/* The first queued urgent call, if one may start now. */
static struct kube_call *next_urgent(struct kube *k)
{
    if (k->urgent_in_flight >= URGENT_SLOTS)
        return NULL;
    for (struct kube_call *c = CALL(k->queued.head); c; c = CALL(c->node.next))
        if (c->urgent)
            return c;
    return NULL;
}

/* The first queued ordinary call, if a slot and the rate allow it now. */
static struct kube_call *next_ordinary(struct kube *k)
{
    if (k->in_flight >= k->o.max_in_flight)
        return NULL;
    for (struct kube_call *c = CALL(k->queued.head); c; c = CALL(c->node.next))
        if (!c->urgent)
            return k->o.qps > 0 && k->tokens < 1.0 ? NULL : c;
    return NULL;
}

/* Moves due retries to the head of the queue and starts queued calls while
 * slots and rate allow: urgent calls in their own slots, outside the QPS
 * bucket; ordinary ones FIFO within max_in_flight. Never runs a caller's
 * callback. */
static void dispatch(struct kube *k)
{
    int64_t now = clock_ms();
    struct kube_call *c;

    for (struct kube_call *w = CALL(k->waiting.head), *next; w; w = next) {
        next = CALL(w->node.next);
        if (w->due_ms <= now)
            set_state(k, w, C_QUEUED, true);   /* older than anything queued */
    }
    bucket_refill(k, now);
    while ((c = next_urgent(k)) != NULL)
        if (!attempt_start(k, c))
            start_failed(k, c, now);
    while ((c = next_ordinary(k)) != NULL) {
        if (k->o.qps > 0)
            k->tokens -= 1.0;
        if (!attempt_start(k, c))
            start_failed(k, c, now);
    }
}

static bool retryable(const struct http_result *r)
{
    if (r->transport_error)
        return true;
    if (r->error)
        return false;
    switch (r->status) {
    case 429: case 500: case 502: case 503: case 504:
        return true;
    default:
        return false;
    }
}

/* Counts and logs one finished attempt. */
static void record(struct kube *k, const struct kube_call *c, const struct http_result *r)
{
    char code[24], labels[48];

    if (r->status > 0)
        snprintf(code, sizeof(code), "%ld", r->status);
    else
        snprintf(code, sizeof(code), "<error>");
    snprintf(labels, sizeof(labels), "%s,%s", code, c->method);
    metrics_add(k->m_requests, labels, 1);
    /* A watch lasts minutes: its latency is the time to the first byte. */
    metrics_observe(k->m_duration, c->method,
                    c->watch && r->first_byte > 0 ? r->first_byte : r->seconds);
    if (log_enabled(LOG_DEBUG)) {
        const char *msg = c->watch ? "kube watch ended" : "kube request";
        char ms[32];

        snprintf(ms, sizeof(ms), "%.0f", r->seconds * 1000);
        if (r->error)
            log_kv(LOG_DEBUG, msg, "method", c->method, "path", c->path, "status", code,
                   "ms", ms, "error", r->error, NULL);
        else
            log_kv(LOG_DEBUG, msg, "method", c->method, "path", c->path, "status", code,
                   "ms", ms, NULL);
    }
}

static void finish(struct kube *k, struct kube_call *c, long status, const char *body,
                   size_t len, const char *error)
{
    struct kube_response resp = { status, body ? body : "", body ? len : 0, error };

    list_unlink(state_list(k, c->state), &c->node);
    if (!c->watch)
        k->pending--;
    c->done(c->arg, &resp);
    call_free(c);
}

static void on_http_done(void *arg, const struct http_result *r)
{
    struct kube_call *c = arg;
    struct kube *k = c->k;

    c->xfer = NULL;
    record(k, c, r);
    if (r->transport_error) {
        k->unreachable = true;
    } else if (r->status > 0 && k->unreachable) {
        k->unreachable = false;
        k->recovered = true;
    }
    if (c->watch) {
        finish(k, c, r->status, r->body, r->len, r->error);
        return;
    }
    if (c->urgent)
        k->urgent_in_flight--;
    else
        k->in_flight--;
    if (r->status == 401 && !r->error && token_file(k->token) && !c->retried_401) {
        /* The token may have rotated since the last look: read it now and
         * try once more, ahead of the queue and outside max_attempts. */
        int rc = token_refresh(k->token, true, clock_ms());

        log_kv(LOG_WARN, "kube request unauthorized; token file re-read, retrying",
               "method", c->method, "path", c->path, "token_file", token_file(k->token),
               "read", rc < 0 ? token_strerror(rc) : "ok", NULL);
        c->retried_401 = true;
        c->attempt--;
        set_state(k, c, C_QUEUED, true);
        return;
    }
    if (retryable(r) && c->attempt < k->o.max_attempts) {
        long max_s = r->status == 503 ? RETRY_AFTER_503_MAX_S : RETRY_AFTER_MAX_S;
        long delay = r->retry_after >= 0
            ? (r->retry_after < max_s ? r->retry_after : max_s) * 1000
            : backoff_ms(k, c->attempt);
        char status[24], attempt[32], ms[24];

        c->due_ms = clock_ms() + delay;
        set_state(k, c, C_WAITING, false);
        snprintf(status, sizeof(status), "%ld", r->status);
        snprintf(attempt, sizeof(attempt), "%u/%u", c->attempt, k->o.max_attempts);
        snprintf(ms, sizeof(ms), "%ld", delay);
        log_kv(LOG_WARN, "kube request retried", "method", c->method, "path", c->path,
               r->error ? "error" : "status", r->error ? r->error : status,
               "attempt", attempt, "delay_ms", ms, NULL);
        return;
    }
    /* A transfer cut short has no status worth acting on. */
    finish(k, c, r->transport_error ? 0 : r->status, r->body, r->len, r->error);
}

/* --- the client --------------------------------------------------------- */

struct kube *kube_new(const struct kube_auth *auth, const struct kube_options *o,
                      char *err, size_t errlen)
{
    struct kube *k = NULL;
    struct http_tls tls = { 0 };
    size_t n;

    if (!auth || !auth->server ||
        (strncmp(auth->server, "https://", 8) != 0 && strncmp(auth->server, "http://", 7) != 0)) {
        snprintf(err, errlen, "kube: server URL must start with https:// or http://: %s",
                 auth && auth->server ? auth->server : "(none)");
        return NULL;
    }
    if ((auth->cert_pem != NULL) != (auth->key_pem != NULL)) {
        snprintf(err, errlen, "kube: a client certificate needs a client key and vice versa");
        return NULL;
    }
    k = calloc(1, sizeof(*k));
    if (!k)
        goto nomem;
    if (o)
        k->o = *o;
    if (k->o.max_in_flight < 1)
        k->o.max_in_flight = 1;
    if (k->o.max_attempts < 1)
        k->o.max_attempts = 1;
    k->server = strdup(auth->server);
    if (!k->server)
        goto nomem;
    n = strlen(k->server);
    while (n > 0 && k->server[n - 1] == '/')
        k->server[--n] = '\0';
    k->token = token_new(auth->token_file, auth->token, clock_ms(), err, errlen);
    if (!k->token)
        goto fail;
    tls.ca = auth->ca_pem;
    tls.ca_len = auth->ca_len;
    tls.cert = auth->cert_pem;
    tls.cert_len = auth->cert_len;
    tls.key = auth->key_pem;
    tls.key_len = auth->key_len;
    tls.insecure = auth->insecure;
    k->http = http_new(&tls, k->o.user_agent, err, errlen);
    if (!k->http)
        goto fail;
    k->o.user_agent = NULL;   /* http keeps its own copy */
    k->m_requests = metrics_counter("rest_client_requests_total",
                                    "Requests to the Kubernetes API by status code and method.",
                                    "code,method");
    k->m_duration = metrics_histogram("rest_client_request_duration_seconds",
                                      "Latency of requests to the Kubernetes API by verb.",
                                      "verb", NULL, 0);
    k->tokens = k->o.burst ? k->o.burst : 1;
    k->tokens_ms = clock_ms();
    k->rng = ((uint64_t)clock_ms() * UINT64_C(0x9E3779B97F4A7C15)) ^ (uint64_t)getpid() ^
             (uint64_t)(uintptr_t)k;
    if (!k->rng)
        k->rng = 1;
    return k;
nomem:
    snprintf(err, errlen, "kube: out of memory");
fail:
    kube_free(k);
    return NULL;
}

void kube_free(struct kube *k)
{
    struct list *lists[4];

    if (!k)
        return;
    lists[0] = &k->queued;
    lists[1] = &k->waiting;
    lists[2] = &k->active;
    lists[3] = &k->failed;
    for (int i = 0; i < 4; i++) {
        struct kube_call *c;

        while ((c = CALL(lists[i]->head))) {
            list_unlink(lists[i], &c->node);
            call_free(c);
        }
    }
    http_free(k->http);   /* drops the transfers without callbacks */
    free(k->server);
    token_free(k->token);
    free(k);
}

static struct kube_call *call_new(struct kube *k, const char *method, const char *path,
                                  kube_done_fn done, void *arg)
{
    struct kube_call *c;
    size_t ns, np, nm;

    if (!k || !method || !path || path[0] != '/' || !done)
        return NULL;
    nm = strlen(method);
    if (nm == 0 || nm >= sizeof(c->method))
        return NULL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    ns = strlen(k->server);
    np = strlen(path);
    c->url = malloc(ns + np + 1);
    if (!c->url) {
        free(c);
        return NULL;
    }
    memcpy(c->url, k->server, ns);
    memcpy(c->url + ns, path, np + 1);
    c->path = c->url + ns;
    memcpy(c->method, method, nm + 1);
    c->k = k;
    c->done = done;
    c->arg = arg;
    return c;
}

static struct kube_call *request(struct kube *k, const char *method, const char *path,
                                 const char *content_type, const char *body, size_t len,
                                 kube_done_fn done, void *arg, bool urgent)
{
    struct kube_call *c = call_new(k, method, path, done, arg);

    if (!c)
        return NULL;
    if (body) {
        c->body = dup_mem(body, len);
        c->content_type = strdup(content_type ? content_type : "application/json");
        if (!c->body || !c->content_type) {
            call_free(c);
            return NULL;
        }
        c->len = len;
    }
    c->state = C_QUEUED;
    c->urgent = urgent;
    if (urgent)
        list_push_front(&k->queued, &c->node);
    else
        list_push(&k->queued, &c->node);
    k->pending++;
    dispatch(k);
    return c;
}

struct kube_call *kube_request(struct kube *k, const char *method, const char *path,
                               const char *content_type, const char *body, size_t len,
                               kube_done_fn done, void *arg)
{
    return request(k, method, path, content_type, body, len, done, arg, false);
}

struct kube_call *kube_request_urgent(struct kube *k, const char *method, const char *path,
                                      const char *content_type, const char *body, size_t len,
                                      kube_done_fn done, void *arg)
{
    return request(k, method, path, content_type, body, len, done, arg, true);
}

struct kube_call *kube_watch(struct kube *k, const char *path, kube_data_fn data,
                             kube_done_fn done, void *arg)
{
    struct kube_call *c;

    if (!data)
        return NULL;
    c = call_new(k, "GET", path, done, arg);
    if (!c)
        return NULL;
    c->watch = true;
    c->data = data;
    c->state = C_QUEUED;
    list_push(&k->queued, &c->node);   /* only so that attempt_start can move it */
    if (!attempt_start(k, c)) {
        list_unlink(&k->queued, &c->node);
        call_free(c);
        return NULL;
    }
    return c;
}

void kube_cancel(struct kube *k, struct kube_call *c)
{
    if (!k || !c)
        return;
    list_unlink(state_list(k, c->state), &c->node);
    if (c->state == C_ACTIVE) {
        http_abort(k->http, c->xfer);
        if (c->urgent)
            k->urgent_in_flight--;
        else if (!c->watch)
            k->in_flight--;
    }
    if (!c->watch)
        k->pending--;
    call_free(c);
    dispatch(k);
}

int kube_wait(struct kube *k, struct pollfd *fds, unsigned nfds, int timeout_ms)
{
    long next = kube_next_timeout(k);

    if (next >= 0 && (timeout_ms < 0 || next < timeout_ms))
        timeout_ms = (int)next;
    return http_wait(k->http, fds, nfds, timeout_ms);
}

static void perform_once(struct kube *k)
{
    struct kube_call *c;

    http_perform(k->http);
    dispatch(k);
    while ((c = CALL(k->failed.head)))
        finish(k, c, 0, NULL, 0, c->error);
    if (k->recovered) {
        k->recovered = false;
        if (k->on_recovered)
            k->on_recovered(k->recovered_arg);
    }
    dispatch(k);
}

void kube_perform(struct kube *k)
{
    uint64_t started = k->started;

    perform_once(k);
    /* Calls that took the slots of the ones just answered go on the wire
     * now, not after whatever the caller does before its next turn (the
     * planning of the next pods). Once: what this turn answers waits. */
    if (k->started != started)
        perform_once(k);
}

static struct kube_call *transport_request(void *arg, const char *method, const char *path,
                                           const char *content_type, const char *body,
                                           size_t len, kube_done_fn done, void *done_arg)
{
    return kube_request(arg, method, path, content_type, body, len, done, done_arg);
}

static struct kube_call *transport_watch(void *arg, const char *path, kube_data_fn data,
                                         kube_done_fn done, void *done_arg)
{
    return kube_watch(arg, path, data, done, done_arg);
}

static void transport_cancel(void *arg, struct kube_call *c)
{
    kube_cancel(arg, c);
}

struct kube_transport kube_transport(struct kube *k)
{
    return (struct kube_transport){ transport_request, transport_watch, transport_cancel,
                                    NULL, k };
}

void kube_set_recovered(struct kube *k, kube_recovered_fn fn, void *arg)
{
    k->on_recovered = fn;
    k->recovered_arg = arg;
}

size_t kube_pending(const struct kube *k)
{
    return k->pending;
}

long kube_next_timeout(const struct kube *k)
{
    int64_t now = clock_ms();
    long best = -1;

    if (!list_empty(&k->failed))
        return 0;
    for (const struct kube_call *c = CALL(k->waiting.head); c; c = CALL(c->node.next)) {
        long d = c->due_ms > now ? (long)(c->due_ms - now) : 0;

        if (best < 0 || d < best)
            best = d;
    }
    if (!list_empty(&k->queued) && k->urgent_in_flight < URGENT_SLOTS) {
        for (const struct kube_call *c = CALL(k->queued.head); c; c = CALL(c->node.next))
            if (c->urgent)
                return 0;
    }
    if (!list_empty(&k->queued) && k->in_flight < k->o.max_in_flight) {
        double t = k->tokens;
        long d = 0;

        if (k->o.qps > 0) {
            unsigned burst = k->o.burst ? k->o.burst : 1;

            t += (double)(now - k->tokens_ms) * k->o.qps / 1000.0;
            if (t > burst)
                t = burst;
            if (t < 1.0)
                d = (long)((1.0 - t) * 1000.0 / k->o.qps) + 1;
        }
        if (best < 0 || d < best)
            best = d;
    }
    return best;
}
