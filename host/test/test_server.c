/* The metrics and health endpoints, fetched over real sockets with libcurl
 * as a kubelet probe or a Prometheus scrape would. */
#include <curl/curl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "metrics.h"
#include "server.h"
#include "timers.h"

struct reply {
    long status;
    char body[65536];
    size_t len;
    char type[128];
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    size_t len = size * n;

    if (r->len + len >= sizeof r->body)
        return 0;
    memcpy(r->body + r->len, data, len);
    r->len += len;
    r->body[r->len] = '\0';
    return len;
}

/* Fetches http://host:port/path with `method`; fills *r. Returns the curl
 * result code. */
static CURLcode fetch(const char *host, int port, const char *path, const char *method,
                      struct reply *r)
{
    CURL *h = curl_easy_init();
    char url[256];
    char *type = NULL;
    CURLcode rc;

    memset(r, 0, sizeof *r);
    snprintf(url, sizeof url, "http://%s:%d%s", host, port, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &type) == CURLE_OK && type != NULL)
        snprintf(r->type, sizeof r->type, "%s", type);
    curl_easy_cleanup(h);
    return rc;
}

static void expect(const char *host, int port, const char *path, long status,
                   const char *body)
{
    struct reply r;

    assert_int_equal(fetch(host, port, path, "GET", &r), CURLE_OK);
    if (r.status != status || strcmp(r.body, body) != 0)
        fail_msg("GET %s:%d%s: got %ld \"%s\", want %ld \"%s\"", host, port, path, r.status,
                 r.body, status, body);
}

/* Log lines of the server go to memory so the tests can read them. */
struct capture {
    FILE *f;
    char *buf;
    size_t len;
};

static int setup(void **state)
{
    struct capture *c = calloc(1, sizeof *c);

    if (c == NULL)
        return -1;
    c->f = open_memstream(&c->buf, &c->len);
    log_setup(LOG_INFO, false);
    log_set_output(c->f);
    metrics_reset();
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct capture *c = *state;

    log_set_output(NULL);
    fclose(c->f);
    free(c->buf);
    free(c);
    metrics_reset();
    return 0;
}

static const char *logged(struct capture *c)
{
    fflush(c->f);
    return c->buf ? c->buf : "";
}

