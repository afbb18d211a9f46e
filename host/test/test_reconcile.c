/* Tests of reconcile. Through a scripted transport (the test answers each
 * write, on a clock it moves): partial failure of a pod's writes, job
 * accounting, pods planned ahead of the client's write slots, retries with the queue's backoff, cancellation at step-down.
 * Through the real client: step-down cancels every write, queued, in
 * flight or backing off, against a libmicrohttpd server that answers
 * slowly with 503 (so the kube client would retry for a long while). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
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
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "reconcile.h"
#include "sandbox.h"
#include "scripted.h"
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

/* --- through a scripted transport ------------------------------------------ */

struct fixture {
    struct scripted s;
    struct kube_transport io;
    struct queue *q;
    struct sandbox *sb, *old_sb;
    struct core *core;
    struct reconciler *r;
};

static void on_enqueue_scripted(void *arg, const char *key)
{
    struct fixture *f = arg;
    queue_add(f->q, key, f->s.now);
}

static int setup(void **state)
{
    char err[4096];
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->s.now = 1000000;
    f->io = scripted_transport(&f->s);
    f->q = queue_new("pod", 250, 60000);
    f->sb = sandbox_new(NULL, &cfg, NULL, err, sizeof err);
    f->core = f->sb ? core_new(f->sb, on_enqueue_scripted, f, err, sizeof err) : NULL;
    if (!f->q || !f->core)
        fail_msg("setup: %s", err);
    f->r = reconciler_new(f->q, f->core, &f->io, 2);
    assert_non_null(f->r);
    for (size_t i = 0; i < 3; i++)
        list(f->core, core_child_resources[i], "");
    reconciler_pause(f->r, false);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    reconciler_cancel(f->r);
    reconciler_free(f->r);
    scripted_free(&f->s);
    core_free(f->core);
    sandbox_free(f->sb);
    sandbox_free(f->old_sb);
    queue_free(f->q);
    free(f);
    return 0;
}

static int teardown_group(void **state)
{
    (void)state;
    metrics_reset();
    return 0;
}

/* Answers open call i as the API server would: a DELETE with {}, a write
 * with its body echoed back, carrying a uid and resourceVersion. */
static void echo(struct fixture *f, size_t i, long status)
{
    struct scripted_call *c = &f->s.calls[i];
    if (status != 200 || strcmp(c->method, "DELETE") == 0) {
        scripted_answer(&f->s, i, status, status == 200 ? "{}" : "{\"kind\":\"Status\"}");
        return;
    }
    assert_non_null(c->body);
    const char *md = strstr(c->body, "\"metadata\":{");
    assert_non_null(md);
    size_t head = (size_t)(md - c->body) + strlen("\"metadata\":{");
    char body[16384];
    snprintf(body, sizeof body, "%.*s\"uid\":\"child-%zu\",\"resourceVersion\":\"%zu\","
             "\"managedFields\":[],%s", (int)head, c->body, i, 100 + i, c->body + head);
    scripted_answer(&f->s, i, 200, body);
}

/* Open calls, by index, in the order they started. */
static size_t open_calls(struct fixture *f, size_t *idx, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < f->s.n; i++)
        if (f->s.calls[i].open && n < max)
            idx[n++] = i;
    return n;
}

/* Takes ready keys and answers every write until nothing is left to do. */
static void settle(struct fixture *f)
{
    size_t idx[16];
    for (int round = 0; round < 20; round++) {
        reconciler_pump(f->r, f->s.now);
        size_t n = open_calls(f, idx, 16);
        if (n == 0 && reconciler_active(f->r) == 0 && queue_ready(f->q) == 0)
            return;
        for (size_t i = 0; i < n; i++)
            echo(f, idx[i], 200);
    }
    fail_msg("did not settle");
}

static double reconciles(const char *result)
{
    return metrics_value(metrics_counter("controller_runtime_reconcile_total", "",
                                         "controller,result"), result);
}

/* The sandbox keeps a pointer to its config. */
static struct config changed = {
    .gateway_name = "gw", .gateway_namespace = "", .service_port = 81, .pod_port = 8081,
    .headless = true,
};

/* Children of pod a written, then the ports change: one plan of three
 * applies (Service, EndpointSlice, HTTPRoute). */
