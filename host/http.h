/* http: the libcurl multi mechanics under kube.c.
 *
 * One CURLM for every transfer (its connection cache keeps connections open
 * and multiplexes HTTP/2 streams), one CURLSH for TLS sessions and DNS, and a
 * few idle easy handles kept for reuse. Knows nothing of Kubernetes: kube.c
 * decides URLs, headers, retries and bounds.
 *
 * Callbacks: `data` runs inside curl (a transfer is being read), `done` runs
 * from http_perform after curl has let go. Both may call http_start and
 * http_abort on any transfer; neither may call http_free or http_perform. */
#ifndef ENVOY_ROUTER_HTTP_H
#define ENVOY_ROUTER_HTTP_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>

struct http;
struct http_xfer;

/* TLS material shared by every transfer; the blobs are copied. */
struct http_tls {
    const char *ca;   size_t ca_len;    /* PEM bundle or NULL: system CAs */
    const char *cert; size_t cert_len;  /* client certificate PEM or NULL */
    const char *key;  size_t key_len;   /* client key PEM or NULL */
    bool insecure;                      /* no peer/host verification */
};

/* How a transfer ended. Valid only during the done callback. */
struct http_result {
    long status;          /* HTTP status, 0 when none arrived */
    const char *body;     /* NUL-terminated; "" when none */
    size_t len;
    const char *error;    /* transport error text or "aborted", or NULL */
    bool transport_error; /* error came from the network (worth a retry) */
    long retry_after;     /* Retry-After in seconds, -1 when absent */
    double seconds;       /* start to end */
    double first_byte;    /* start to the first response byte, 0 if none */
};

typedef void (*http_done_fn)(void *arg, const struct http_result *r);

/* A chunk of a streamed 200 body. Non-zero stops the transfer; done then
 * reports error "aborted". */
typedef int (*http_data_fn)(void *arg, const char *data, size_t len);

struct http_request {
    const char *method;          /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *url;             /* copied by curl */
    const char *const *headers;  /* "Name: value" strings, NULL-terminated; copied */
    const char *body;            /* not copied: valid until done or abort */
    size_t len;
    long timeout_ms;             /* whole transfer; 0: no limit */
    long low_speed_secs;         /* end a transfer below 1 byte/s for this long; 0: off */
    bool compressed;             /* accept gzip */
    http_data_fn data;           /* NULL: the body is collected for done */
    size_t max_body;             /* cap on the collected body (the error body of a
                                    streamed non-200 is cut there, an ordinary
                                    body beyond it fails the transfer) */
};

/* New client with `tls` and `user_agent` (copied). NULL with one line in err
 * when libcurl cannot be set up. */
struct http *http_new(const struct http_tls *tls, const char *user_agent,
                      char *err, size_t errlen);

/* Drops every transfer without callbacks and frees; http_free(NULL) is a no-op. */
void http_free(struct http *h);

/* Starts a transfer; `done` runs exactly once unless it is aborted. Returns
 * the handle (valid until done returns or http_abort), or NULL when out of
 * memory or curl refuses the options (nothing is called then). */
struct http_xfer *http_start(struct http *h, const struct http_request *rq,
                             http_done_fn done, void *arg);

/* Ends a transfer without calling its done. NULL is ignored. */
void http_abort(struct http *h, struct http_xfer *x);

/* curl_multi_poll on curl's sockets plus the caller's fds (revents filled in)
 * for at most timeout_ms (negative: as long as curl allows). 0, or -1 when
 * polling failed. */
int http_wait(struct http *h, struct pollfd *fds, unsigned nfds, int timeout_ms);

/* Reads and writes what is ready, then runs done for finished transfers. */
void http_perform(struct http *h);

/* Transfers started and not yet reported. */
size_t http_active(const struct http *h);

/* True when curl was built with HTTP/2 (then https transfers offer it). */
bool http_has_http2(void);

#endif
