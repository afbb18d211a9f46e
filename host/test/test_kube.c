/* Tests of kube.c (and http.c under it) against a libmicrohttpd server on
 * 127.0.0.1 started inside the test, whose replies each test scripts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "kube.h"
#include "log.h"
#include "metrics.h"
#include "timers.h"

/* --- a stand-in for the system CA directory ------------------------------- */

/* When set, every TLS transfer starts with this directory as its CA path,
 * as curl's built-in system directory (/etc/ssl/certs) would be: the test
 * cannot add a CA to the real one. http.c's own options come after. */
static const char *fake_system_capath;

#undef curl_easy_setopt
CURLcode curl_easy_setopt(CURL *e, CURLoption opt, ...)
{
    static CURLcode (*real)(CURL *, CURLoption, ...);
    va_list ap;
    void *arg;

    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "curl_easy_setopt");
    va_start(ap, opt);
    arg = va_arg(ap, void *);   /* long, pointer and curl_off_t: one 64-bit slot */
    va_end(ap);
    if (opt == CURLOPT_SSL_VERIFYPEER && fake_system_capath)
        real(e, CURLOPT_CAPATH, fake_system_capath);
    return real(e, opt, arg);
}

/* --- the scripted server -------------------------------------------------- */

#define MAX_HITS 64

struct hit {
    char method[16];
    char path[512];
    char auth[256];
    char ctype[128];
    char accept[64];
    char ua[64];
    char body[1024];
    size_t body_len;
    int64_t at_ms;
    int client_certs;           /* TLS: certificates the client presented */
};

struct srv;

/* Decides the reply to hit number n (0-based). Runs on a server thread. */
typedef enum MHD_Result (*script_fn)(struct srv *s, struct MHD_Connection *conn, int n,
                                     const struct hit *h);

struct srv {
    struct MHD_Daemon *d;
    unsigned port;
    pthread_mutex_t mu;
    struct hit hits[MAX_HITS];
    int nhits;
    int concurrent, max_concurrent;
    script_fn script;
    const char *token_path;     /* for the rotating-token script */
    int delay_ms;               /* for scripts that sleep */
    char *tls_key, *tls_cert, *tls_trust;
};

struct upload {
    char body[1024];
    size_t len;
};

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void copy_header(struct MHD_Connection *conn, const char *name, char *out, size_t n)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);

    snprintf(out, n, "%s", v ? v : "");
}

/* How many certificates the TLS client sent: asked of the gnutls already
 * loaded by libmicrohttpd, so the test links nothing more. -1 on plain http. */
static int count_client_certs(struct MHD_Connection *conn)
{
    typedef const void *(*get_peers_fn)(void *session, unsigned *n);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    get_peers_fn get_peers;
    unsigned n = 0;

    if (!ci || !ci->tls_session)
        return -1;
    *(void **)&get_peers = dlsym(RTLD_DEFAULT, "gnutls_certificate_get_peers");
    assert_non_null(get_peers);
    return get_peers(ci->tls_session, &n) ? (int)n : 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **ctx)
{
    struct srv *s = cls;
    struct upload *u = *ctx;
    struct hit h;
    enum MHD_Result rc;
    int n;

    (void)version;
    if (!u) {
        u = calloc(1, sizeof(*u));
        *ctx = u;
        return u ? MHD_YES : MHD_NO;
    }
    if (*upload_size > 0) {
        size_t room = sizeof(u->body) - 1 - u->len;
        size_t take = *upload_size < room ? *upload_size : room;

        memcpy(u->body + u->len, upload_data, take);
        u->len += take;
        *upload_size = 0;
        return MHD_YES;
    }
    memset(&h, 0, sizeof(h));
    snprintf(h.method, sizeof(h.method), "%s", method);
    /* MHD hands over the path without the query string */
    snprintf(h.path, sizeof(h.path), "%s", url);
    copy_header(conn, "Authorization", h.auth, sizeof(h.auth));
    copy_header(conn, "Content-Type", h.ctype, sizeof(h.ctype));
    copy_header(conn, "Accept", h.accept, sizeof(h.accept));
    copy_header(conn, "User-Agent", h.ua, sizeof(h.ua));
    memcpy(h.body, u->body, u->len + 1);
    h.body_len = u->len;
    h.at_ms = clock_ms();
    h.client_certs = count_client_certs(conn);
    free(u);
    *ctx = NULL;

    pthread_mutex_lock(&s->mu);
    n = s->nhits;
    if (s->nhits < MAX_HITS)
        s->hits[s->nhits++] = h;
    s->concurrent++;
    if (s->concurrent > s->max_concurrent)
        s->max_concurrent = s->concurrent;
    pthread_mutex_unlock(&s->mu);

    rc = s->script(s, conn, n, &h);

    pthread_mutex_lock(&s->mu);
    s->concurrent--;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void srv_start(struct srv *s, script_fn script)
{
    struct sockaddr_in sa;
    const union MHD_DaemonInfo *info;

    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    s->script = script;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = 0;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD,
                            0, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_END);
    assert_non_null(s->d);
    info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(info);
    s->port = info->port;
    assert_true(s->port > 0);
}

static char *read_fixture(const char *name, size_t *len)
{
    const char *slash = strrchr(__FILE__, '/');
    char path[1024];
    FILE *f;
    char *buf = calloc(1, 16384);
    size_t n;

    snprintf(path, sizeof(path), "%.*s/data/kube/%s", slash ? (int)(slash - __FILE__) : 1,
             slash ? __FILE__ : ".", name);
    f = fopen(path, "rb");
    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, 16383, f);
    fclose(f);
    if (len)
        *len = n;
    return buf;
}

/* The same server over TLS: server.pem from ca.pem, client certificates
 * requested (not required) against ca.pem. */
static void srv_start_tls(struct srv *s, script_fn script)
{
    struct sockaddr_in sa;
    const union MHD_DaemonInfo *info;

    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    s->script = script;
    s->tls_key = read_fixture("server-key.pem", NULL);
    s->tls_cert = read_fixture("server.pem", NULL);
    s->tls_trust = read_fixture("ca.pem", NULL);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                                MHD_USE_TLS,
                            0, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_HTTPS_MEM_KEY, s->tls_key,
                            MHD_OPTION_HTTPS_MEM_CERT, s->tls_cert,
                            MHD_OPTION_HTTPS_MEM_TRUST, s->tls_trust, MHD_OPTION_END);
    assert_non_null(s->d);
    info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(info);
    s->port = info->port;
}

static void srv_stop(struct srv *s)
{
    if (s->d)
        MHD_stop_daemon(s->d);
    s->d = NULL;
    pthread_mutex_destroy(&s->mu);
    free(s->tls_key);
    free(s->tls_cert);
    free(s->tls_trust);
}

static int srv_hits(struct srv *s)
{
    int n;

    pthread_mutex_lock(&s->mu);
    n = s->nhits;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *body,
                             const char *retry_after)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body,
                                                             MHD_RESPMEM_MUST_COPY);
    enum MHD_Result rc;

    MHD_add_response_header(r, "Content-Type", "application/json");
    if (retry_after)
        MHD_add_response_header(r, "Retry-After", retry_after);
    rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* --- the client side ------------------------------------------------------ */

