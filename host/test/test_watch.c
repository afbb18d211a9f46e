/* Tests of watch.c, the informer, through a scripted transport: every list
 * and watch call is answered by the test, on a clock the test moves, so
 * relists, resumes and backoffs are seen call by call in milliseconds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core.h"
#include "log.h"
#include "metrics.h"
#include "sandbox.h"
#include "scripted.h"
#include "timers.h"
#include "watch.h"

static struct config cfg = {
    .gateway_name = "gw", .gateway_namespace = "", .service_port = 80, .pod_port = 8080,
    .headless = true,
};

struct fixture {
    struct scripted s;
    struct kube_transport io;
    struct timers *timers;
    struct sandbox *sb;
    struct core *core;
    struct watch *w;
    int queued;                  /* pod keys core queued */
};

static void on_enqueue(void *arg, const char *key)
{
    struct fixture *f = arg;
    (void)key;
    f->queued++;
}

static int setup(void **state)
{
    char err[4096];
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->s.now = 1000000;
    f->io = scripted_transport(&f->s);
    f->timers = timers_new();
    f->sb = sandbox_new(NULL, &cfg, NULL, err, sizeof(err));
    f->core = f->sb ? core_new(f->sb, on_enqueue, f, err, sizeof(err)) : NULL;
    if (!f->core)
        fail_msg("core: %s", err);
    f->w = watch_new(&f->io, f->timers, f->core, "pods", kube_resource_find("v1", "Pod"), "",
                     "a=1");
    assert_non_null(f->w);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    watch_free(f->w);
    assert_int_equal(scripted_open(&f->s), 0);   /* watch_free cancelled its call */
    scripted_free(&f->s);
    core_free(f->core);
    sandbox_free(f->sb);
    timers_free(f->timers);
    free(f);
    return 0;
}

static int teardown_group(void **state)
{
    (void)state;
    metrics_reset();   /* once: watch.c keeps its metrics for the process */
    return 0;
}

#define POD(name) \
    "{\"metadata\":{\"name\":\"" name "\",\"namespace\":\"ns\",\"uid\":\"uid-" name "\"," \
    "\"resourceVersion\":\"5\",\"labels\":{\"a\":\"1\"}}," \
    "\"spec\":{\"nodeName\":\"n1\"},\"status\":{\"podIP\":\"10.0.0.1\"}}"

static const char *list_body(char *buf, size_t len, const char *rv, const char *cont,
                             const char *items)
{
    snprintf(buf, len, "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"%s\","
             "\"continue\":\"%s\"},\"items\":[%s]}", rv, cont, items);
    return buf;
}

static size_t cached_pods(struct fixture *f)
{
    size_t managed, pods, children;
    core_stats(f->core, &managed, &pods, &children);
    return pods;
}

static bool has(const struct scripted_call *c, const char *part)
{
    return strstr(c->path, part) != NULL;
}

/* The last call is open and is a list (not a watch) / a watch. */
static void assert_list(struct fixture *f)
{
    struct scripted_call *c = scripted_last(&f->s);
    assert_true(c->open);
    assert_false(c->watch);
    assert_false(has(c, "watch=1"));
    assert_true(has(c, "/api/v1/pods?"));
    assert_true(has(c, "limit=500"));
}

static void assert_watch_from(struct fixture *f, const char *rv)
{
    char want[64];
    struct scripted_call *c = scripted_last(&f->s);
    assert_true(c->open);
    assert_true(c->watch);
    assert_true(has(c, "watch=1"));
    assert_true(has(c, "allowWatchBookmarks=true"));
    snprintf(want, sizeof(want), "resourceVersion=%s&", rv);
    if (!has(c, want))
        fail_msg("watch %s does not start from %s", c->path, rv);
}

/* Starts the informer and answers its first list (one pod, rv 10). */
static size_t synced(struct fixture *f)
{
    char body[2048];
    watch_start(f->w);
    assert_int_equal(f->s.n, 1);
    assert_list(f);
    assert_true(has(scripted_last(&f->s), "labelSelector=a%3D1"));
    scripted_answer(&f->s, 0, 200, list_body(body, sizeof(body), "10", "", POD("p1")));
    assert_true(watch_synced(f->w));
    assert_int_equal(cached_pods(f), 1);
    assert_int_equal(f->s.n, 2);
    assert_watch_from(f, "10");
    return 1;                    /* the watch's index */
}

static double relists(void)
{
    return metrics_value(metrics_counter("envoy_router_watch_relists_total", "", "resource"),
                         "pods");
}

static void test_410_status_relists_at_once(void **state)
{
    struct fixture *f = *state;
    double before = relists();
    size_t w = synced(f);
    scripted_answer(&f->s, w, 410, "{\"kind\":\"Status\",\"code\":410}");
    /* A new list, now, without waiting for a timer. */
    assert_int_equal(f->s.n, 3);
    assert_list(f);
    assert_false(has(scripted_last(&f->s), "continue="));
    assert_int_equal(timers_next(f->timers), INT64_MAX);
    char body[2048];
    scripted_answer(&f->s, 2, 200, list_body(body, sizeof(body), "20", "", POD("p1")));
    assert_watch_from(f, "20");
    assert_true(relists() == before + 1);
}

static void test_410_error_event_relists_at_once(void **state)
{
    struct fixture *f = *state;
    size_t w = synced(f);
    /* An ordinary event, then the ERROR event split across two chunks. */
    assert_int_equal(scripted_feed(&f->s, w, "{\"type\":\"MODIFIED\",\"object\":" POD("p1")
                                   "}\n{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\","),
                     0);
    assert_int_equal(scripted_feed(&f->s, w, "\"code\":410,\"message\":\"too old\"}}\n"), 1);
    assert_false(f->s.calls[w].open);
    assert_int_equal(f->s.n, 3);
    assert_list(f);
    assert_int_equal(timers_next(f->timers), INT64_MAX);
}