static void test_separate_addresses(void **state)
{
    struct metric *m = metrics_counter("envoy_router_test_total", "Test.", "k");
    struct server *s;
    struct reply r;
    size_t len;
    char *want;
    int mp, hp;
    (void)state;

    metrics_add(m, "v", 3);
    s = server_start("127.0.0.1:0", ":0", 0);
    assert_non_null(s);
    mp = server_metrics_port(s);
    hp = server_health_port(s);
    assert_true(mp > 0 && hp > 0 && mp != hp);

    want = metrics_render(&len);
    assert_int_equal(fetch("127.0.0.1", mp, "/metrics", "GET", &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, want);
    assert_string_equal(r.type, "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(r.body, "envoy_router_test_total{k=\"v\"} 3\n"));
    free(want);

    /* Each address serves only its own endpoints. */
    expect("127.0.0.1", mp, "/healthz", 404, "not found\n");
    expect("127.0.0.1", hp, "/metrics", 404, "not found\n");
    expect("127.0.0.1", hp, "/healthz", 200, "ok");
    expect("127.0.0.1", hp, "/readyz", 503, "not ready: starting");
    expect("127.0.0.1", hp, "/", 404, "not found\n");

    assert_int_equal(fetch("127.0.0.1", hp, "/healthz", "POST", &r), CURLE_OK);
    assert_int_equal(r.status, 405);
    assert_int_equal(fetch("127.0.0.1", hp, "/healthz", "HEAD", &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    server_stop(s);

    /* Stopped means stopped. */
    assert_int_not_equal(fetch("127.0.0.1", hp, "/healthz", "GET", &r), CURLE_OK);
}

static void test_readiness_flips(void **state)
{
    struct server *s = server_start(":0", ":0", 0);
    int port;
    (void)state;

    assert_non_null(s);
    port = server_health_port(s);
    /* Same address: one daemon serves all three. */
    assert_int_equal(server_metrics_port(s), port);
    expect("127.0.0.1", port, "/readyz", 503, "not ready: starting");
    server_set_ready(s, true, NULL);
    expect("127.0.0.1", port, "/readyz", 200, "ok");
    server_set_ready(s, false, "caches not synced: pods");
    expect("127.0.0.1", port, "/readyz", 503, "caches not synced: pods");
    server_set_ready(s, false, NULL);
    expect("127.0.0.1", port, "/readyz", 503, "not ready");
    server_set_ready(s, true, "ignored when ready");
    expect("127.0.0.1", port, "/readyz", 200, "ok");
    expect("127.0.0.1", port, "/healthz", 200, "ok");
    expect("127.0.0.1", port, "/metrics", 200, "");
    server_stop(s);
}

static void test_stalled_main_loop(void **state)
{
    struct server *s = server_start("0", "127.0.0.1:0", 1);
    struct timespec pause = {1, 150 * 1000 * 1000};
    int port;
    (void)state;

    assert_non_null(s);
    assert_int_equal(server_metrics_port(s), 0);
    port = server_health_port(s);
    expect("127.0.0.1", port, "/healthz", 200, "ok");
    nanosleep(&pause, NULL);
    expect("127.0.0.1", port, "/healthz", 503, "main loop stalled: last tick 1 s ago");
    server_heartbeat(s);
    expect("127.0.0.1", port, "/healthz", 200, "ok");
    server_stop(s);
}

static void test_disabled(void **state)
{
    struct server *s = server_start("", "0", 0);
    (void)state;

    assert_non_null(s);
    assert_int_equal(server_metrics_port(s), 0);
    assert_int_equal(server_health_port(s), 0);
    server_stop(s);
    server_stop(NULL);
}

static void test_bad_addresses(void **state)
{
    struct capture *c = *state;
    static const struct {
        const char *addr;
        const char *error;
    } cases[] = {
        {"8080", "error=\"want host:port or :port\""},
        {":http", "error=\"port is not a number\""},
        {":99999", "error=\"port must be a number in 0..65535\""},
        {":80x", "error=\"port must be a number in 0..65535\""},
        {"[::1:0", "error=\"unbalanced [ in the host\""},
        {"::1:0", "error=\"an IPv6 host needs brackets: [addr]:port\""},
    };
    char want[256];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_null(server_start(cases[i].addr, "0", 0));
        snprintf(want, sizeof want,
                 "level=error msg=\"server: cannot listen\" endpoints=metrics address=%s %s\n",
                 cases[i].addr, cases[i].error);
        if (strstr(logged(c), want) == NULL)
            fail_msg("no line \"%s\" in:\n%s", want, logged(c));
    }
}

static void test_port_in_use(void **state)
{
    struct capture *c = *state;
    struct server *a = server_start("127.0.0.1:0", "0", 0);
    char addr[64];
    const char *line;
    (void)state;

    assert_non_null(a);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", server_metrics_port(a));
    assert_null(server_start("0", addr, 0));
    line = strstr(logged(c), "level=error msg=\"server: cannot listen\" endpoints=health");
    assert_non_null(line);
    assert_non_null(strstr(line, "in use"));
    /* The first server is unharmed. */
    expect("127.0.0.1", server_metrics_port(a), "/metrics", 200, "");
    server_stop(a);
}

static bool have_ipv6_loopback(void)
{
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    bool ok;

    if (fd < 0)
        return false;
    ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static void test_ipv6_and_names(void **state)
{
    struct server *s;
    (void)state;

    s = server_start("localhost:0", "0", 0);
    assert_non_null(s);
    assert_true(server_metrics_port(s) > 0);
    server_stop(s);

    if (!have_ipv6_loopback())
        return; /* the IPv4 paths above are still checked */
    s = server_start("0", "[::1]:0", 0);
    assert_non_null(s);
    expect("[::1]", server_health_port(s), "/healthz", 200, "ok");
    server_stop(s);
}

/* A TCP connection to 127.0.0.1:port from source address `from` (any
 * 127.x.y.z works on loopback); -1 when refused. */
static int connect_from(const char *from, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};

    assert_true(fd >= 0);
    inet_pton(AF_INET, from, &src.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    dst.sin_port = htons((uint16_t)port);
    if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0 ||
        connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* True when fd was closed by the server (EOF or reset) within ms. */
static bool closed_within(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char b[256];

    if (poll(&p, 1, ms) <= 0)
        return false;
    ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN);
}

/* GET /healthz over a connection from `from`; the status, or -1. */
static int probe_from(const char *from, int port)
{
    static const char req[] = "GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n";
    char b[512];
    size_t got = 0;
    int status = -1;
    int fd = connect_from(from, port);

    if (fd < 0)
        return -1;
    if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof req - 1)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        while (got < sizeof b - 1 && poll(&p, 1, 2000) > 0) {
            ssize_t n = recv(fd, b + got, sizeof b - 1 - got, 0);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        b[got] = '\0';
        if (sscanf(b, "HTTP/1.%*d %d", &status) != 1)
            status = -1;
    }
    close(fd);
    return status;
}

/* 64 slow clients from one address (half a request each, then silence or
 * one byte a second) do not keep the kubelet's probes from another address
 * out; the trickling ones are cut after the total request time. */
static void test_slow_clients_do_not_starve_probes(void **state)
{
    enum { SLOW = 64 };
    int fds[SLOW], open_fds = 0, ok = 0;
    struct server *s;

    (void)state;
    s = server_start("0", "127.0.0.1:0", 30);
    assert_non_null(s);
    int port = server_health_port(s);
    for (int i = 0; i < SLOW; i++) {
        fds[i] = connect_from("127.0.0.1", port);
        if (fds[i] >= 0) {
            open_fds++;
            send(fds[i], "GET /healthz HTTP/1.1\r\nX-a: ", 28, MSG_NOSIGNAL);
        }
    }
    assert_true(open_fds > 0);
    /* Probes every 200 ms for 10 s while the slow ones trickle. */
    int64_t start = clock_ms(), next_trickle = start + 1000;
    int probes = 0;
    while (clock_ms() - start < 10000) {
        if (clock_ms() >= next_trickle) {
            for (int i = 0; i < SLOW; i++)
                if (fds[i] >= 0 && i % 2 == 0)
                    send(fds[i], "a", 1, MSG_NOSIGNAL);
            next_trickle += 1000;
        }
        probes++;
        if (probe_from("127.0.0.2", port) == 200)
            ok++;
        else
            print_message("# probe %d failed at %lld ms\n", probes,
                          (long long)(clock_ms() - start));
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_true(probes >= 10);
    assert_int_equal(ok, probes);
    /* Every slow connection is gone by now: idle ones after the idle
     * timeout, trickling ones after the total request time. */
    for (int i = 0; i < SLOW; i++) {
        if (fds[i] < 0)
            continue;
        if (!closed_within(fds[i], 3000))
            fail_msg("slow connection %d (%s) still open after %lld ms", i,
                     i % 2 == 0 ? "trickling" : "idle", (long long)(clock_ms() - start));
        close(fds[i]);
    }
    server_stop(s);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_separate_addresses),
        T(test_readiness_flips),
        T(test_stalled_main_loop),
        T(test_disabled),
        T(test_bad_addresses),
        T(test_port_in_use),
        T(test_ipv6_and_names),
        T(test_slow_clients_do_not_starve_probes),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests_name("server", tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