struct result {
    int calls;
    long status;
    char body[128 * 1024];
    size_t len;
    char error[256];
    bool has_error;
    int64_t at_ms;
    int order;          /* position among finished calls */
};

static int finished_count;

static void on_done(void *arg, const struct kube_response *r)
{
    struct result *res = arg;

    res->calls++;
    res->status = r->status;
    res->len = r->len;
    assert_true(r->len < sizeof(res->body));
    memcpy(res->body, r->body, r->len + 1);
    assert_int_equal(r->body[r->len], '\0');
    res->has_error = r->error != NULL;
    snprintf(res->error, sizeof(res->error), "%s", r->error ? r->error : "");
    res->at_ms = clock_ms();
    res->order = finished_count++;
}

static struct kube *client(struct srv *s, const char *token, const char *token_file,
                           unsigned max_in_flight, unsigned max_attempts)
{
    char url[64], err[256] = "";
    struct kube_auth a = { 0 };
    struct kube_options o = { 0 };
    struct kube *k;

    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", s->port);
    a.server = url;
    a.token = (char *)token;
    a.token_file = (char *)token_file;
    o.max_in_flight = max_in_flight;
    o.max_attempts = max_attempts;
    o.user_agent = "envoy-router/test";
    k = kube_new(&a, &o, err, sizeof(err));
    if (!k)
        print_error("kube_new: %s\n", err);
    assert_non_null(k);
    return k;
}

/* Drives the client until *count reaches want or max_ms pass. */
static void run_until(struct kube *k, const int *count, int want, int max_ms)
{
    int64_t end = clock_ms() + max_ms;

    while (*count < want && clock_ms() < end) {
        assert_int_equal(kube_wait(k, NULL, 0, 50), 0);
        kube_perform(k);
    }
}

static void run_for(struct kube *k, int ms)
{
    int64_t end = clock_ms() + ms;

    while (clock_ms() < end) {
        assert_int_equal(kube_wait(k, NULL, 0, 20), 0);
        kube_perform(k);
    }
}

static double requests_total(const char *labels)
{
    return metrics_value(metrics_counter("rest_client_requests_total", "", "code,method"),
                         labels);
}

static int setup(void **state)
{
    (void)state;
    metrics_reset();
    finished_count = 0;
    return 0;
}

static void write_token(const char *path, const char *text)
{
    char tmp[300];
    FILE *f;

    /* Replace the file the way a kubelet does: a new file moved over it. */
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

/* --- scripts -------------------------------------------------------------- */

static enum MHD_Result script_ok(struct srv *s, struct MHD_Connection *conn, int n,
                                 const struct hit *h)
{
    (void)s;
    (void)n;
    (void)h;
    return reply(conn, 200, "{\"kind\":\"PodList\",\"items\":[]}", NULL);
}

static enum MHD_Result script_echo_created(struct srv *s, struct MHD_Connection *conn, int n,
                                           const struct hit *h)
{
    (void)s;
    (void)n;
    return reply(conn, 201, h->body, NULL);
}

/* 401 for the old token, after rotating the file as a kubelet would. */
static enum MHD_Result script_rotate_on_401(struct srv *s, struct MHD_Connection *conn, int n,
                                            const struct hit *h)
{
    (void)n;
    if (strcmp(h->auth, "Bearer old") == 0) {
        write_token(s->token_path, "new\n");
        return reply(conn, 401, "{\"reason\":\"Unauthorized\"}", NULL);
    }
    return reply(conn, 200, "{}", NULL);
}

static enum MHD_Result script_always_401(struct srv *s, struct MHD_Connection *conn, int n,
                                         const struct hit *h)
{
    (void)s;
    (void)n;
    (void)h;
    return reply(conn, 401, "{\"reason\":\"Unauthorized\"}", NULL);
}

static enum MHD_Result script_503_then_ok(struct srv *s, struct MHD_Connection *conn, int n,
                                          const struct hit *h)
{
    (void)s;
    (void)h;
    /* A restarted kube-apiserver says 5 s while its CRDs' paths come up. */
    if (n == 0)
        return reply(conn, 503, "busy", "5");
    return reply(conn, 200, "fine", NULL);
}

static enum MHD_Result script_429_twice(struct srv *s, struct MHD_Connection *conn, int n,
                                        const struct hit *h)
{
    (void)s;
    (void)h;
    if (n < 2)
        return reply(conn, 429, "slow down", NULL);
    return reply(conn, 200, "ok", NULL);
}

static enum MHD_Result script_always_502(struct srv *s, struct MHD_Connection *conn, int n,
                                         const struct hit *h)
{
    char body[32];

    (void)s;
    (void)h;
    snprintf(body, sizeof(body), "bad gateway %d", n);
    return reply(conn, 502, body, "0");
}

static enum MHD_Result script_404(struct srv *s, struct MHD_Connection *conn, int n,
                                  const struct hit *h)
{
    (void)s;
    (void)n;
    (void)h;
    return reply(conn, 404, "{\"reason\":\"NotFound\"}", NULL);
}

static enum MHD_Result script_409(struct srv *s, struct MHD_Connection *conn, int n,
                                  const struct hit *h)
{
    (void)s;
    (void)n;
    (void)h;
    return reply(conn, 409, "{\"reason\":\"AlreadyExists\"}", NULL);
}

static enum MHD_Result script_close(struct srv *s, struct MHD_Connection *conn, int n,
                                    const struct hit *h)
{
    (void)s;
    (void)conn;
    (void)n;
    (void)h;
    return MHD_NO;   /* drop the connection without a response */
}

static enum MHD_Result script_slow(struct srv *s, struct MHD_Connection *conn, int n,
                                   const struct hit *h)
{
    (void)n;
    sleep_ms(s->delay_ms);
    return reply(conn, 200, h->path, NULL);
}

/* A watch body sent as chunks, with a pause before each. */
struct stream {
    const char *const *chunks;
    int n, next, delay_ms;
};

static const char *const watch_chunks[] = { "{\"type\":\"ADDED\"}\n", "{\"type\":",
                                            "\"MODIFIED\"}\n" };

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *st = cls;
    size_t n;

    (void)pos;
    if (st->next == st->n)
        return MHD_CONTENT_READER_END_OF_STREAM;
    sleep_ms(st->delay_ms);
    n = strlen(st->chunks[st->next]);
    if (n > max)
        n = max;
    memcpy(buf, st->chunks[st->next++], n);
    return (ssize_t)n;
}

static enum MHD_Result script_watch(struct srv *s, struct MHD_Connection *conn, int n,
                                    const struct hit *h)
{
    struct stream *st = calloc(1, sizeof(*st));
    struct MHD_Response *r;
    enum MHD_Result rc;

    (void)n;
    (void)h;
    st->chunks = watch_chunks;
    st->n = 3;
    st->delay_ms = s->delay_ms;
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1024, stream_read, st, free);
    MHD_add_response_header(r, "Content-Type", "application/json");
    rc = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return rc;
}

static char big_error[100 * 1024 + 1];

static enum MHD_Result script_watch_410(struct srv *s, struct MHD_Connection *conn, int n,
                                        const struct hit *h)
{
    (void)s;
    (void)n;
    if (strstr(h->path, "big"))
        return reply(conn, 500, big_error, NULL);
    return reply(conn, 410, "{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\"}", NULL);
}

