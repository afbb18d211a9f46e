/* The registry and its text exposition, compared byte for byte with what a
 * Prometheus scrape should read. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"
#include "metrics.h"

static int setup(void **state)
{
    (void)state;
    metrics_reset();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    metrics_reset();
    log_set_output(NULL);
    return 0;
}

/* Renders and compares with `want`, showing both on a difference. */
static void assert_render(const char *want)
{
    size_t len = 0;
    char *got = metrics_render(&len);

    assert_non_null(got);
    assert_int_equal(len, strlen(got));
    assert_string_equal(got, want);
    free(got);
}

static void test_empty_registry(void **state)
{
    (void)state;
    assert_render("");
}

static void test_counter(void **state)
{
    struct metric *m = metrics_counter("envoy_router_script_reloads_total",
                                       "Script reloads.", NULL);
    (void)state;

    assert_non_null(m);
    assert_render("# HELP envoy_router_script_reloads_total Script reloads.\n"
                  "# TYPE envoy_router_script_reloads_total counter\n"
                  "envoy_router_script_reloads_total 0\n");
    metrics_add(m, NULL, 1);
    metrics_add(m, "", 2);
    metrics_add(m, NULL, -5); /* counters only go up */
    metrics_add(m, NULL, NAN);
    metrics_set(m, NULL, 100); /* not a gauge: ignored */
    assert_true(metrics_value(m, NULL) == 3);
    assert_render("# HELP envoy_router_script_reloads_total Script reloads.\n"
                  "# TYPE envoy_router_script_reloads_total counter\n"
                  "envoy_router_script_reloads_total 3\n");
}

static void test_labelled_counter_sorted(void **state)
{
    struct metric *m = metrics_counter("controller_runtime_reconcile_total",
                                       "Reconciles by controller and result.",
                                       "controller,result");
    (void)state;

    /* No series yet: a labelled family says nothing at all. */
    assert_render("");
    metrics_add(m, "pod,success", 1);
    metrics_add(m, "pod,error", 1);
    metrics_add(m, "pod,success", 1);
    metrics_add(m, "pod,requeue", 0.5);
    assert_true(metrics_value(m, "pod,success") == 2);
    assert_true(metrics_value(m, "pod,missing") == 0);
    assert_render("# HELP controller_runtime_reconcile_total Reconciles by controller "
                  "and result.\n"
                  "# TYPE controller_runtime_reconcile_total counter\n"
                  "controller_runtime_reconcile_total{controller=\"pod\",result=\"error\"} 1\n"
                  "controller_runtime_reconcile_total{controller=\"pod\",result=\"requeue\"} "
                  "0.5\n"
                  "controller_runtime_reconcile_total{controller=\"pod\",result=\"success\"} "
                  "2\n");
}

static void test_labelled_gauge(void **state)
{
    struct metric *g = metrics_gauge("envoy_router_managed_pods", "Pods managed.",
                                     "namespace");
    (void)state;

    metrics_set(g, "team-b", 7);
    metrics_set(g, "team-a", 40);
    metrics_add(g, "team-a", -2.5);
    metrics_set(g, "", 1);
    assert_true(metrics_value(g, "team-a") == 37.5);
    assert_render("# HELP envoy_router_managed_pods Pods managed.\n"
                  "# TYPE envoy_router_managed_pods gauge\n"
                  "envoy_router_managed_pods{namespace=\"\"} 1\n"
                  "envoy_router_managed_pods{namespace=\"team-a\"} 37.5\n"
                  "envoy_router_managed_pods{namespace=\"team-b\"} 7\n");
}

static void test_histogram(void **state)
{
    static const double bounds[] = {0.1, 1, 5};
    struct metric *h = metrics_histogram("controller_runtime_reconcile_time_seconds",
                                         "Seconds per reconcile.",
                                         "controller", bounds, 3);
    (void)state;

    metrics_observe(h, "pod", 0.05);
    metrics_observe(h, "pod", 0.1);  /* on the bound: counts in le="0.1" */
    metrics_observe(h, "pod", 0.75);
    metrics_observe(h, "pod", 30);   /* only in +Inf */
    metrics_add(h, "pod", 1);        /* not a counter: ignored */
    assert_true(metrics_value(h, "pod") == 4);
    assert_render("# HELP controller_runtime_reconcile_time_seconds Seconds per "
                  "reconcile.\n"
                  "# TYPE controller_runtime_reconcile_time_seconds histogram\n"
                  "controller_runtime_reconcile_time_seconds_bucket{controller=\"pod\","
                  "le=\"0.1\"} 2\n"
                  "controller_runtime_reconcile_time_seconds_bucket{controller=\"pod\","
                  "le=\"1\"} 3\n"
                  "controller_runtime_reconcile_time_seconds_bucket{controller=\"pod\","
                  "le=\"5\"} 3\n"
                  "controller_runtime_reconcile_time_seconds_bucket{controller=\"pod\","
                  "le=\"+Inf\"} 4\n"
                  "controller_runtime_reconcile_time_seconds_sum{controller=\"pod\"} 30.9\n"
                  "controller_runtime_reconcile_time_seconds_count{controller=\"pod\"} 4\n");
}

