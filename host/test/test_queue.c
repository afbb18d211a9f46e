/* Work queue semantics, with the clock in the test's hands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"
#include "queue.h"

static int setup(void **state)
{
    metrics_reset();
    *state = queue_new("pods", 10, 100);
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    queue_free(*state);
    metrics_reset();
    return 0;
}

static void test_dedupe_while_waiting(void **state)
{
    struct queue *q = *state;

    assert_int_equal(queue_add(q, "ns/a", 0), 0);
    assert_int_equal(queue_add(q, "ns/a", 1), 0);
    assert_int_equal(queue_add(q, "ns/b", 2), 0);
    assert_int_equal(queue_add(q, "ns/a", 3), 0);
    assert_int_equal(queue_len(q), 2);
    assert_int_equal(queue_ready(q), 2);
    assert_string_equal(queue_pop(q, 4), "ns/a");
    assert_string_equal(queue_pop(q, 4), "ns/b");
    assert_null(queue_pop(q, 4));
    assert_int_equal(queue_processing(q), 2);
}

static void test_add_while_processing_comes_back_once(void **state)
{
    struct queue *q = *state;
    const char *k;

    assert_int_equal(queue_add(q, "ns/a", 0), 0);
    k = queue_pop(q, 1);
    assert_string_equal(k, "ns/a");
    /* Added twice while in processing: not handed out again meanwhile. */
    assert_int_equal(queue_add(q, "ns/a", 2), 0);
    assert_int_equal(queue_add(q, "ns/a", 3), 0);
    assert_int_equal(queue_ready(q), 0);
    assert_int_equal(queue_len(q), 0);
    assert_null(queue_pop(q, 4));
    assert_string_equal(k, "ns/a"); /* still valid until done */

    queue_done(q, "ns/a", 5);
    assert_int_equal(queue_processing(q), 0);
    assert_int_equal(queue_ready(q), 1);
    assert_string_equal(queue_pop(q, 6), "ns/a");
    assert_null(queue_pop(q, 6));
    queue_done(q, "ns/a", 7);
    assert_null(queue_pop(q, 8));
    assert_int_equal(queue_len(q), 0);
    assert_int_equal(queue_processing(q), 0);
}

static void test_done_without_add_drops_key(void **state)
{
    struct queue *q = *state;

    queue_add(q, "ns/a", 0);
    assert_string_equal(queue_pop(q, 0), "ns/a");
    queue_done(q, "ns/a", 1);
    queue_done(q, "ns/a", 1);       /* twice: ignored */
    queue_done(q, "ns/unknown", 1); /* never seen: ignored */
    assert_int_equal(queue_len(q), 0);
    assert_int_equal(queue_processing(q), 0);
    assert_null(queue_pop(q, 1000));
}

static void test_delayed_add_brought_forward(void **state)
{
    struct queue *q = *state;

    assert_int_equal(queue_next_deadline(q), INT64_MAX);
    assert_int_equal(queue_add_after(q, "ns/a", 1000, 0), 0);
    assert_int_equal(queue_len(q), 1);
    assert_int_equal(queue_ready(q), 0);
    assert_int_equal(queue_next_deadline(q), 1000);
    /* Sooner wins, later is ignored. */
    assert_int_equal(queue_add_after(q, "ns/a", 500, 0), 0);
    assert_int_equal(queue_next_deadline(q), 500);
    assert_int_equal(queue_add_after(q, "ns/a", 2000, 0), 0);
    assert_int_equal(queue_next_deadline(q), 500);
    assert_int_equal(queue_len(q), 1);
    assert_null(queue_pop(q, 499));
    assert_string_equal(queue_pop(q, 500), "ns/a");
    assert_int_equal(queue_next_deadline(q), INT64_MAX);
    queue_done(q, "ns/a", 501);

    /* A plain add makes a delayed key ready at once. */
    assert_int_equal(queue_add_after(q, "ns/b", 1000, 600), 0);
    assert_int_equal(queue_add(q, "ns/b", 601), 0);
    assert_int_equal(queue_ready(q), 1);
    assert_int_equal(queue_len(q), 1);
    assert_int_equal(queue_next_deadline(q), INT64_MAX);
    assert_string_equal(queue_pop(q, 601), "ns/b");

    /* A ready key is not pushed back by a delayed add. */
    assert_int_equal(queue_add(q, "ns/c", 700), 0);
    assert_int_equal(queue_add_after(q, "ns/c", 50, 700), 0);
    assert_int_equal(queue_ready(q), 1);
    assert_int_equal(queue_next_deadline(q), INT64_MAX);
    assert_string_equal(queue_pop(q, 700), "ns/c");
}

static void test_delayed_add_while_processing(void **state)
{
    struct queue *q = *state;

    queue_add(q, "ns/a", 0);
    assert_string_equal(queue_pop(q, 0), "ns/a");
    assert_int_equal(queue_add_after(q, "ns/a", 100, 0), 0);
    assert_int_equal(queue_len(q), 0);
    queue_done(q, "ns/a", 10);
    /* Comes back when asked for, not at done. */
    assert_int_equal(queue_ready(q), 0);
    assert_int_equal(queue_next_deadline(q), 100);
    assert_null(queue_pop(q, 99));
    assert_string_equal(queue_pop(q, 100), "ns/a");
}