static void test_410_on_continue_lists_from_scratch(void **state)
{
    struct fixture *f = *state;
    char body[2048];
    watch_start(f->w);
    /* Page 1 of 2: p1, and a continue token. */
    scripted_answer(&f->s, 0, 200, list_body(body, sizeof(body), "10", "tok1", POD("p1")));
    assert_false(watch_synced(f->w));
    assert_int_equal(f->s.n, 2);
    assert_list(f);
    assert_true(has(scripted_last(&f->s), "continue=tok1"));
    /* The token expired (history compacted meanwhile). */
    scripted_answer(&f->s, 1, 410, "{\"kind\":\"Status\",\"code\":410}");
    assert_int_equal(f->s.n, 3);
    assert_list(f);
    assert_false(has(scripted_last(&f->s), "continue="));
    /* The new list no longer holds p1: page 1 of the old one is not kept. */
    scripted_answer(&f->s, 2, 200, list_body(body, sizeof(body), "30", "", POD("p2")));
    assert_true(watch_synced(f->w));
    assert_int_equal(cached_pods(f), 1);
    assert_watch_from(f, "30");
}

static void test_malformed_line_relists_after_backoff(void **state)
{
    struct fixture *f = *state;
    size_t w = synced(f);
    int64_t t0 = f->s.now;
    assert_int_equal(scripted_feed(&f->s, w, "{\"type\":\"ADDED\",\"object\":\n"), 1);
    assert_false(f->s.calls[w].open);
    /* Nothing at once: a bad object must not make us hammer the server. */
    assert_int_equal(f->s.n, 2);
    int64_t due = timers_next(f->timers);
    assert_true(due >= t0 + 400 && due <= t0 + 600);   /* 500 ms, jittered ±20 % */
    f->s.now = t0 + 399;
    assert_int_equal(timers_run(f->timers, f->s.now), 0);
    assert_int_equal(f->s.n, 2);
    f->s.now = due;
    assert_int_equal(timers_run(f->timers, f->s.now), 1);
    /* Then a relist, not a resume. */
    assert_int_equal(f->s.n, 3);
    assert_list(f);
}

static void test_bookmark_then_clean_end_resumes(void **state)
{
    struct fixture *f = *state;
    double before = relists();
    size_t w = synced(f);
    assert_int_equal(scripted_feed(&f->s, w, "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\","
                                   "\"apiVersion\":\"v1\",\"metadata\":"
                                   "{\"resourceVersion\":\"42\"}}}\n"), 0);
    /* The server ends the watch after its timeoutSeconds. */
    f->s.now += 300000;
    scripted_answer(&f->s, w, 200, NULL);
    assert_int_equal(f->s.n, 3);
    assert_watch_from(f, "42");                 /* no relist */
    assert_int_equal(cached_pods(f), 1);
    assert_true(relists() == before);
    assert_int_equal(timers_next(f->timers), INT64_MAX);
}

static void test_selector_change_lists_with_it(void **state)
{
    struct fixture *f = *state;
    size_t w = synced(f);
    assert_int_equal(watch_set_selector(f->w, "a=1"), 0);     /* the same: nothing */
    assert_int_equal(f->s.n, 2);
    assert_true(f->s.calls[w].open);
    assert_int_equal(watch_set_selector(f->w, "b in (x,y)"), 0);
    assert_true(f->s.calls[w].cancelled);
    assert_int_equal(f->s.n, 3);
    assert_list(f);
    assert_true(has(scripted_last(&f->s), "labelSelector=b%20in%20%28x%2Cy%29"));
    char body[2048];
    scripted_answer(&f->s, 2, 200, list_body(body, sizeof(body), "50", "", ""));
    assert_int_equal(cached_pods(f), 0);        /* p1 does not match any more */
    assert_watch_from(f, "50");
    assert_true(has(scripted_last(&f->s), "labelSelector=b%20in%20%28x%2Cy%29"));
}

/* While nothing answers, the backoff keeps growing (the wait itself is
 * capped at 2 s); the first answer after the outage, a restarted server's
 * 503 while its paths come up, must start again from 500 ms, not wait the
 * 30 s that grew meanwhile. */
static void test_first_answer_after_outage_restarts_backoff(void **state)
{
    struct fixture *f = *state;
    synced(f);
    for (int i = 0; i < 8; i++) {
        size_t last = f->s.n - 1;
        scripted_end(&f->s, last, 0, NULL, "Connection refused");
        int64_t due = timers_next(f->timers);
        assert_true(due <= f->s.now + 2400);       /* 2 s, jittered */
        f->s.now = due;
        assert_int_equal(timers_run(f->timers, f->s.now), 1);
        assert_int_equal(f->s.n, last + 2);
    }
    int64_t t0 = f->s.now;
    scripted_answer(&f->s, f->s.n - 1, 503, "{\"kind\":\"Status\",\"code\":503}");
    int64_t due = timers_next(f->timers);
    if (due < t0 + 400 || due > t0 + 600)
        fail_msg("retry %lld ms after the server's first answer, want 400-600",
                 (long long)(due - t0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_410_status_relists_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_410_error_event_relists_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_410_on_continue_lists_from_scratch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_line_relists_after_backoff, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bookmark_then_clean_end_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_selector_change_lists_with_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_answer_after_outage_restarts_backoff, setup,
                                        teardown),
    };
    log_setup(LOG_ERROR, false);
    return cmocka_run_group_tests_name("watch", tests, NULL, teardown_group);
}