static void three_applies(struct fixture *f, size_t idx[3])
{
    char err[4096];
    list(f->core, "pods", POD("a", "10.0.0.1"));
    settle(f);
    f->old_sb = f->sb;
    f->sb = sandbox_new(NULL, &changed, NULL, err, sizeof err);
    assert_non_null(f->sb);
    core_set_sandbox(f->core, f->sb);
    queue_add(f->q, "ns/a", f->s.now);
    reconciler_pump(f->r, f->s.now);
    assert_int_equal(reconciler_active(f->r), 1);
    assert_int_equal(open_calls(f, idx, 3), 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(f->s.calls[idx[i]].method, "PATCH");
}

static bool is(struct fixture *f, size_t i, const char *res)
{
    return strstr(f->s.calls[i].path, res) != NULL;
}

static void test_partial_failure_retries_only_what_failed(void **state)
{
    struct fixture *f = *state;
    size_t idx[3], failed = SIZE_MAX;
    three_applies(f, idx);
    double errors = reconciles("pod,error");
    for (size_t i = 0; i < 3; i++) {
        bool slice = is(f, idx[i], "/endpointslices/");
        if (slice)
            failed = idx[i];
        echo(f, idx[i], slice ? 500 : 200);
    }
    assert_int_not_equal(failed, SIZE_MAX);
    assert_int_equal(reconciler_active(f->r), 0);
    assert_true(reconciles("pod,error") == errors + 1);
    assert_int_equal(queue_failures(f->q, "ns/a"), 1);
    /* Backing off: not before 250 ms. */
    size_t before = f->s.n;
    reconciler_pump(f->r, f->s.now + 249);
    assert_int_equal(f->s.n, before);
    f->s.now += 250;
    reconciler_pump(f->r, f->s.now);
    /* Only the EndpointSlice goes again; the two that landed are not repeated. */
    assert_int_equal(f->s.n, before + 1);
    assert_true(is(f, before, "/endpointslices/a"));
    assert_string_equal(f->s.calls[before].method, "PATCH");
    assert_non_null(strstr(f->s.calls[before].body, "8081"));
    echo(f, before, 200);
    assert_int_equal(queue_failures(f->q, "ns/a"), 0);    /* forgotten on success */
    settle(f);
    assert_int_equal(f->s.n, before + 1);
}

/* The reconciler plans twice as many pods as the client has write slots:
 * with one slot, a second pod's write is already issued (it waits in the
 * client's queue) when the first is answered, so the slot never waits for
 * the work queue and the planner. */
static void test_plans_ahead_of_the_write_slots(void **state)
{
    struct fixture *f = *state;
    size_t idx[4];
    assert_int_equal(reconciler_jobs_for(0), 1);
    assert_int_equal(reconciler_jobs_for(1), 2);
    assert_int_equal(reconciler_jobs_for(16), 32);
    assert_int_equal(reconciler_jobs_for(UINT_MAX), UINT_MAX);

    struct reconciler *r = reconciler_new(f->q, f->core, &f->io, reconciler_jobs_for(1));
    assert_non_null(r);
    reconciler_pause(r, false);
    list(f->core, "pods", POD("a", "10.0.0.1") "," POD("b", "10.0.0.2") "," POD("c", "10.0.0.3"));
    reconciler_pump(r, f->s.now);
    assert_int_equal(reconciler_active(r), 2);
    assert_int_equal(open_calls(f, idx, 4), 2);
    echo(f, idx[0], 200);
    /* No pump since: the second pod's write went out when it was planned. */
    size_t left[4];
    assert_int_equal(open_calls(f, left, 4), 1);
    assert_int_equal(left[0], idx[1]);
    assert_int_equal(reconciler_active(r), 1);
    reconciler_cancel(r);
    reconciler_free(r);
}

static void test_job_accounting(void **state)
{
    struct fixture *f = *state;
    size_t idx[4];
    /* Three new pods, two slots. */
    list(f->core, "pods", POD("a", "10.0.0.1") "," POD("b", "10.0.0.2") "," POD("c", "10.0.0.3"));
    reconciler_pump(f->r, f->s.now);
    assert_int_equal(reconciler_active(f->r), 2);
    assert_false(reconciler_can_take(f->r));
    assert_int_equal(queue_processing(f->q), 2);
    assert_int_equal(open_calls(f, idx, 4), 2);    /* each new pod's Service first */
    double ok = reconciles("pod,success");
    echo(f, idx[0], 200);
    assert_int_equal(reconciler_active(f->r), 1);
    assert_true(reconciler_can_take(f->r));
    assert_true(reconciles("pod,success") == ok + 1);
    assert_int_equal(queue_processing(f->q), 1);
    settle(f);
    assert_int_equal(reconciler_active(f->r), 0);
    assert_int_equal(queue_processing(f->q), 0);

    /* A job of three writes completes once, at its last answer. */
    ok = reconciles("pod,success");
    size_t three[3];
    char err[4096];
    f->old_sb = f->sb;
    f->sb = sandbox_new(NULL, &changed, NULL, err, sizeof err);
    core_set_sandbox(f->core, f->sb);
    queue_add(f->q, "ns/b", f->s.now);
    reconciler_pump(f->r, f->s.now);
    assert_int_equal(open_calls(f, three, 3), 3);
    echo(f, three[0], 200);
    echo(f, three[1], 200);
    assert_int_equal(reconciler_active(f->r), 1);
    assert_true(reconciles("pod,success") == ok);
    echo(f, three[2], 200);
    assert_int_equal(reconciler_active(f->r), 0);
    assert_true(reconciles("pod,success") == ok + 1);
    assert_int_equal(queue_processing(f->q), 0);
}

static void test_retries_back_off(void **state)
{
    struct fixture *f = *state;
    static const int64_t delays[] = { 250, 500, 1000, 2000 };
    list(f->core, "pods", POD("a", "10.0.0.1"));
    for (size_t k = 0; k < sizeof delays / sizeof *delays; k++) {
        reconciler_pump(f->r, f->s.now);
        size_t i = f->s.n - 1;
        assert_true(f->s.calls[i].open);
        assert_true(is(f, i, "/services/a"));
        echo(f, i, 503);
        assert_int_equal(queue_failures(f->q, "ns/a"), k + 1);
        size_t n = f->s.n;
        reconciler_pump(f->r, f->s.now + delays[k] - 1);
        assert_int_equal(f->s.n, n);               /* not yet */
        f->s.now += delays[k];
    }
    reconciler_pump(f->r, f->s.now);
    echo(f, f->s.n - 1, 200);
    assert_int_equal(queue_failures(f->q, "ns/a"), 0);
}

static void test_cancel_completes_nothing_afterwards(void **state)
{
    struct fixture *f = *state;
    size_t idx[4];
    list(f->core, "pods", POD("a", "10.0.0.1") "," POD("b", "10.0.0.2"));
    reconciler_pump(f->r, f->s.now);
    assert_int_equal(open_calls(f, idx, 4), 2);
    double ok = reconciles("pod,success"), errors = reconciles("pod,error");
    reconciler_pause(f->r, true);
    assert_int_equal(reconciler_cancel(f->r), 2);
    assert_int_equal(f->s.cancels, 2);
    assert_int_equal(scripted_open(&f->s), 0);     /* every write withdrawn */
    assert_true(f->s.calls[idx[0]].cancelled && f->s.calls[idx[1]].cancelled);
    assert_int_equal(reconciler_active(f->r), 0);
    assert_int_equal(queue_processing(f->q), 0);
    assert_int_equal(queue_failures(f->q, "ns/a"), 0);   /* no retry scheduled */
    /* Nothing completes afterwards, nothing new starts while paused. */
    f->s.now += 120000;
    reconciler_pump(f->r, f->s.now);
    assert_int_equal(f->s.n, 2);
    assert_true(reconciles("pod,success") == ok);
    assert_true(reconciles("pod,error") == errors);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_partial_failure_retries_only_what_failed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_job_accounting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plans_ahead_of_the_write_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_back_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_completes_nothing_afterwards, setup,
                                        teardown),
        cmocka_unit_test(test_cancel_drops_writes_and_their_retries),
    };
    log_setup(LOG_ERROR, false);
    return cmocka_run_group_tests_name("reconcile", tests, NULL, teardown_group);
}