static void test_backoff_doubles_caps_and_forgets(void **state)
{
    struct queue *q = *state; /* base 10 ms, max 100 ms */
    static const int64_t want[] = {10, 20, 40, 80, 100, 100, 100};

    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(queue_retry(q, "ns/a", 0), want[i]);
        assert_int_equal(queue_failures(q, "ns/a"), i + 1);
    }
    /* All those retries are one waiting key, due after the first delay. */
    assert_int_equal(queue_len(q), 1);
    assert_int_equal(queue_next_deadline(q), 10);
    assert_int_equal(queue_failures(q, "ns/other"), 0);

    queue_forget(q, "ns/a");
    assert_int_equal(queue_failures(q, "ns/a"), 0);
    assert_int_equal(queue_len(q), 1); /* forgetting does not unqueue */
    assert_string_equal(queue_pop(q, 10), "ns/a");
    queue_done(q, "ns/a", 11);
    assert_int_equal(queue_retry(q, "ns/a", 20), 10);
    assert_int_equal(queue_next_deadline(q), 30);
}

static void test_forget_all_after_an_outage(void **state)
{
    struct queue *q = *state; /* base 10 ms, max 100 ms */
    char key[32];

    /* 200 keys failed through an outage (enough to spread over many
     * chains); one is in processing, 50 failed and then succeeded once. */
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "ns/p%d", i);
        for (int j = 0; j < 5; j++)
            queue_retry(q, key, 0);
    }
    assert_string_equal(queue_pop(q, 100), "ns/p0");
    queue_forget_all(q);
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "ns/p%d", i);
        assert_int_equal(queue_failures(q, key), 0);
    }
    /* Nothing was unqueued: 199 ready, one in processing. */
    assert_int_equal(queue_len(q), 199);
    assert_int_equal(queue_processing(q), 1);
    /* Failing once more now waits the base backoff, not the grown one. */
    assert_int_equal(queue_retry(q, "ns/p0", 100), 10);
    queue_done(q, "ns/p0", 101);
    assert_int_equal(queue_retry(q, "ns/p7", 101), 10);
    /* Forgotten keys that are idle are released. */
    queue_forget_all(q);
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "ns/p%d", i);
        const char *k = queue_pop(q, 1000);
        assert_non_null(k);
        queue_done(q, k, 1000);
    }
    assert_null(queue_pop(q, 1000));
    assert_int_equal(queue_len(q), 0);
    queue_forget_all(q);
}

static void test_backoff_survives_huge_failure_counts(void **state)
{
    struct queue *q = queue_new("big", 1000, INT64_MAX / 4);
    int64_t last = 0;
    (void)state;

    assert_non_null(q);
    for (int i = 0; i < 200; i++) {
        int64_t d = queue_retry(q, "ns/a", 0);
        assert_true(d >= last);
        assert_true(d <= INT64_MAX / 4);
        last = d;
    }
    assert_int_equal(last, INT64_MAX / 4);
    assert_int_equal(queue_failures(q, "ns/a"), 200);
    queue_free(q);
}

static void test_retry_while_processing(void **state)
{
    struct queue *q = *state;

    queue_add(q, "ns/a", 0);
    assert_string_equal(queue_pop(q, 0), "ns/a");
    assert_int_equal(queue_retry(q, "ns/a", 5), 10);
    assert_null(queue_pop(q, 100));
    queue_done(q, "ns/a", 6);
    assert_int_equal(queue_next_deadline(q), 15);
    assert_null(queue_pop(q, 14));
    assert_string_equal(queue_pop(q, 15), "ns/a");
    queue_done(q, "ns/a", 16);

    /* Retry after done (the other order the header allows). */
    assert_int_equal(queue_retry(q, "ns/a", 20), 20);
    assert_int_equal(queue_next_deadline(q), 40);
    assert_string_equal(queue_pop(q, 40), "ns/a");
}

static void test_fifo_order(void **state)
{
    struct queue *q = *state;

    queue_add(q, "ns/c", 0);
    queue_add(q, "ns/a", 1);
    queue_add(q, "ns/b", 2);
    /* Delayed keys take their place by the time they became due, even when
     * the queue only notices later. */
    queue_add_after(q, "ns/late", 30, 0);
    queue_add_after(q, "ns/early", 5, 0);
    queue_add_after(q, "ns/tie1", 20, 0);
    queue_add_after(q, "ns/tie2", 20, 0);
    queue_add(q, "ns/d", 10);
    assert_int_equal(queue_ready(q), 5);
    assert_int_equal(queue_len(q), 8);
    assert_string_equal(queue_pop(q, 100), "ns/c");
    assert_int_equal(queue_ready(q), 7);
    assert_int_equal(queue_len(q), 7);
    assert_int_equal(queue_next_deadline(q), INT64_MAX);
    assert_string_equal(queue_pop(q, 100), "ns/a");
    assert_string_equal(queue_pop(q, 100), "ns/b");
    assert_string_equal(queue_pop(q, 100), "ns/early");
    assert_string_equal(queue_pop(q, 100), "ns/d");
    assert_string_equal(queue_pop(q, 100), "ns/tie1");
    assert_string_equal(queue_pop(q, 100), "ns/tie2");
    assert_string_equal(queue_pop(q, 100), "ns/late");
    assert_null(queue_pop(q, 100));
}