/* --- plain calls ---------------------------------------------------------- */

static void test_logs_each_request_and_retry(void **state)
{
    struct srv s;
    struct kube *k;
    struct result res = { 0 };
    FILE *f = tmpfile();
    char text[4096];
    size_t n;
    char *retry, *first, *second;

    (void)state;
    assert_non_null(f);
    log_set_output(f);
    log_setup(LOG_DEBUG, false);
    srv_start(&s, script_always_502);
    k = client(&s, NULL, NULL, 1, 2);
    kube_request(k, "GET", "/api/v1/pods?limit=1", NULL, NULL, 0, on_done, &res);
    run_until(k, &res.calls, 1, 5000);
    kube_free(k);
    srv_stop(&s);
    log_setup(LOG_ERROR, false);
    log_set_output(NULL);
    rewind(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    assert_int_equal(res.status, 502);
    /* debug line, warn line, debug line, in that order */
    first = strstr(text, "level=debug");
    retry = strstr(text, "level=warn");
    assert_non_null(first);
    assert_non_null(retry);
    second = strstr(retry, "level=debug");
    assert_non_null(second);
    assert_true(first < retry);
    assert_non_null(strstr(first, "method=GET path=\"/api/v1/pods?limit=1\" status=502 ms="));
    assert_non_null(strstr(retry, "status=502"));
    assert_non_null(strstr(retry, "attempt=1/2 delay_ms=0"));
    assert_non_null(strstr(second, "status=502"));
    assert_null(strstr(second + 1, "level=warn"));   /* the last attempt is not retried */
}

static void test_get_ok(void **state)
{
    struct srv s;
    struct kube *k;
    struct result res = { 0 };
    struct kube_call *c;

    (void)state;
    srv_start(&s, script_ok);
    k = client(&s, NULL, NULL, 4, 3);
    assert_int_equal(kube_next_timeout(k), -1);
    c = kube_request(k, "GET", "/api/v1/pods?limit=500", NULL, NULL, 0, on_done, &res);
    assert_non_null(c);
    assert_int_equal(kube_pending(k), 1);
    run_until(k, &res.calls, 1, 5000);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "{\"kind\":\"PodList\",\"items\":[]}");
    assert_int_equal(res.len, strlen(res.body));
    assert_false(res.has_error);
    assert_int_equal(kube_pending(k), 0);
    assert_int_equal(srv_hits(&s), 1);
    assert_string_equal(s.hits[0].method, "GET");
    assert_string_equal(s.hits[0].path, "/api/v1/pods");
    assert_string_equal(s.hits[0].accept, "application/json");
    assert_string_equal(s.hits[0].ua, "envoy-router/test");
    assert_string_equal(s.hits[0].auth, "");
    assert_true(requests_total("200,GET") == 1);
    assert_true(metrics_value(metrics_histogram("rest_client_request_duration_seconds", "",
                                                "verb", NULL, 0), "GET") == 1);
    kube_free(k);
    srv_stop(&s);
}

static void test_post_and_patch_bodies(void **state)
{
    struct srv s;
    struct kube *k;
    struct result a = { 0 }, b = { 0 };
    const char *apply = "{\"apiVersion\":\"v1\",\"kind\":\"Service\"}";

    (void)state;
    srv_start(&s, script_echo_created);
    k = client(&s, "t", NULL, 1, 1);
    assert_non_null(kube_request(k, "POST", "/api/v1/namespaces/a/services", NULL,
                                 "{\"x\":1}", 7, on_done, &a));
    assert_non_null(kube_request(k, "PATCH",
                                 "/api/v1/namespaces/a/services/s?fieldManager=envoy-router",
                                 "application/apply-patch+yaml", apply, strlen(apply),
                                 on_done, &b));
    run_until(k, &finished_count, 2, 5000);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_int_equal(srv_hits(&s), 2);
    assert_string_equal(s.hits[0].method, "POST");
    assert_string_equal(s.hits[0].ctype, "application/json");
    assert_string_equal(s.hits[0].body, "{\"x\":1}");
    assert_string_equal(s.hits[1].method, "PATCH");
    assert_string_equal(s.hits[1].path, "/api/v1/namespaces/a/services/s");
    assert_string_equal(s.hits[1].ctype, "application/apply-patch+yaml");
    assert_string_equal(s.hits[1].body, apply);
    assert_int_equal(a.status, 201);
    assert_string_equal(a.body, "{\"x\":1}");
    assert_string_equal(b.body, apply);
    assert_true(requests_total("201,POST") == 1);
    assert_true(requests_total("201,PATCH") == 1);
    kube_free(k);
    srv_stop(&s);
}

static void test_delete_and_put(void **state)
{
    struct srv s;
    struct kube *k;
    struct result a = { 0 }, b = { 0 };

    (void)state;
    srv_start(&s, script_echo_created);
    k = client(&s, NULL, NULL, 1, 1);
    assert_non_null(kube_request(k, "DELETE", "/api/v1/namespaces/a/services/s", NULL, NULL,
                                 0, on_done, &a));
    assert_non_null(kube_request(k, "PUT", "/apis/coordination.k8s.io/v1/namespaces/a/leases/l",
                                 NULL, "{}", 2, on_done, &b));
    run_until(k, &finished_count, 2, 5000);
    assert_string_equal(s.hits[0].method, "DELETE");
    assert_int_equal(s.hits[0].body_len, 0);
    assert_string_equal(s.hits[0].ctype, "");
    /* it went out beside the first write, not after the backlog */
    assert_true(strcmp(s.hits[0].method, "PUT") == 0 || strcmp(s.hits[1].method, "PUT") == 0);
    assert_string_equal(s.hits[1].body, "{}");
    kube_free(k);
    srv_stop(&s);
}

static void test_static_token_header(void **state)
{
    struct srv s;
    struct kube *k;
    struct result res = { 0 };

    (void)state;
    srv_start(&s, script_ok);
    k = client(&s, "static-123", NULL, 1, 1);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &res);
    run_until(k, &res.calls, 1, 5000);
    assert_int_equal(res.status, 200);
    assert_string_equal(s.hits[0].auth, "Bearer static-123");
    kube_free(k);
    srv_stop(&s);
}

static void test_token_file_rotation(void **state)
{
    char dir[] = "/tmp/kube-test-XXXXXX", path[64];
    struct srv s;
    struct kube *k;
    struct result a = { 0 }, b = { 0 };

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/token", dir);
    write_token(path, "first\n");
    srv_start(&s, script_ok);
    k = client(&s, "ignored-static", path, 1, 1);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &a);
    run_until(k, &a.calls, 1, 5000);
    write_token(path, "second-token\n");
    sleep_ms(1100);   /* the file is looked at once a second at most */
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &b);
    run_until(k, &b.calls, 1, 5000);
    assert_int_equal(srv_hits(&s), 2);
    assert_string_equal(s.hits[0].auth, "Bearer first");
    assert_string_equal(s.hits[1].auth, "Bearer second-token");
    kube_free(k);
    srv_stop(&s);
    unlink(path);
    rmdir(dir);
}

