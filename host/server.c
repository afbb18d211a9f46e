/* server: one or two libmicrohttpd daemons, each with its own polling
 * thread. Handlers only read atomics, the readiness reason (under a small
 * lock) and the metrics registry, so the main loop never waits on a scrape. */
#include "server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "metrics.h"
#include "timers.h"

struct endpoint {
    struct server *owner;
    struct MHD_Daemon *daemon;
    int port;
    bool metrics;   /* serves /metrics */
    bool health;    /* serves /healthz and /readyz */
};

struct server {
    struct endpoint ep[2];
    int stall_seconds;
    atomic_llong heartbeat_ms;
    atomic_bool ready;
    pthread_mutex_t reason_lock; /* guards reason and start_error */
    char reason[256];
    /* While a daemon starts, libmicrohttpd's messages are kept here so the
     * one error line can say why (e.g. "Address already in use"). */
    atomic_bool starting;
    char start_error[256];
};

static const char metrics_type[] = "text/plain; version=0.0.4; charset=utf-8";

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    struct server *s = cls;
    char text[256];
    size_t n;

    vsnprintf(text, sizeof text, fmt, ap);
    n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        text[--n] = '\0';
    if (atomic_load(&s->starting)) {
        pthread_mutex_lock(&s->reason_lock);
        snprintf(s->start_error, sizeof s->start_error, "%s", text);
        pthread_mutex_unlock(&s->reason_lock);
    } else
        log_kv(LOG_WARN, "server: libmicrohttpd", "error", text, NULL);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             void *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    enum MHD_Result rc;

    if (r == NULL) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    return reply(c, status, "text/plain; charset=utf-8", (void *)text, strlen(text),
                 MHD_RESPMEM_MUST_COPY);
}

static enum MHD_Result serve_metrics(struct MHD_Connection *c)
{
    size_t len = 0;
    char *text = metrics_render(&len);

    if (text == NULL)
        return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    return reply(c, MHD_HTTP_OK, metrics_type, text, len, MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result serve_healthz(struct server *s, struct MHD_Connection *c)
{
    long long age = clock_ms() - atomic_load(&s->heartbeat_ms);
    char text[128];

    if (s->stall_seconds <= 0 || age <= (long long)s->stall_seconds * 1000)
        return reply_text(c, MHD_HTTP_OK, "ok");
    snprintf(text, sizeof text, "main loop stalled: last tick %lld s ago", age / 1000);
    return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, text);
}

static enum MHD_Result serve_readyz(struct server *s, struct MHD_Connection *c)
{
    char text[sizeof s->reason];

    if (atomic_load(&s->ready))
        return reply_text(c, MHD_HTTP_OK, "ok");
    pthread_mutex_lock(&s->reason_lock);
    memcpy(text, s->reason, sizeof text);
    pthread_mutex_unlock(&s->reason_lock);
    return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, text);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version,
                              const char *upload_data, size_t *upload_data_size,
                              void **req_cls)
{
    struct endpoint *ep = cls;

    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)req_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (ep->metrics && strcmp(url, "/metrics") == 0)
        return serve_metrics(c);
    if (ep->health && strcmp(url, "/healthz") == 0)
        return serve_healthz(ep->owner, c);
    if (ep->health && strcmp(url, "/readyz") == 0)
        return serve_readyz(ep->owner, c);
    return reply_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

union sockaddr_any {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
};

/* Splits "host:port", ":port" or "[v6]:port". Returns 0, or -1 with the
 * problem in err. */
static int parse_addr(const char *addr, char *host, size_t hostlen, unsigned *port,
                      char *err, size_t errlen)
{
    const char *colon = strrchr(addr, ':');
    const char *h = addr;
    size_t hl;
    char *end;
    unsigned long p;

    if (colon == NULL) {
        snprintf(err, errlen, "want host:port or :port");
        return -1;
    }
    hl = (size_t)(colon - addr);
    if (hl > 0 && addr[0] == '[') {
        if (addr[hl - 1] != ']') {
            snprintf(err, errlen, "unbalanced [ in the host");
            return -1;
        }
        h++;
        hl -= 2;
    } else if (memchr(addr, ':', hl) != NULL) {
        snprintf(err, errlen, "an IPv6 host needs brackets: [addr]:port");
        return -1;
    }
    if (hl >= hostlen) {
        snprintf(err, errlen, "host too long");
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (colon[1] < '0' || colon[1] > '9') {
        snprintf(err, errlen, "port is not a number");
        return -1;
    }
    p = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || p > 65535) {
        snprintf(err, errlen, "port must be a number in 0..65535");
        return -1;
    }
    *port = (unsigned)p;
    return 0;
}

static struct MHD_Daemon *start_daemon(struct server *s, struct endpoint *ep,
                                       unsigned flags, unsigned port,
                                       const union sockaddr_any *sa)
{
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_CONNECTION_TIMEOUT, 10, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, 64, NULL},
        {sa ? MHD_OPTION_SOCK_ADDR : MHD_OPTION_END, 0, (void *)(uintptr_t)sa},
        {MHD_OPTION_END, 0, NULL},
    };

    pthread_mutex_lock(&s->reason_lock);
    s->start_error[0] = '\0';
    pthread_mutex_unlock(&s->reason_lock);
    return MHD_start_daemon(flags | MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG,
                            (uint16_t)port, NULL, NULL, handle, ep,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s,
                            MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
}

