/* server: one or two libmicrohttpd daemons, each with its own polling
 * thread. Handlers only read atomics, the readiness reason (under a small
 * lock) and the metrics registry, so the main loop never waits on a scrape.
 *
 * Slow clients cannot starve the probes: each address may hold only
 * PER_ADDRESS_CONNECTIONS connections (the kubelet probes from the node's
 * address, Prometheus from its own), a connection idle for IDLE_SECONDS is
 * closed by libmicrohttpd, and one that trickles bytes to stay busy is cut
 * REQUEST_MAX_MS after it was accepted by a small reaper thread (libmicrohttpd
 * 0.9 has no total-time option): it shuts the socket down, which libmicrohttpd
 * then sees as closed by the peer and cleans up on its own thread. */
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
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "timers.h"

#define TOTAL_CONNECTIONS 256
#define PER_ADDRESS_CONNECTIONS 8
#define IDLE_SECONDS 5
#define REQUEST_MAX_MS 8000
#define REAP_EVERY_MS 250

/* A connection accepted and not yet closed: its socket and when it came. */
struct tracked {
    struct tracked *prev, *next;
    int fd;
    int64_t since_ms;
    bool cut;
};

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
    /* The reaper of connections past REQUEST_MAX_MS. */
    pthread_mutex_t conn_lock;   /* guards conns, stop */
    pthread_cond_t conn_cond;
    struct tracked *conns;
    bool stop, reaper_started;
    pthread_t reaper;
};

/* libmicrohttpd's thread: a connection starts or is closed. CLOSED comes
 * before libmicrohttpd closes the socket, so a tracked fd is never one that
 * was reused. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct server *s = cls;
    struct tracked *t = *socket_context;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci == NULL || (t = calloc(1, sizeof *t)) == NULL)
            return;
        t->fd = ci->connect_fd;
        t->since_ms = clock_ms();
        pthread_mutex_lock(&s->conn_lock);
        t->next = s->conns;
        if (s->conns)
            s->conns->prev = t;
        s->conns = t;
        pthread_mutex_unlock(&s->conn_lock);
        *socket_context = t;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && t != NULL) {
        pthread_mutex_lock(&s->conn_lock);
        if (t->prev)
            t->prev->next = t->next;
        else
            s->conns = t->next;
        if (t->next)
            t->next->prev = t->prev;
        pthread_mutex_unlock(&s->conn_lock);
        free(t);
        *socket_context = NULL;
    }
}

static void *reaper(void *arg)
{
    struct server *s = arg;

    pthread_mutex_lock(&s->conn_lock);
    while (!s->stop) {
        struct timespec ts;
        int64_t now = clock_ms();

        for (struct tracked *t = s->conns; t; t = t->next) {
            if (!t->cut && now - t->since_ms >= REQUEST_MAX_MS) {
                t->cut = true;
                shutdown(t->fd, SHUT_RDWR);
            }
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += REAP_EVERY_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->conn_cond, &s->conn_lock, &ts);
    }
    pthread_mutex_unlock(&s->conn_lock);
    return NULL;
}

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
        {MHD_OPTION_CONNECTION_TIMEOUT, IDLE_SECONDS, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, TOTAL_CONNECTIONS, NULL},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, PER_ADDRESS_CONNECTIONS, NULL},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)(uintptr_t)on_connection, s},
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
    pthread_mutex_init(&s->conn_lock, NULL);
    pthread_cond_init(&s->conn_cond, NULL);
    if (pthread_create(&s->reaper, NULL, reaper, s) != 0) {
        log_error("server: cannot start a thread");
        pthread_cond_destroy(&s->conn_cond);
        pthread_mutex_destroy(&s->conn_lock);
        pthread_mutex_destroy(&s->reason_lock);
        free(s);
        return NULL;
    }
    s->reaper_started = true;
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
            MHD_stop_daemon(s->ep[i].daemon);   /* closes (and untracks) all */
    pthread_mutex_lock(&s->conn_lock);
    s->stop = true;
    pthread_cond_signal(&s->conn_cond);
    pthread_mutex_unlock(&s->conn_lock);
    if (s->reaper_started)
        pthread_join(s->reaper, NULL);
    pthread_cond_destroy(&s->conn_cond);
    pthread_mutex_destroy(&s->conn_lock);
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