static void test_401_rereads_token_and_retries_once(void **state)
{
    char dir[] = "/tmp/kube-test-XXXXXX", path[64];
    struct srv s;
    struct kube *k;
    struct result res = { 0 };

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/token", dir);
    write_token(path, "old\n");
    srv_start(&s, script_rotate_on_401);
    s.token_path = path;
    /* max_attempts 1: the 401 retry is on top of the ordinary attempts */
    k = client(&s, NULL, path, 1, 1);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &res);
    run_until(k, &res.calls, 1, 5000);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, 200);
    assert_int_equal(srv_hits(&s), 2);
    assert_string_equal(s.hits[0].auth, "Bearer old");
    assert_string_equal(s.hits[1].auth, "Bearer new");
    assert_true(requests_total("401,GET") == 1);
    assert_true(requests_total("200,GET") == 1);
    kube_free(k);
    srv_stop(&s);
    unlink(path);
    rmdir(dir);
}

static void test_401_retried_only_once(void **state)
{
    char dir[] = "/tmp/kube-test-XXXXXX", path[64];
    struct srv s;
    struct kube *k;
    struct result a = { 0 }, b = { 0 };

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/token", dir);
    write_token(path, "tok\n");
    srv_start(&s, script_always_401);
    k = client(&s, NULL, path, 1, 5);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &a);
    run_until(k, &a.calls, 1, 5000);
    assert_int_equal(a.status, 401);
    assert_string_equal(a.body, "{\"reason\":\"Unauthorized\"}");
    assert_int_equal(srv_hits(&s), 2);
    kube_free(k);

    /* a static token cannot change: no retry at all */
    k = client(&s, "static", NULL, 1, 5);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &b);
    run_until(k, &b.calls, 1, 5000);
    assert_int_equal(b.status, 401);
    assert_int_equal(srv_hits(&s), 3);
    kube_free(k);
    srv_stop(&s);
    unlink(path);
    rmdir(dir);
}

/* A 503's Retry-After is honoured up to 1 s: the server is coming back, and
 * its 5 s would idle every write after a restart (a 429's is kept, up to
 * 60 s). */
static void test_503_honours_retry_after(void **state)
{
    struct srv s;
    struct kube *k;
    struct result res = { 0 };
    long next;

    (void)state;
    srv_start(&s, script_503_then_ok);
    k = client(&s, NULL, NULL, 1, 5);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &res);
    while (srv_hits(&s) < 1 || kube_next_timeout(k) < 0) {
        assert_int_equal(kube_wait(k, NULL, 0, 20), 0);
        kube_perform(k);
    }
    /* waiting for the retry: the client's own deadline is about 1 s away */
    next = kube_next_timeout(k);
    assert_true(next > 800 && next <= 1000);
    assert_int_equal(kube_pending(k), 1);
    run_until(k, &res.calls, 1, 5000);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "fine");
    assert_int_equal(srv_hits(&s), 2);
    assert_true(s.hits[1].at_ms - s.hits[0].at_ms >= 1000);
    assert_true(s.hits[1].at_ms - s.hits[0].at_ms < 1500);
    assert_true(requests_total("503,GET") == 1);
    kube_free(k);
    srv_stop(&s);
}

static void test_429_retried_with_backoff(void **state)
{
    struct srv s;
    struct kube *k;
    struct result res = { 0 };

    (void)state;
    srv_start(&s, script_429_twice);
    k = client(&s, NULL, NULL, 1, 5);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &res);
    run_until(k, &res.calls, 1, 5000);
    assert_int_equal(res.status, 200);
    assert_int_equal(srv_hits(&s), 3);
    /* 200 ms then 400 ms, each within +-20% */
    assert_true(s.hits[1].at_ms - s.hits[0].at_ms >= 160);
    assert_true(s.hits[1].at_ms - s.hits[0].at_ms < 400);
    assert_true(s.hits[2].at_ms - s.hits[1].at_ms >= 320);
    assert_true(s.hits[2].at_ms - s.hits[1].at_ms < 700);
    assert_true(requests_total("429,GET") == 2);
    kube_free(k);
    srv_stop(&s);
}

static void test_retries_exhausted_gives_last_result(void **state)
{
    struct srv s;
    struct kube *k;
    struct result res = { 0 };

    (void)state;
    srv_start(&s, script_always_502);
    k = client(&s, NULL, NULL, 1, 3);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &res);
    run_until(k, &res.calls, 1, 5000);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, 502);
    assert_string_equal(res.body, "bad gateway 2");
    assert_false(res.has_error);
    assert_int_equal(srv_hits(&s), 3);
    kube_free(k);
    srv_stop(&s);
}

static void test_4xx_not_retried(void **state)
{
    struct srv s;
    struct kube *k;
    struct result a = { 0 }, b = { 0 };

    (void)state;
    srv_start(&s, script_404);
    k = client(&s, NULL, NULL, 1, 5);
    kube_request(k, "GET", "/api/v1/namespaces/a/pods/gone", NULL, NULL, 0, on_done, &a);
    run_until(k, &a.calls, 1, 5000);
    run_for(k, 300);   /* would be long enough for a first retry */
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, 404);
    assert_string_equal(a.body, "{\"reason\":\"NotFound\"}");
    assert_int_equal(srv_hits(&s), 1);
    kube_free(k);
    srv_stop(&s);

    srv_start(&s, script_409);
    k = client(&s, NULL, NULL, 1, 5);
    kube_request(k, "POST", "/api/v1/namespaces/a/services", NULL, "{}", 2, on_done, &b);
    run_until(k, &b.calls, 1, 5000);
    run_for(k, 300);
    assert_int_equal(b.status, 409);
    assert_int_equal(srv_hits(&s), 1);
    kube_free(k);
    srv_stop(&s);
}

static void test_transport_error_refused(void **state)
{
    struct srv s;
    struct kube *k;
    struct result res = { 0 };
    char want[80];

    (void)state;
    srv_start(&s, script_ok);
    k = client(&s, NULL, NULL, 1, 1);
    srv_stop(&s);   /* nothing listens on the port now */
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &res);
    run_until(k, &res.calls, 1, 5000);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, 0);
    assert_true(res.has_error);
    snprintf(want, sizeof(want), "Failed to connect to 127.0.0.1 port %u after ", s.port);
    assert_memory_equal(res.error, want, strlen(want));
    assert_non_null(strstr(res.error, " ms: Couldn't connect to server"));
    assert_string_equal(res.body, "");
    assert_true(requests_total("<error>,GET") == 1);
    kube_free(k);
}

static void test_transport_error_closed_is_retried(void **state)
{
    struct srv s;
    struct kube *k;
    struct result res = { 0 };

    (void)state;
    srv_start(&s, script_close);
    k = client(&s, NULL, NULL, 1, 2);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &res);
    run_until(k, &res.calls, 1, 5000);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, 0);
    assert_string_equal(res.error, "Empty reply from server");
    assert_int_equal(srv_hits(&s), 2);
    assert_true(requests_total("<error>,GET") == 2);
    kube_free(k);
    srv_stop(&s);
}

static enum MHD_Result script_close_twice(struct srv *s, struct MHD_Connection *conn, int n,
                                         const struct hit *h)
{
    (void)s;
    (void)h;
    return n < 2 ? MHD_NO : reply(conn, 200, "ok", NULL);
}

static int recoveries;