static void test_metrics_follow_the_queue(void **state)
{
    struct queue *q = *state;
    struct metric *depth = metrics_gauge("workqueue_depth", "", "name");
    struct metric *adds = metrics_counter("workqueue_adds_total", "", "name");
    struct metric *retries = metrics_counter("workqueue_retries_total", "", "name");
    struct metric *wait = metrics_histogram("workqueue_queue_duration_seconds", "", "name",
                                            NULL, 0);
    struct metric *work = metrics_histogram("workqueue_work_duration_seconds", "", "name",
                                            NULL, 0);

    queue_add(q, "ns/a", 0);
    queue_add(q, "ns/a", 0);
    queue_add(q, "ns/b", 0);
    assert_true(metrics_value(depth, "pods") == 2);
    assert_true(metrics_value(adds, "pods") == 2);
    assert_string_equal(queue_pop(q, 250), "ns/a");
    assert_true(metrics_value(depth, "pods") == 1);
    assert_true(metrics_value(wait, "pods") == 1);
    queue_done(q, "ns/a", 1250);
    assert_true(metrics_value(work, "pods") == 1);
    queue_retry(q, "ns/a", 1250);
    assert_true(metrics_value(retries, "pods") == 1);
    assert_true(metrics_value(depth, "pods") == 1); /* the retry is delayed */
    assert_true(metrics_value(adds, "pods") == 2);
    assert_non_null(queue_pop(q, 5000));
    assert_non_null(queue_pop(q, 5000));
    assert_true(metrics_value(adds, "pods") == 3);
    assert_true(metrics_value(depth, "pods") == 0);

    size_t len;
    char *text = metrics_render(&len);
    assert_non_null(text);
    /* a waited 250 ms: in the 0.25 bucket; b waited 5 s. */
    assert_non_null(strstr(text, "workqueue_queue_duration_seconds_bucket{name=\"pods\","
                                 "le=\"0.1\"} 0\n"
                                 "workqueue_queue_duration_seconds_bucket{name=\"pods\","
                                 "le=\"0.25\"} 1\n"));
    assert_non_null(strstr(text, "workqueue_work_duration_seconds_sum{name=\"pods\"} 1\n"));
    free(text);
}

static void test_many_keys(void **state)
{
    enum { N = 100000 };
    struct queue *q = *state;
    char key[64];
    (void)state;

    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "ns-%d/pod-%d", i % 97, i);
        assert_int_equal(queue_add(q, key, i), 0);
    }
    for (int i = 0; i < N; i += 3) {
        snprintf(key, sizeof key, "ns-%d/pod-%d", i % 97, i);
        assert_int_equal(queue_add(q, key, N), 0);
    }
    assert_int_equal(queue_len(q), N);
    for (int i = 0; i < N; i++) {
        const char *k = queue_pop(q, N);
        snprintf(key, sizeof key, "ns-%d/pod-%d", i % 97, i);
        assert_non_null(k);
        assert_string_equal(k, key);
    }
    assert_null(queue_pop(q, N));
    assert_int_equal(queue_processing(q), N);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "ns-%d/pod-%d", i % 97, i);
        queue_done(q, key, N);
    }
    assert_int_equal(queue_processing(q), 0);
    assert_int_equal(queue_len(q), 0);

    /* The same keys delayed in a scrambled order come out by due time. */
    for (int i = 0; i < N; i++) {
        int due = (int)(((unsigned)i * 7919u) % N);
        snprintf(key, sizeof key, "ns/pod-%d", due);
        assert_int_equal(queue_add_after(q, key, 1000 + due, 0), 0);
    }
    assert_int_equal(queue_len(q), N);
    assert_int_equal(queue_next_deadline(q), 1000);
    for (int i = 0; i < N; i++) {
        const char *k = queue_pop(q, 1000 + i);
        snprintf(key, sizeof key, "ns/pod-%d", i);
        assert_non_null(k);
        assert_string_equal(k, key);
        queue_done(q, key, 1000 + i);
    }
    assert_int_equal(queue_len(q), 0);
}

static void test_free_null(void **state)
{
    (void)state;
    queue_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dedupe_while_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_while_processing_comes_back_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_done_without_add_drops_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delayed_add_brought_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delayed_add_while_processing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backoff_doubles_caps_and_forgets, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_backoff_survives_huge_failure_counts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_forget_all_after_an_outage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_while_processing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_follow_the_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_keys, setup, teardown),
        cmocka_unit_test(test_free_null),
    };
    return cmocka_run_group_tests_name("queue", tests, NULL, NULL);
}