static void test_histogram_default_buckets_unlabelled(void **state)
{
    struct metric *h = metrics_histogram("x_seconds", "X.", NULL, NULL, 0);
    (void)state;

    metrics_observe(h, NULL, 0.003);
    metrics_observe(h, NULL, 2);
    assert_render("# HELP x_seconds X.\n"
                  "# TYPE x_seconds histogram\n"
                  "x_seconds_bucket{le=\"0.005\"} 1\n"
                  "x_seconds_bucket{le=\"0.01\"} 1\n"
                  "x_seconds_bucket{le=\"0.025\"} 1\n"
                  "x_seconds_bucket{le=\"0.05\"} 1\n"
                  "x_seconds_bucket{le=\"0.1\"} 1\n"
                  "x_seconds_bucket{le=\"0.25\"} 1\n"
                  "x_seconds_bucket{le=\"0.5\"} 1\n"
                  "x_seconds_bucket{le=\"1\"} 1\n"
                  "x_seconds_bucket{le=\"2.5\"} 2\n"
                  "x_seconds_bucket{le=\"5\"} 2\n"
                  "x_seconds_bucket{le=\"10\"} 2\n"
                  "x_seconds_bucket{le=\"+Inf\"} 2\n"
                  "x_seconds_sum 2.003\n"
                  "x_seconds_count 2\n");
}

static void test_escaping(void **state)
{
    struct metric *g = metrics_gauge("esc", "Help with \\ backslash\nand newline \"q\".",
                                     "v");
    (void)state;

    metrics_set(g, "a\"b\\c\nd", 1);
    assert_render("# HELP esc Help with \\\\ backslash\\nand newline \"q\".\n"
                  "# TYPE esc gauge\n"
                  "esc{v=\"a\\\"b\\\\c\\nd\"} 1\n");
}

static void test_sorted_by_name_and_registered_once(void **state)
{
    struct metric *b = metrics_gauge("b_metric", "B.", NULL);
    struct metric *a = metrics_counter("a_metric", "A.", NULL);
    struct metric *again = metrics_gauge("b_metric", "other help", "x");
    (void)state;

    assert_ptr_equal(b, again);
    metrics_set(b, NULL, 2);
    metrics_add(a, NULL, 1);
    assert_render("# HELP a_metric A.\n# TYPE a_metric counter\na_metric 1\n"
                  "# HELP b_metric B.\n# TYPE b_metric gauge\nb_metric 2\n");
}

static void test_numbers(void **state)
{
    struct metric *g = metrics_gauge("n", "N.", "k");
    (void)state;

    metrics_set(g, "a", 1e21);
    metrics_set(g, "b", -0.0);
    metrics_set(g, "c", 0.1 + 0.2);
    metrics_set(g, "d", INFINITY);
    metrics_set(g, "e", -INFINITY);
    metrics_set(g, "f", NAN);
    metrics_set(g, "g", 123456789012345.0);
    metrics_set(g, "h", 1.5e-7);
    assert_render("# HELP n N.\n# TYPE n gauge\n"
                  "n{k=\"a\"} 1e+21\n"
                  "n{k=\"b\"} 0\n"
                  "n{k=\"c\"} 0.30000000000000004\n"
                  "n{k=\"d\"} +Inf\n"
                  "n{k=\"e\"} -Inf\n"
                  "n{k=\"f\"} NaN\n"
                  "n{k=\"g\"} 123456789012345\n"
                  "n{k=\"h\"} 1.5e-07\n");
}

static void test_wrong_label_count_is_ignored_and_reported(void **state)
{
    struct metric *m = metrics_counter("two", "Two labels.", "a,b");
    char *logged = NULL;
    size_t loglen = 0;
    FILE *out = open_memstream(&logged, &loglen);
    (void)state;

    assert_non_null(out);
    log_setup(LOG_INFO, false);
    log_set_output(out);
    metrics_add(m, "only-one", 1);
    metrics_add(m, "x,y,z", 1);
    metrics_add(m, NULL, 1);
    log_set_output(NULL);
    fclose(out);
    assert_render("");
    /* Reported once per metric, not once per update. */
    assert_non_null(strstr(logged, "level=warn msg=\"metrics: label values do not match "
                                   "the label names\" metric=two values=only-one\n"));
    assert_null(strstr(strchr(logged, '\n') + 1, "level="));
    free(logged);

    metrics_add(m, "x,y", 1);
    assert_true(metrics_value(m, "x,y") == 1);
}

static void test_null_metric_is_ignored(void **state)
{
    (void)state;
    metrics_add(NULL, "a", 1);
    metrics_set(NULL, "a", 1);
    metrics_observe(NULL, "a", 1);
    assert_true(metrics_value(NULL, "a") == 0);
}

static void test_many_series(void **state)
{
    struct metric *m = metrics_counter("many", "Many.", "pod");
    char key[32];
    size_t len;
    char *text;
    (void)state;

    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 5000; i++) {
            snprintf(key, sizeof key, "p%05d", i);
            metrics_add(m, key, 1);
        }
    }
    assert_true(metrics_value(m, "p04999") == 3);
    text = metrics_render(&len);
    assert_non_null(text);
    assert_non_null(strstr(text, "many{pod=\"p00000\"} 3\nmany{pod=\"p00001\"} 3\n"));
    assert_non_null(strstr(text, "many{pod=\"p04999\"} 3\n"));
    free(text);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_empty_registry),
        T(test_counter),
        T(test_labelled_counter_sorted),
        T(test_labelled_gauge),
        T(test_histogram),
        T(test_histogram_default_buckets_unlabelled),
        T(test_escaping),
        T(test_sorted_by_name_and_registered_once),
        T(test_numbers),
        T(test_wrong_label_count_is_ignored_and_reported),
        T(test_null_metric_is_ignored),
        T(test_many_series),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