static void on_recovered(void *arg)
{
    (void)arg;
    recoveries++;
}

/* Two attempts without an answer, then one: the client says once that
 * the server is back; answers before and after that say nothing. */
static void test_recovery_is_told_once(void **state)
{
    struct srv s;
    struct kube *k;
    struct result a = { 0 }, b = { 0 };

    (void)state;
    recoveries = 0;
    srv_start(&s, script_close_twice);
    k = client(&s, NULL, NULL, 1, 3);
    kube_set_recovered(k, on_recovered, NULL);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &a);
    run_until(k, &a.calls, 1, 5000);
    assert_int_equal(a.status, 200);
    assert_int_equal(srv_hits(&s), 3);
    assert_int_equal(recoveries, 1);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &b);
    run_until(k, &b.calls, 1, 5000);
    assert_int_equal(b.status, 200);
    assert_int_equal(recoveries, 1);
    kube_free(k);
    srv_stop(&s);
}

static void test_max_in_flight_and_fifo(void **state)
{
    struct srv s;
    struct kube *k;
    struct result res[6];
    int done = 0;
    char path[32];

    (void)state;
    memset(res, 0, sizeof(res));
    srv_start(&s, script_slow);
    s.delay_ms = 150;
    k = client(&s, NULL, NULL, 2, 1);
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof(path), "/r/%d", i);
        assert_non_null(kube_request(k, "GET", path, NULL, NULL, 0, on_done, &res[i]));
    }
    assert_int_equal(kube_pending(k), 6);
    run_until(k, &finished_count, 6, 5000);
    for (int i = 0; i < 6; i++)
        done += res[i].calls;
    assert_int_equal(done, 6);
    assert_int_equal(s.max_concurrent, 2);
    assert_int_equal(srv_hits(&s), 6);
    /* FIFO: request i starts no later than one place from i */
    for (int i = 0; i < 6; i++) {
        int pos = -1;

        snprintf(path, sizeof(path), "/r/%d", i);
        for (int j = 0; j < 6; j++)
            if (strcmp(s.hits[j].path, path) == 0)
                pos = j;
        assert_true(pos >= 0 && abs(pos - i) <= 1);
        assert_string_equal(res[i].body, path);
    }
    assert_int_equal(kube_pending(k), 0);
    kube_free(k);
    srv_stop(&s);
}

/* A call that takes the slot of one just answered goes on the wire in the
 * same kube_perform: it does not wait for whatever the caller does before
 * its next turn (the operator plans pods there). */
static void test_freed_slot_is_used_within_perform(void **state)
{
    struct srv s;
    struct kube *k;
    struct result res[2];

    (void)state;
    memset(res, 0, sizeof(res));
    srv_start(&s, script_slow);
    s.delay_ms = 100;
    k = client(&s, NULL, NULL, 1, 1);
    assert_non_null(kube_request(k, "GET", "/r/0", NULL, NULL, 0, on_done, &res[0]));
    assert_non_null(kube_request(k, "GET", "/r/1", NULL, NULL, 0, on_done, &res[1]));
    int64_t end = clock_ms() + 5000;
    while (res[0].calls == 0 && clock_ms() < end) {
        assert_int_equal(kube_wait(k, NULL, 0, 50), 0);
        kube_perform(k);
    }
    assert_int_equal(res[0].calls, 1);
    assert_int_equal(res[1].calls, 0);
    /* No kube_wait or kube_perform from here: the caller is busy. */
    end = clock_ms() + 2000;
    while (srv_hits(&s) < 2 && clock_ms() < end)
        sleep_ms(10);
    assert_int_equal(srv_hits(&s), 2);
    run_until(k, &res[1].calls, 1, 5000);
    assert_int_equal(res[1].calls, 1);
    kube_free(k);
    srv_stop(&s);
}

static void test_qps_bucket(void **state)
{
    struct srv s;
    struct kube *k;
    struct result res[3];
    char url[64], err[256];
    struct kube_auth a = { 0 };
    struct kube_options o = { .max_in_flight = 10, .qps = 5, .burst = 1, .max_attempts = 1 };
    int done = 0;

    (void)state;
    memset(res, 0, sizeof(res));
    srv_start(&s, script_ok);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", s.port);
    a.server = url;
    k = kube_new(&a, &o, err, sizeof(err));
    assert_non_null(k);
    for (int i = 0; i < 3; i++)
        kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &res[i]);
    /* one token spent at once; the next slot is 200 ms away */
    assert_true(kube_next_timeout(k) > 150 && kube_next_timeout(k) <= 201);
    run_until(k, &finished_count, 3, 5000);
    done = res[0].calls + res[1].calls + res[2].calls;
    assert_int_equal(done, 3);
    assert_int_equal(srv_hits(&s), 3);
    assert_true(s.hits[1].at_ms - s.hits[0].at_ms >= 180);
    assert_true(s.hits[2].at_ms - s.hits[1].at_ms >= 180);
    kube_free(k);
    srv_stop(&s);
}

static void test_urgent_jumps_queue_and_bucket(void **state)
{
    struct srv s;
    struct kube *k;
    struct result res[4];
    char url[64], err[256];
    struct kube_auth a = { 0 };
    struct kube_options o = { .max_in_flight = 1, .qps = 2, .burst = 1, .max_attempts = 1 };

    (void)state;
    memset(res, 0, sizeof(res));
    srv_start(&s, script_ok);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", s.port);
    a.server = url;
    k = kube_new(&a, &o, err, sizeof(err));
    assert_non_null(k);
    for (int i = 0; i < 3; i++)
        kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &res[i]);
    /* A Lease renewal behind a backlog: served next, without a token. */
    kube_request_urgent(k, "PUT", "/apis/coordination.k8s.io/v1/leases", NULL, "{}", 2,
                        on_done, &res[3]);
    run_until(k, &finished_count, 2, 5000);
    assert_int_equal(srv_hits(&s), 2);
    /* it went out beside the first write, not after the backlog */
    assert_true(strcmp(s.hits[0].method, "PUT") == 0 || strcmp(s.hits[1].method, "PUT") == 0);
    /* The QPS bucket did not hold it back: no 500 ms gap. */
    assert_true(s.hits[1].at_ms - s.hits[0].at_ms < 300);
    run_until(k, &finished_count, 4, 5000);
    assert_int_equal(srv_hits(&s), 4);
    kube_free(k);
    srv_stop(&s);
}

/* Writes that hang for delay_ms; the Lease answers at once. */
static enum MHD_Result script_slow_but_lease(struct srv *s, struct MHD_Connection *conn, int n,
                                             const struct hit *h)
{
    (void)n;
    if (strncmp(h->path, "/apis/coordination.k8s.io/", 26) != 0)
        sleep_ms(s->delay_ms);
    return reply(conn, 200, h->path, NULL);
}

/* 16 slow writes fill every ordinary slot (and 4 more wait): a Lease
 * renewal still goes out at once in a slot of its own, and answers long
 * before any write does. */
