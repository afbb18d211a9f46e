/* http: libcurl multi mechanics (see http.h). */
#include "http.h"

#include <curl/curl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dup.h"
#include "list.h"

/* Easy handles kept after use: each keeps its DNS and TLS state warm. */
#define IDLE_MAX 8

/* Each state but X_REPORTING has a list in struct http. */
enum xfer_state { X_PENDING, X_ACTIVE, X_FINISHED, X_DEAD, X_REPORTING };

#define XFER(n) list_entry(n, struct http_xfer, node)

struct http_xfer {
    struct http *h;
    struct list_node node;           /* in the list of its state */
    enum xfer_state state;
    CURL *easy;
    struct curl_slist *headers;
    http_done_fn done;
    http_data_fn data;
    void *arg;
    CURLcode code;
    char *buf;                       /* collected body, NUL-terminated */
    size_t len, cap, max;
    long retry_after;
    bool aborted;                    /* the data callback asked to stop */
    bool too_big;
    char errbuf[CURL_ERROR_SIZE];
};

struct http {
    CURLM *multi;
    CURLSH *share;
    char *ca, *cert, *key, *user_agent;
    size_t ca_len, cert_len, key_len;
    bool insecure;
    bool in_curl;        /* inside curl_multi_perform: the multi is off limits */
    struct list pending;   /* started from a curl callback, added afterwards */
    struct list active;    /* in the multi */
    struct list finished;  /* out of the multi, done not run yet */
    struct list dead;      /* aborted from a curl callback, removed afterwards */
    size_t count;
    CURL *idle[IDLE_MAX];
    unsigned nidle;
};

static struct list *state_list(struct http *h, enum xfer_state s)
{
    switch (s) {
    case X_PENDING: return &h->pending;
    case X_ACTIVE: return &h->active;
    case X_FINISHED: return &h->finished;
    case X_DEAD: return &h->dead;
    case X_REPORTING: return NULL;
    }
    return NULL;
}

static void move_to(struct http_xfer *x, enum xfer_state s)
{
    list_unlink(state_list(x->h, x->state), &x->node);
    x->state = s;
    list_push(state_list(x->h, s), &x->node);
}

bool http_has_http2(void)
{
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);

    return v && (v->features & CURL_VERSION_HTTP2);
}

struct http *http_new(const struct http_tls *tls, const char *user_agent,
                      char *err, size_t errlen)
{
    static bool global_done;
    struct http *h;

    if (!global_done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            snprintf(err, errlen, "http: curl_global_init failed");
            return NULL;
        }
        global_done = true;
    }
    h = calloc(1, sizeof(*h));
    if (!h)
        goto oom;
    h->multi = curl_multi_init();
    h->share = curl_share_init();
    h->user_agent = strdup(user_agent ? user_agent : "envoy-router");
    if (!h->multi || !h->share || !h->user_agent)
        goto oom;
    if (tls) {
        h->ca = dup_mem(tls->ca, tls->ca_len);
        h->cert = dup_mem(tls->cert, tls->cert_len);
        h->key = dup_mem(tls->key, tls->key_len);
        if ((tls->ca && !h->ca) || (tls->cert && !h->cert) || (tls->key && !h->key))
            goto oom;
        h->ca_len = tls->ca_len;
        h->cert_len = tls->cert_len;
        h->key_len = tls->key_len;
        h->insecure = tls->insecure;
    }
    /* TLS session resumption and the DNS cache across every easy handle;
     * connections themselves are pooled by the multi. */
    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    return h;
oom:
    snprintf(err, errlen, "http: out of memory setting up libcurl");
    http_free(h);
    return NULL;
}

/* Unhooks x from curl and frees it, keeping its easy handle for reuse. */
static void xfer_free(struct http *h, struct http_xfer *x)
{
    if (x->state != X_REPORTING)
        list_unlink(state_list(h, x->state), &x->node);
    if (x->easy) {
        if (x->state == X_ACTIVE || x->state == X_DEAD)
            curl_multi_remove_handle(h->multi, x->easy);
        if (h->nidle < IDLE_MAX) {
            curl_easy_reset(x->easy);
            h->idle[h->nidle++] = x->easy;
        } else {
            curl_easy_cleanup(x->easy);
        }
    }
    curl_slist_free_all(x->headers);
    free(x->buf);
    free(x);
    h->count--;
}

void http_free(struct http *h)
{
    struct list *lists[4];

    if (!h)
        return;
    lists[0] = &h->pending;
    lists[1] = &h->active;
    lists[2] = &h->finished;
    lists[3] = &h->dead;
    for (int i = 0; i < 4; i++)
        while (!list_empty(lists[i]))
            xfer_free(h, XFER(lists[i]->head));
    for (unsigned i = 0; i < h->nidle; i++)
        curl_easy_cleanup(h->idle[i]);
    if (h->multi)
        curl_multi_cleanup(h->multi);
    if (h->share)
        curl_share_cleanup(h->share);
    free(h->ca);
    free(h->cert);
    free(h->key);
    free(h->user_agent);
    free(h);
}