/* Starts one daemon on `addr`. Returns 0, or -1 after logging the reason. */
static int listen_on(struct server *s, struct endpoint *ep, const char *what, const char *addr)
{
    char host[256], err[300], bound[16];
    unsigned port;
    union sockaddr_any sa;
    const union MHD_DaemonInfo *info;

    if (parse_addr(addr, host, sizeof host, &port, err, sizeof err) != 0)
        goto fail;
    if (host[0] == '\0') {
        /* All interfaces: one IPv6 socket that also takes IPv4, or IPv4
         * alone where the kernel has no IPv6. */
        ep->daemon = start_daemon(s, ep, MHD_USE_DUAL_STACK, port, NULL);
        if (ep->daemon == NULL)
            ep->daemon = start_daemon(s, ep, 0, port, NULL);
    } else {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
        struct addrinfo *res = NULL;
        int gai = getaddrinfo(host, NULL, &hints, &res);
        if (gai != 0) {
            snprintf(err, sizeof err, "%s", gai_strerror(gai));
            goto fail;
        }
        memset(&sa, 0, sizeof sa);
        memcpy(&sa, res->ai_addr,
               res->ai_addrlen < sizeof sa ? res->ai_addrlen : sizeof sa);
        freeaddrinfo(res);
        if (sa.sa.sa_family == AF_INET6)
            sa.in6.sin6_port = htons((uint16_t)port);
        else
            sa.in4.sin_port = htons((uint16_t)port);
        ep->daemon = start_daemon(s, ep, sa.sa.sa_family == AF_INET6 ? MHD_USE_IPv6 : 0,
                                  port, &sa);
    }
    if (ep->daemon == NULL) {
        pthread_mutex_lock(&s->reason_lock);
        snprintf(err, sizeof err, "%s",
                 s->start_error[0] ? s->start_error : "libmicrohttpd could not start");
        pthread_mutex_unlock(&s->reason_lock);
        goto fail;
    }
    info = MHD_get_daemon_info(ep->daemon, MHD_DAEMON_INFO_BIND_PORT);
    ep->port = info ? info->port : (int)port;
    snprintf(bound, sizeof bound, "%d", ep->port);
    log_kv(LOG_INFO, "serving", "endpoints", what, "address", addr, "port", bound, NULL);
    return 0;

fail:
    log_kv(LOG_ERROR, "server: cannot listen", "endpoints", what, "address", addr,
           "error", err, NULL);
    return -1;
}

static bool disabled(const char *addr)
{
    return addr == NULL || addr[0] == '\0' || strcmp(addr, "0") == 0;
}

struct server *server_start(const char *metrics_addr, const char *health_addr,
                            int stall_seconds)
{
    struct server *s = calloc(1, sizeof *s);
    bool want_metrics = !disabled(metrics_addr);
    bool want_health = !disabled(health_addr);

    if (s == NULL) {
        log_error("server: out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->reason_lock, NULL);
    s->stall_seconds = stall_seconds;
    atomic_store(&s->heartbeat_ms, clock_ms());
    snprintf(s->reason, sizeof s->reason, "not ready: starting");
    s->ep[0].owner = s->ep[1].owner = s;
    atomic_store(&s->starting, true);

    if (want_metrics && want_health && strcmp(metrics_addr, health_addr) == 0) {
        s->ep[0].metrics = s->ep[0].health = true;
        if (listen_on(s, &s->ep[0], "metrics,health", metrics_addr) != 0)
            goto fail;
    } else {
        s->ep[0].metrics = want_metrics;
        s->ep[1].health = want_health;
        if (want_metrics && listen_on(s, &s->ep[0], "metrics", metrics_addr) != 0)
            goto fail;
        if (want_health && listen_on(s, &s->ep[1], "health", health_addr) != 0)
            goto fail;
    }
    atomic_store(&s->starting, false);
    return s;

fail:
    server_stop(s);
    return NULL;
}

void server_stop(struct server *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < 2; i++)
        if (s->ep[i].daemon != NULL)
            MHD_stop_daemon(s->ep[i].daemon);
    pthread_mutex_destroy(&s->reason_lock);
    free(s);
}

int server_metrics_port(const struct server *s)
{
    return s->ep[0].metrics ? s->ep[0].port : 0;
}

int server_health_port(const struct server *s)
{
    if (s->ep[0].health)
        return s->ep[0].port;
    return s->ep[1].health ? s->ep[1].port : 0;
}

void server_set_ready(struct server *s, bool ready, const char *reason)
{
    pthread_mutex_lock(&s->reason_lock);
    snprintf(s->reason, sizeof s->reason, "%s",
             reason && *reason ? reason : "not ready");
    pthread_mutex_unlock(&s->reason_lock);
    atomic_store(&s->ready, ready);
}

void server_heartbeat(struct server *s)
{
    atomic_store(&s->heartbeat_ms, clock_ms());
}