static void test_urgent_has_its_own_slot(void **state)
{
    struct srv s;
    struct kube *k;
    struct result *res = calloc(21, sizeof(*res));   /* 2.7 MB: not on the stack */
    char path[64];

    (void)state;
    assert_non_null(res);
    srv_start(&s, script_slow_but_lease);
    s.delay_ms = 3000;
    k = client(&s, NULL, NULL, 16, 1);
    for (int i = 0; i < 20; i++) {
        snprintf(path, sizeof(path), "/api/v1/namespaces/a/services/s%d", i);
        assert_non_null(kube_request(k, "PATCH", path, NULL, "{}", 2, on_done, &res[i]));
    }
    run_for(k, 300);        /* the 16 writes are in the server's hands */
    int64_t t0 = clock_ms();
    assert_non_null(kube_request_urgent(k, "PUT",
                                        "/apis/coordination.k8s.io/v1/namespaces/a/leases/l",
                                        NULL, "{}", 2, on_done, &res[20]));
    run_until(k, &res[20].calls, 1, 10000);
    assert_int_equal(res[20].calls, 1);
    assert_int_equal(res[20].status, 200);
    /* generous for a loaded machine, far below the 2.7 s the writes still need */
    assert_true(res[20].at_ms - t0 < 1500);
    for (int i = 0; i < 20; i++)
        assert_int_equal(res[i].calls, 0);
    kube_free(k);
    srv_stop(&s);
    free(res);
}

/* --- cancel --------------------------------------------------------------- */

static void test_cancel_means_no_callback(void **state)
{
    struct srv s;
    struct kube *k;
    struct result a = { 0 }, b = { 0 }, c = { 0 };
    struct kube_call *ca, *cb;

    (void)state;
    srv_start(&s, script_slow);
    s.delay_ms = 200;
    k = client(&s, NULL, NULL, 1, 1);
    ca = kube_request(k, "GET", "/a", NULL, NULL, 0, on_done, &a);
    cb = kube_request(k, "GET", "/b", NULL, NULL, 0, on_done, &b);
    kube_request(k, "GET", "/c", NULL, NULL, 0, on_done, &c);
    while (srv_hits(&s) < 1) {   /* /a reached the server */
        assert_int_equal(kube_wait(k, NULL, 0, 20), 0);
        kube_perform(k);
    }
    kube_cancel(k, cb);   /* queued */
    kube_cancel(k, ca);   /* in flight */
    kube_cancel(k, NULL);
    assert_int_equal(kube_pending(k), 1);
    run_until(k, &c.calls, 1, 5000);
    run_for(k, 300);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 0);
    assert_int_equal(c.calls, 1);
    assert_string_equal(c.body, "/c");
    assert_int_equal(srv_hits(&s), 2);
    assert_string_equal(s.hits[0].path, "/a");
    assert_string_equal(s.hits[1].path, "/c");
    assert_int_equal(kube_pending(k), 0);
    kube_free(k);
    srv_stop(&s);
}

static void test_free_with_calls_outstanding(void **state)
{
    struct srv s;
    struct kube *k;
    struct result a = { 0 }, b = { 0 };

    (void)state;
    srv_start(&s, script_slow);
    s.delay_ms = 100;
    k = client(&s, NULL, NULL, 1, 1);
    kube_request(k, "GET", "/a", NULL, NULL, 0, on_done, &a);
    kube_request(k, "GET", "/b", NULL, NULL, 0, on_done, &b);
    kube_perform(k);
    kube_free(k);   /* cancels both without callbacks; valgrind checks the rest */
    kube_free(NULL);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 0);
    srv_stop(&s);
}

/* --- watches -------------------------------------------------------------- */

struct watch_rec {
    int chunks;
    char data[4][64];
    int64_t at_ms[4];
    int abort_at;                 /* return non-zero on this chunk (1-based) */
    struct kube *k;
    struct kube_call *self;       /* cancel itself on the first chunk */
    struct kube_call *victim;     /* cancel this on the first chunk */
    struct result *started;       /* start a request on the first chunk */
};

static int on_data(void *arg, const char *data, size_t len)
{
    struct watch_rec *w = arg;

    if (w->chunks < 4) {
        snprintf(w->data[w->chunks], sizeof(w->data[0]), "%.*s", (int)len, data);
        w->at_ms[w->chunks] = clock_ms();
    }
    w->chunks++;
    if (w->chunks == 1 && w->victim)
        kube_cancel(w->k, w->victim);
    if (w->chunks == 1 && w->started)
        assert_non_null(kube_request(w->k, "GET", "/from-data", NULL, NULL, 0, on_done,
                                     w->started));
    if (w->chunks == 1 && w->self) {
        kube_cancel(w->k, w->self);
        return 0;
    }
    return w->chunks == w->abort_at;
}

/* Runs a watch whose data and done share one record. */
struct watch_both {
    struct watch_rec w;
    struct result r;
};

static int both_data(void *arg, const char *data, size_t len)
{
    return on_data(&((struct watch_both *)arg)->w, data, len);
}

static void both_done(void *arg, const struct kube_response *r)
{
    on_done(&((struct watch_both *)arg)->r, r);
}

static void test_watch_delivers_chunks_as_they_arrive(void **state)
{
    struct srv s;
    struct kube *k;
    struct watch_both *b = calloc(1, sizeof(*b));

    (void)state;
    srv_start(&s, script_watch);
    s.delay_ms = 150;
    k = client(&s, "tok", NULL, 1, 1);
    assert_non_null(kube_watch(k, "/api/v1/pods?watch=1", both_data, both_done, b));
    assert_int_equal(kube_pending(k), 0);   /* watches are not ordinary calls */
    run_until(k, &b->r.calls, 1, 5000);
    assert_int_equal(b->r.calls, 1);
    assert_int_equal(b->r.status, 200);
    assert_false(b->r.has_error);
    assert_int_equal(b->r.len, 0);
    assert_int_equal(b->w.chunks, 3);
    assert_string_equal(b->w.data[0], "{\"type\":\"ADDED\"}\n");
    assert_string_equal(b->w.data[1], "{\"type\":");
    assert_string_equal(b->w.data[2], "\"MODIFIED\"}\n");
    /* each chunk came when sent, not all at the end */
    assert_true(b->w.at_ms[1] - b->w.at_ms[0] >= 100);
    assert_true(b->w.at_ms[2] - b->w.at_ms[1] >= 100);
    assert_string_equal(s.hits[0].auth, "Bearer tok");
    assert_true(requests_total("200,GET") == 1);
    kube_free(k);
    srv_stop(&s);
    free(b);
}

static void test_watch_error_status_body(void **state)
{
    struct srv s;
    struct kube *k;
    struct watch_both *b = calloc(1, sizeof(*b));
    struct watch_both *big = calloc(1, sizeof(*big));

    (void)state;
    memset(big_error, 'e', sizeof(big_error) - 1);
    srv_start(&s, script_watch_410);
    k = client(&s, NULL, NULL, 1, 5);
    kube_watch(k, "/api/v1/pods?watch=1&resourceVersion=1", both_data, both_done, b);
    kube_watch(k, "/api/v1/big?watch=1", both_data, both_done, big);
    run_until(k, &b->r.calls, 1, 5000);
    run_until(k, &big->r.calls, 1, 5000);
    assert_int_equal(b->r.status, 410);
    assert_string_equal(b->r.body, "{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\"}");
    assert_false(b->r.has_error);
    assert_int_equal(b->w.chunks, 0);
    /* a 500 on a watch is not retried, and its body is cut at 64 KiB */
    assert_int_equal(big->r.status, 500);
    assert_int_equal(big->r.len, 64 * 1024);
    assert_memory_equal(big->r.body, big_error, 64 * 1024);
    assert_int_equal(big->w.chunks, 0);
    assert_int_equal(srv_hits(&s), 2);
    kube_free(k);
    srv_stop(&s);
    free(b);
    free(big);
}

