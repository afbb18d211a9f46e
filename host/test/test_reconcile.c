/* Tests of reconcile: step-down cancels every write, queued, in flight or
 * backing off, against a libmicrohttpd server that answers slowly with 503
 * (so the kube client would retry for a long while). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "core.h"
#include "kube.h"
#include "queue.h"
#include "reconcile.h"
#include "sandbox.h"
#include "timers.h"

static struct config cfg = {
    .gateway_name = "gw", .gateway_namespace = "", .service_port = 80, .pod_port = 8080,
    .headless = true,
};

struct srv {
    struct MHD_Daemon *d;
    unsigned port;
    pthread_mutex_t mu;
    int hits;
};

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Every request: 1.5 s, then 503 (retryable). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **ctx)
{
    static int first;
    struct srv *s = cls;
    (void)url, (void)method, (void)version, (void)upload_data;
    if (*ctx == NULL) {
        *ctx = &first;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        *upload_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&s->mu);
    s->hits++;
    pthread_mutex_unlock(&s->mu);
    sleep_ms(1500);
    static const char body[] = "{\"kind\":\"Status\",\"code\":503}";
    struct MHD_Response *r = MHD_create_response_from_buffer(sizeof body - 1, (void *)body,
                                                             MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc = MHD_queue_response(conn, 503, r);
    MHD_destroy_response(r);
    return rc;
}

static int hits(struct srv *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->hits;
    pthread_mutex_unlock(&s->mu);
    return n;
}

#define POD(name, ip) \
    "{\"metadata\":{\"name\":\"" name "\",\"namespace\":\"ns\",\"uid\":\"uid-" name "\"," \
    "\"resourceVersion\":\"5\",\"labels\":{\"envoy-router/enabled\":\"true\"}}," \
    "\"spec\":{\"nodeName\":\"n1\"},\"status\":{\"podIP\":\"" ip "\"," \
    "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}"

static void list(struct core *core, const char *res, const char *items)
{
    char body[4096], err[512], *rv, *cont;
    snprintf(body, sizeof body,
             "{\"kind\":\"List\",\"metadata\":{\"resourceVersion\":\"10\"},\"items\":[%s]}", items);
    assert_int_equal(core_list_begin(core, res), 0);
    assert_int_equal(core_list_page(core, res, body, strlen(body), &rv, &cont, err, sizeof err),
                     0);
    free(rv);
    free(cont);
    assert_int_equal(core_list_end(core, res), 0);
}

static void on_enqueue(void *arg, const char *key)
{
    queue_add(arg, key, clock_ms());
}

static void run_for(struct kube *k, int ms)
{
    int64_t end = clock_ms() + ms;
    while (clock_ms() < end) {
        assert_int_equal(kube_wait(k, NULL, 0, 20), 0);
        kube_perform(k);
    }
}

static void test_cancel_drops_writes_and_their_retries(void **state)
{
    struct srv s = { 0 };
    struct sockaddr_in sa = { 0 };
    char url[64], err[4096];
    (void)state;

    pthread_mutex_init(&s.mu, NULL);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s.d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                           NULL, NULL, on_request, &s, MHD_OPTION_SOCK_ADDR,
                           (struct sockaddr *)&sa, MHD_OPTION_END);
    assert_non_null(s.d);
    s.port = MHD_get_daemon_info(s.d, MHD_DAEMON_INFO_BIND_PORT)->port;
    snprintf(url, sizeof url, "http://127.0.0.1:%u", s.port);

    struct kube_auth a = { .server = url };
    struct kube_options o = { .max_in_flight = 2, .max_attempts = 5 };
    struct kube *k = kube_new(&a, &o, err, sizeof err);
    assert_non_null(k);
    struct queue *q = queue_new("pod", 250, 60000);
    struct sandbox *sb = sandbox_new(NULL, &cfg, NULL, err, sizeof err);
    assert_non_null(sb);
    struct core *core = core_new(sb, on_enqueue, q, err, sizeof err);
    assert_non_null(core);
    list(core, "pods", POD("a", "10.0.0.1") "," POD("b", "10.0.0.2") "," POD("c", "10.0.0.3"));
    for (size_t i = 0; i < 3; i++)
        list(core, core_child_resources[i], "");
    struct kube_transport io = kube_transport(k);
    struct reconciler *r = reconciler_new(q, core, &io, 3);
    assert_non_null(r);
    reconciler_pause(r, false);
    assert_true(reconciler_can_take(r));
    reconciler_pump(r, clock_ms());
    assert_int_equal(reconciler_active(r), 3);
    assert_false(reconciler_can_take(r));          /* every slot taken */
    /* Two in the server's hands, one queued behind them. */
    int64_t until = clock_ms() + 5000;
    while (hits(&s) < 2 && clock_ms() < until)
        run_for(k, 20);
    assert_int_equal(kube_pending(k), 3);
    assert_int_equal(hits(&s), 2);

    /* Leadership lost. */
    reconciler_pause(r, true);
    assert_false(reconciler_can_take(r));
    assert_int_equal(reconciler_cancel(r), 3);
    assert_int_equal(reconciler_active(r), 0);
    assert_int_equal(kube_pending(k), 0);
    assert_int_equal(queue_processing(q), 0);
    /* Nothing goes out any more: no queued call starts, no retry comes. */
    run_for(k, 2500);
    assert_int_equal(hits(&s), 2);

    reconciler_free(r);
    kube_free(k);
    core_free(core);
    sandbox_free(sb);
    queue_free(q);
    MHD_stop_daemon(s.d);
    pthread_mutex_destroy(&s.mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cancel_drops_writes_and_their_retries),
    };
    return cmocka_run_group_tests_name("reconcile", tests, NULL, NULL);
}