static bool append(struct http_xfer *x, const char *p, size_t n)
{
    if (x->len + n + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        char *b;

        while (cap < x->len + n + 1)
            cap *= 2;
        b = realloc(x->buf, cap);
        if (!b)
            return false;
        x->buf = b;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, p, n);
    x->len += n;
    x->buf[x->len] = '\0';
    return true;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
    struct http_xfer *x = ud;
    size_t n = size * nmemb;

    if (x->state == X_DEAD)
        return 0;
    if (x->data) {
        long status = 0;

        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status == 200) {
            int rc = x->data(x->arg, p, n);

            if (x->state == X_DEAD)   /* the callback aborted this transfer */
                return 0;
            if (rc != 0) {
                x->aborted = true;
                return 0;
            }
            return n;
        }
        /* An error body: keep its head, read and drop the rest so the
         * transfer still ends normally. */
        if (x->len < x->max) {
            size_t keep = x->max - x->len < n ? x->max - x->len : n;

            if (!append(x, p, keep)) {
                x->too_big = true;
                return 0;
            }
        }
        return n;
    }
    if (n > x->max - x->len || !append(x, p, n)) {
        x->too_big = true;
        return 0;
    }
    return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct http_xfer *x = ud;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";

    if (x->state == X_DEAD)
        return 0;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        x->retry_after = -1;        /* a new response (after 1xx) starts */
    } else if (n > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
        size_t i = sizeof(name) - 1;
        long v = 0;
        bool digits = false;

        while (i < n && (p[i] == ' ' || p[i] == '\t'))
            i++;
        for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
            digits = true;
            if (v < 86400)
                v = v * 10 + (p[i] - '0');
        }
        while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
            i++;
        /* Seconds only; an HTTP-date is ignored (normal backoff applies). */
        if (digits && i == n)
            x->retry_after = v > 86400 ? 86400 : v;
    }
    return n;
}

/* Sets the options of one transfer; false when curl refuses one that matters. */
static bool setup(struct http *h, struct http_xfer *x, const struct http_request *rq)
{
    CURL *e = x->easy;
    bool https = strncasecmp(rq->url, "https://", 8) == 0;
    bool ok = true;

    ok &= curl_easy_setopt(e, CURLOPT_URL, rq->url) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_SHARE, h->share);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    /* A peer that vanished without a FIN (node gone, NAT state dropped) is
     * noticed by keepalive probes instead of never. */
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 10L);
    if (https && http_has_http2()) {
        /* Wait for a connection that is being set up rather than open a
         * second one, so that streams share one HTTP/2 connection. Plain
         * http stays HTTP/1.1, where waiting would only serialise. */
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    }
    if (https) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, h->insecure ? 0L : 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, h->insecure ? 0L : 2L);
        if (h->ca) {
            struct curl_blob b = { h->ca, h->ca_len, CURL_BLOB_NOCOPY };
            ok &= curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b) == CURLE_OK;
            /* The cluster's CA alone: curl would also trust the system CA
             * directory (its built-in CAPATH), so any public CA could then
             * vouch for an impostor API server. */
            ok &= curl_easy_setopt(e, CURLOPT_CAPATH, NULL) == CURLE_OK;
            ok &= curl_easy_setopt(e, CURLOPT_CAINFO, NULL) == CURLE_OK;
        }
        if (h->cert) {
            struct curl_blob b = { h->cert, h->cert_len, CURL_BLOB_NOCOPY };
            ok &= curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &b) == CURLE_OK;
            ok &= curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM") == CURLE_OK;
        }
        if (h->key) {
            struct curl_blob b = { h->key, h->key_len, CURL_BLOB_NOCOPY };
            ok &= curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &b) == CURLE_OK;
            ok &= curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM") == CURLE_OK;
        }
    }
    if (rq->timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, rq->timeout_ms);
    if (rq->low_speed_secs > 0) {
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, rq->low_speed_secs);
    }
    if (rq->compressed)
        curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "gzip");

    if (strcmp(rq->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(rq->method, "DELETE") == 0 && rq->len == 0) {
        ok &= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rq->method) == CURLE_OK;
    } else {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
        if (strcmp(rq->method, "POST") != 0)
            ok &= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rq->method) == CURLE_OK;
    }
    return ok;
}

static bool add_to_multi(struct http *h, struct http_xfer *x)
{
    if (curl_multi_add_handle(h->multi, x->easy) != CURLM_OK)
        return false;
    move_to(x, X_ACTIVE);
    return true;
}