static void test_watch_abort_from_data(void **state)
{
    struct srv s;
    struct kube *k;
    struct watch_both *b = calloc(1, sizeof(*b));

    (void)state;
    srv_start(&s, script_watch);
    s.delay_ms = 50;
    k = client(&s, NULL, NULL, 1, 1);
    b->w.abort_at = 1;
    kube_watch(k, "/api/v1/pods?watch=1", both_data, both_done, b);
    run_until(k, &b->r.calls, 1, 5000);
    assert_int_equal(b->r.calls, 1);
    assert_int_equal(b->r.status, 200);
    assert_string_equal(b->r.error, "aborted");
    assert_int_equal(b->w.chunks, 1);
    kube_free(k);
    srv_stop(&s);
    free(b);
}

static void test_watch_cancels_from_data(void **state)
{
    struct srv s;
    struct kube *k;
    struct watch_both *b = calloc(1, sizeof(*b));
    struct result slow = { 0 }, started = { 0 };

    (void)state;
    srv_start(&s, script_watch);
    s.delay_ms = 100;
    k = client(&s, NULL, NULL, 4, 1);
    b->w.k = k;
    b->w.started = &started;
    /* the watch's first chunk cancels the watch itself and an in-flight
     * call, and starts a new call, all from inside curl's callback */
    b->w.self = kube_watch(k, "/api/v1/pods?watch=1", both_data, both_done, b);
    assert_non_null(b->w.self);
    b->w.victim = kube_request(k, "GET", "/victim", NULL, NULL, 0, on_done, &slow);
    run_until(k, &started.calls, 1, 5000);
    run_for(k, 400);
    assert_int_equal(b->w.chunks, 1);
    assert_int_equal(b->r.calls, 0);
    assert_int_equal(slow.calls, 0);
    assert_int_equal(started.calls, 1);
    assert_int_equal(started.status, 200);
    assert_int_equal(kube_pending(k), 0);
    kube_free(k);
    srv_stop(&s);
    free(b);
}

/* --- callbacks that call back in ----------------------------------------- */

struct chain {
    struct kube *k;
    struct result first, second, cancelled;
    struct kube_call *to_cancel;
};

static void chain_first_done(void *arg, const struct kube_response *r)
{
    struct chain *ch = arg;

    on_done(&ch->first, r);
    kube_cancel(ch->k, ch->to_cancel);
    assert_non_null(kube_request(ch->k, "GET", "/second", NULL, NULL, 0, on_done,
                                 &ch->second));
}

static void test_done_may_start_and_cancel_calls(void **state)
{
    struct srv s;
    struct chain *ch = calloc(1, sizeof(*ch));

    (void)state;
    srv_start(&s, script_slow);
    s.delay_ms = 0;
    ch->k = client(&s, NULL, NULL, 1, 1);
    kube_request(ch->k, "GET", "/first", NULL, NULL, 0, chain_first_done, ch);
    ch->to_cancel = kube_request(ch->k, "GET", "/never", NULL, NULL, 0, on_done,
                                 &ch->cancelled);
    run_until(ch->k, &ch->second.calls, 1, 5000);
    run_for(ch->k, 100);
    assert_int_equal(ch->first.calls, 1);
    assert_int_equal(ch->second.calls, 1);
    assert_string_equal(ch->second.body, "/second");
    assert_int_equal(ch->cancelled.calls, 0);
    assert_int_equal(srv_hits(&s), 2);
    kube_free(ch->k);
    srv_stop(&s);
    free(ch);
}

/* --- TLS ------------------------------------------------------------------ */

/* A client of the TLS server with the named fixtures (NULL: none). */
static struct kube *tls_client(struct srv *s, const char *ca, const char *cert,
                               const char *key, bool insecure, char *err, size_t errlen)
{
    char url[64];
    struct kube_auth a = { 0 };
    struct kube_options o = { .max_in_flight = 2, .max_attempts = 1 };
    struct kube *k;

    snprintf(url, sizeof(url), "https://127.0.0.1:%u", s->port);
    a.server = url;
    if (ca)
        a.ca_pem = read_fixture(ca, &a.ca_len);
    if (cert)
        a.cert_pem = read_fixture(cert, &a.cert_len);
    if (key)
        a.key_pem = read_fixture(key, &a.key_len);
    a.insecure = insecure;
    k = kube_new(&a, &o, err, errlen);
    a.server = NULL;
    kube_auth_free(&a);   /* kube_new copied what it needs */
    return k;
}

static void test_tls_ca_blob_verifies_server(void **state)
{
    struct srv s;
    struct kube *k;
    struct result a = { 0 }, b = { 0 };
    char err[256] = "";

    (void)state;
    srv_start_tls(&s, script_ok);
    k = tls_client(&s, "ca.pem", NULL, NULL, false, err, sizeof(err));
    assert_non_null(k);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &a);
    run_until(k, &a.calls, 1, 10000);
    assert_int_equal(a.status, 200);
    assert_false(a.has_error);
    /* a second call reuses the connection and its TLS session */
    kube_request(k, "GET", "/api/v1/services", NULL, NULL, 0, on_done, &b);
    run_until(k, &b.calls, 1, 10000);
    assert_int_equal(b.status, 200);
    assert_int_equal(srv_hits(&s), 2);
    assert_int_equal(s.hits[0].client_certs, 0);
    kube_free(k);
    srv_stop(&s);
}

/* The "system" CA directory trusts the server's CA; the cluster CA given is
 * another one: the server must be refused (only the cluster CA counts).
 * Without a cluster CA the system directory is used, as curl does. */
static void test_tls_given_ca_ignores_system_ca_dir(void **state)
{
    struct srv s;
    struct kube *k;
    struct result a = { 0 }, b = { 0 };
    char err[256] = "", dir[1024];
    const char *slash = strrchr(__FILE__, '/');

    (void)state;
    snprintf(dir, sizeof(dir), "%.*s/data/kube/capath", slash ? (int)(slash - __FILE__) : 1,
             slash ? __FILE__ : ".");
    fake_system_capath = dir;
    srv_start_tls(&s, script_ok);
    k = tls_client(&s, NULL, NULL, NULL, false, err, sizeof(err));
    assert_non_null(k);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &a);
    run_until(k, &a.calls, 1, 10000);
    assert_int_equal(a.status, 200);            /* the stand-in is in effect */
    kube_free(k);
    k = tls_client(&s, "other-ca.pem", NULL, NULL, false, err, sizeof(err));
    assert_non_null(k);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &b);
    run_until(k, &b.calls, 1, 10000);
    fake_system_capath = NULL;
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.status, 0);
    assert_true(b.has_error);
    assert_int_equal(srv_hits(&s), 1);
    kube_free(k);
    srv_stop(&s);
}

static void test_tls_wrong_ca_fails_unless_insecure(void **state)
{
    struct srv s;
    struct kube *k;
    struct result a = { 0 }, b = { 0 };
    char err[256] = "";
    const char *want = "SSL certificate problem: ";

    (void)state;
    srv_start_tls(&s, script_ok);
    k = tls_client(&s, "other-ca.pem", NULL, NULL, false, err, sizeof(err));
    assert_non_null(k);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &a);
    run_until(k, &a.calls, 1, 10000);
    assert_int_equal(a.status, 0);
    assert_memory_equal(a.error, want, strlen(want));
    assert_int_equal(srv_hits(&s), 0);
    assert_true(requests_total("<error>,GET") == 1);
    kube_free(k);

    k = tls_client(&s, NULL, NULL, NULL, true, err, sizeof(err));
    assert_non_null(k);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &b);
    run_until(k, &b.calls, 1, 10000);
    assert_int_equal(b.status, 200);
    assert_int_equal(srv_hits(&s), 1);
    kube_free(k);
    srv_stop(&s);
}

static void test_tls_client_certificate_from_blobs(void **state)
{
    struct srv s;
    struct kube *k;
    struct result a = { 0 };
    char err[256] = "";

    (void)state;
    srv_start_tls(&s, script_ok);
    k = tls_client(&s, "ca.pem", "client.pem", "client-key.pem", false, err, sizeof(err));
    assert_non_null(k);
    kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, on_done, &a);
    run_until(k, &a.calls, 1, 10000);
    assert_int_equal(a.status, 200);
    assert_int_equal(srv_hits(&s), 1);
    /* the client certificate and its issuer, which OpenSSL chains on from
     * the CA bundle */
    assert_int_equal(s.hits[0].client_certs, 2);
    kube_free(k);
    srv_stop(&s);
}

/* --- waiting -------------------------------------------------------------- */

static void test_wait_watches_caller_fds(void **state)
{
    struct srv s;
    struct kube *k;
    int p[2];
    struct pollfd pfd;
    int64_t t0;

    (void)state;
    srv_start(&s, script_ok);
    k = client(&s, NULL, NULL, 1, 1);
    assert_int_equal(pipe(p), 0);
    pfd.fd = p[0];
    pfd.events = POLLIN;
    t0 = clock_ms();
    assert_int_equal(kube_wait(k, &pfd, 1, 150), 0);
    assert_true(clock_ms() - t0 >= 140);
    assert_int_equal(pfd.revents, 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    t0 = clock_ms();
    assert_int_equal(kube_wait(k, &pfd, 1, 5000), 0);
    assert_true(clock_ms() - t0 < 1000);
    assert_true(pfd.revents & POLLIN);
    close(p[1]);
    close(p[0]);
    kube_free(k);
    srv_stop(&s);
}

static void test_new_errors(void **state)
{
    struct kube_auth a = { 0 };
    struct kube_options o = { .max_in_flight = 1, .max_attempts = 1 };
    char err[256];

    (void)state;
    a.server = "ftp://x";
    assert_null(kube_new(&a, &o, err, sizeof(err)));
    assert_string_equal(err, "kube: server URL must start with https:// or http://: ftp://x");
    a.server = "https://x";
    a.token_file = "/nonexistent/token";
    assert_null(kube_new(&a, &o, err, sizeof(err)));
    assert_string_equal(err, "kube: token file /nonexistent/token: No such file or directory");
    a.token_file = NULL;
    a.cert_pem = "cert";
    a.cert_len = 4;
    assert_null(kube_new(&a, &o, err, sizeof(err)));
    assert_string_equal(err, "kube: a client certificate needs a client key and vice versa");
}

static void test_request_rejects_bad_arguments(void **state)
{
    struct kube_auth a = { .server = "http://127.0.0.1:1" };
    struct kube *k = kube_new(&a, NULL, NULL, 0);
    struct result r = { 0 };

    (void)state;
    assert_non_null(k);
    assert_null(kube_request(k, "GET", "api/v1/pods", NULL, NULL, 0, on_done, &r));
    assert_null(kube_request(k, "GET", "/api/v1/pods", NULL, NULL, 0, NULL, &r));
    assert_null(kube_request(k, "TOOLONGMETHOD", "/x", NULL, NULL, 0, on_done, &r));
    assert_null(kube_watch(k, "/x", NULL, on_done, &r));
    assert_int_equal(kube_pending(k), 0);
    kube_free(k);
}

static int teardown_group(void **state)
{
    (void)state;
    metrics_reset();   /* the registry lives for the process; leave valgrind a clean heap */
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_get_ok, setup),
        cmocka_unit_test_setup(test_logs_each_request_and_retry, setup),
        cmocka_unit_test_setup(test_post_and_patch_bodies, setup),
        cmocka_unit_test_setup(test_delete_and_put, setup),
        cmocka_unit_test_setup(test_static_token_header, setup),
        cmocka_unit_test_setup(test_token_file_rotation, setup),
        cmocka_unit_test_setup(test_401_rereads_token_and_retries_once, setup),
        cmocka_unit_test_setup(test_401_retried_only_once, setup),
        cmocka_unit_test_setup(test_503_honours_retry_after, setup),
        cmocka_unit_test_setup(test_429_retried_with_backoff, setup),
        cmocka_unit_test_setup(test_retries_exhausted_gives_last_result, setup),
        cmocka_unit_test_setup(test_4xx_not_retried, setup),
        cmocka_unit_test_setup(test_transport_error_refused, setup),
        cmocka_unit_test_setup(test_transport_error_closed_is_retried, setup),
        cmocka_unit_test_setup(test_recovery_is_told_once, setup),
        cmocka_unit_test_setup(test_max_in_flight_and_fifo, setup),
        cmocka_unit_test_setup(test_freed_slot_is_used_within_perform, setup),
        cmocka_unit_test_setup(test_qps_bucket, setup),
        cmocka_unit_test_setup(test_urgent_jumps_queue_and_bucket, setup),
        cmocka_unit_test_setup(test_urgent_has_its_own_slot, setup),
        cmocka_unit_test_setup(test_cancel_means_no_callback, setup),
        cmocka_unit_test_setup(test_free_with_calls_outstanding, setup),
        cmocka_unit_test_setup(test_watch_delivers_chunks_as_they_arrive, setup),
        cmocka_unit_test_setup(test_watch_error_status_body, setup),
        cmocka_unit_test_setup(test_watch_abort_from_data, setup),
        cmocka_unit_test_setup(test_watch_cancels_from_data, setup),
        cmocka_unit_test_setup(test_done_may_start_and_cancel_calls, setup),
        cmocka_unit_test_setup(test_tls_ca_blob_verifies_server, setup),
        cmocka_unit_test_setup(test_tls_wrong_ca_fails_unless_insecure, setup),
        cmocka_unit_test_setup(test_tls_given_ca_ignores_system_ca_dir, setup),
        cmocka_unit_test_setup(test_tls_client_certificate_from_blobs, setup),
        cmocka_unit_test_setup(test_wait_watches_caller_fds, setup),
        cmocka_unit_test_setup(test_new_errors, setup),
        cmocka_unit_test_setup(test_request_rejects_bad_arguments, setup),
    };

    log_setup(LOG_ERROR, false);   /* retries warn by design; keep TAP output clean */
    return cmocka_run_group_tests(tests, NULL, teardown_group);
}