struct http_xfer *http_start(struct http *h, const struct http_request *rq,
                             http_done_fn done, void *arg)
{
    struct http_xfer *x = calloc(1, sizeof(*x));

    if (!x)
        return NULL;
    x->h = h;
    x->state = X_PENDING;
    list_push(&h->pending, &x->node);
    h->count++;
    x->done = done;
    x->data = rq->data;
    x->arg = arg;
    x->max = rq->max_body ? rq->max_body : SIZE_MAX - 1;
    x->retry_after = -1;
    x->easy = h->nidle ? h->idle[--h->nidle] : curl_easy_init();
    if (!x->easy)
        goto fail;
    /* "Expect:" stops curl from waiting for 100-continue on large bodies. */
    x->headers = curl_slist_append(NULL, "Expect:");
    if (!x->headers)
        goto fail;
    for (const char *const *hd = rq->headers; hd && *hd; hd++) {
        struct curl_slist *l = curl_slist_append(x->headers, *hd);

        if (!l)
            goto fail;
        x->headers = l;
    }
    if (!setup(h, x, rq))
        goto fail;
    /* Inside curl_multi_perform the multi cannot take handles: the pending
     * list is added when it returns. */
    if (!h->in_curl && !add_to_multi(h, x))
        goto fail;
    return x;
fail:
    xfer_free(h, x);
    return NULL;
}

void http_abort(struct http *h, struct http_xfer *x)
{
    if (!x || x->state == X_REPORTING || x->state == X_DEAD)
        return;   /* its own done is running, or it is already going */
    if (h->in_curl && x->state == X_ACTIVE)
        move_to(x, X_DEAD);   /* removed once curl_multi_perform returns */
    else
        xfer_free(h, x);
}

static void add_pending(struct http *h)
{
    struct http_xfer *x;

    while ((x = XFER(h->pending.head))) {
        if (!add_to_multi(h, x)) {
            /* Only when out of memory; report it through done. */
            x->code = CURLE_OUT_OF_MEMORY;
            move_to(x, X_FINISHED);
        }
    }
}

int http_wait(struct http *h, struct pollfd *fds, unsigned nfds, int timeout_ms)
{
    struct curl_waitfd stack[8], *w = stack;
    int rc = 0;

    add_pending(h);
    if (!list_empty(&h->finished))
        timeout_ms = 0;
    if (nfds > 8) {
        w = calloc(nfds, sizeof(*w));
        if (!w)
            return -1;
    }
    for (unsigned i = 0; i < nfds; i++) {
        w[i].fd = fds[i].fd;
        w[i].events = (short)(((fds[i].events & POLLIN) ? CURL_WAIT_POLLIN : 0) |
                              ((fds[i].events & POLLPRI) ? CURL_WAIT_POLLPRI : 0) |
                              ((fds[i].events & POLLOUT) ? CURL_WAIT_POLLOUT : 0));
        w[i].revents = 0;
        fds[i].revents = 0;
    }
    if (curl_multi_poll(h->multi, w, nfds, timeout_ms < 0 ? INT_MAX : timeout_ms,
                        NULL) != CURLM_OK)
        rc = -1;
    /* curl reports only IN/PRI/OUT; a second, immediate poll gives the
     * caller HUP and ERR too. */
    if (rc == 0 && nfds > 0 && poll(fds, nfds, 0) < 0)
        rc = -1;
    if (w != stack)
        free(w);
    return rc;
}

static void report(struct http_xfer *x)
{
    struct http_result r = { 0 };
    curl_off_t total = 0, first = 0;

    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &total);
    curl_easy_getinfo(x->easy, CURLINFO_STARTTRANSFER_TIME_T, &first);
    r.seconds = (double)total / 1e6;
    r.first_byte = (double)first / 1e6;
    r.body = x->buf ? x->buf : "";
    r.len = x->len;
    r.retry_after = x->retry_after;
    if (x->aborted) {
        r.error = "aborted";
    } else if (x->too_big) {
        r.error = "response body too large";
    } else if (x->code != CURLE_OK) {
        r.error = x->errbuf[0] ? x->errbuf : curl_easy_strerror(x->code);
        r.transport_error = true;
    }
    x->done(x->arg, &r);
}

void http_perform(struct http *h)
{
    struct http_xfer *x;
    CURLMsg *msg;
    int running = 0, left = 0;

    add_pending(h);
    h->in_curl = true;
    curl_multi_perform(h->multi, &running);
    h->in_curl = false;
    while ((x = XFER(h->dead.head)))
        xfer_free(h, x);
    add_pending(h);

    while ((msg = curl_multi_info_read(h->multi, &left))) {
        char *p = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &p);
        x = (struct http_xfer *)(void *)p;
        if (!x || x->state != X_ACTIVE)
            continue;
        x->code = msg->data.result;
        curl_multi_remove_handle(h->multi, x->easy);
        move_to(x, X_FINISHED);
    }
    /* One at a time from the head: a done callback may abort (free) any
     * other finished transfer or start new ones. */
    while ((x = XFER(h->finished.head))) {
        list_unlink(&h->finished, &x->node);
        x->state = X_REPORTING;
        report(x);
        xfer_free(h, x);
    }
}

size_t http_active(const struct http *h)
{
    return h->count;
}
