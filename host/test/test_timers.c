/* One-shot timers: order, cancel, re-entrancy from callbacks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "timers.h"

/* Callbacks write their tag here, in the order they run. */
struct log {
    char order[256];
    size_t n;
    struct timers *t;
    uint64_t victim;   /* cancelled by the "cancel" callback */
    int64_t at;        /* when the "spawn" callbacks schedule */
};

struct tag {
    struct log *log;
    char c;
};

static void record(void *arg)
{
    struct tag *tag = arg;

    tag->log->order[tag->log->n++] = tag->c;
    tag->log->order[tag->log->n] = '\0';
}

static void test_clocks(void **state)
{
    int64_t a = clock_ms(), b = clock_ms();
    double wall = clock_wall();
    (void)state;

    assert_true(a > 0);
    assert_true(b >= a);
    assert_true(wall > (double)time(NULL) - 2 && wall < (double)time(NULL) + 2);
}

static void test_runs_in_time_order(void **state)
{
    struct timers *t = timers_new();
    struct log log = {0};
    struct tag a = {&log, 'a'}, b = {&log, 'b'}, c = {&log, 'c'}, d = {&log, 'd'};
    uint64_t ids[4];
    (void)state;

    assert_non_null(t);
    assert_int_equal(timers_next(t), INT64_MAX);
    ids[0] = timers_add(t, 30, record, &c);
    ids[1] = timers_add(t, 10, record, &a);
    ids[2] = timers_add(t, 20, record, &b);
    ids[3] = timers_add(t, 20, record, &d); /* same time: after b */
    for (int i = 0; i < 4; i++) {
        assert_true(ids[i] > 0);
        for (int j = 0; j < i; j++)
            assert_true(ids[i] != ids[j]);
    }
    assert_int_equal(timers_next(t), 10);
    assert_int_equal(timers_run(t, 9), 0);
    assert_int_equal(timers_run(t, 15), 1);
    assert_string_equal(log.order, "a");
    assert_int_equal(timers_next(t), 20);
    assert_int_equal(timers_run(t, 100), 3);
    assert_string_equal(log.order, "abdc");
    assert_int_equal(timers_next(t), INT64_MAX);
    assert_int_equal(timers_run(t, 1000), 0);
    timers_free(t);
}

static void test_cancel(void **state)
{
    struct timers *t = timers_new();
    struct log log = {0};
    struct tag a = {&log, 'a'}, b = {&log, 'b'}, c = {&log, 'c'};
    uint64_t ia, ib, ic;
    (void)state;

    ia = timers_add(t, 10, record, &a);
    ib = timers_add(t, 20, record, &b);
    ic = timers_add(t, 30, record, &c);
    timers_cancel(t, ia);
    assert_int_equal(timers_next(t), 20);
    timers_cancel(t, ia);        /* twice */
    timers_cancel(t, 0);         /* never an id */
    timers_cancel(t, ic + 1000); /* unknown */
    assert_int_equal(timers_run(t, 20), 1);
    timers_cancel(t, ib);        /* already ran */
    assert_int_equal(timers_next(t), 30);
    assert_int_equal(timers_run(t, 30), 1);
    assert_string_equal(log.order, "bc");
    timers_free(t);
}

static void spawn_due(void *arg)
{
    struct tag *tag = arg;
    static struct tag x; /* outlives the call; one test uses it */

    record(arg);
    x.log = tag->log;
    x.c = 'x';
    timers_add(tag->log->t, tag->log->at, record, &x);
}

static void cancel_victim(void *arg)
{
    struct tag *tag = arg;

    record(arg);
    timers_cancel(tag->log->t, tag->log->victim);
}

static void test_callbacks_add_and_cancel(void **state)
{
    struct timers *t = timers_new();
    struct log log = {.t = t};
    struct tag s = {&log, 's'}, k = {&log, 'k'}, v = {&log, 'v'}, e = {&log, 'e'};
    (void)state;

    /* A timer added by a callback that is already due runs in the same call. */
    log.at = 5;
    timers_add(t, 10, spawn_due, &s);
    timers_add(t, 12, record, &e);
    assert_int_equal(timers_run(t, 20), 3);
    assert_string_equal(log.order, "sxe");

    /* One added for later waits. */
    log.at = 50;
    timers_add(t, 30, spawn_due, &s);
    assert_int_equal(timers_run(t, 40), 1);
    assert_int_equal(timers_next(t), 50);
    assert_int_equal(timers_run(t, 50), 1);
    assert_string_equal(log.order, "sxesx");

    /* A callback cancelling a due timer stops it from running. */
    timers_add(t, 60, cancel_victim, &k);
    log.victim = timers_add(t, 60, record, &v);
    timers_add(t, 61, record, &e);
    assert_int_equal(timers_run(t, 70), 2);
    assert_string_equal(log.order, "sxesxke");
    timers_free(t);
}

/* Each timer of the big test appends its time here. */
static struct {
    int64_t ran[20000];
    size_t n;
} sink;

static void record_time(void *arg)
{
    sink.ran[sink.n++] = *(const int64_t *)arg;
}

static void test_many_with_cancels(void **state)
{
    enum { N = 20000 };
    static uint64_t ids[N];
    static int64_t at[N];
    struct timers *t = timers_new();
    (void)state;

    assert_non_null(t);
    sink.n = 0;
    /* Distinct times in a scrambled order (7919 is prime to N). */
    for (int i = 0; i < N; i++) {
        at[i] = (int64_t)(((unsigned)i * 7919u) % N);
        ids[i] = timers_add(t, at[i], record_time, &at[i]);
        assert_true(ids[i] > 0);
    }
    for (int i = 0; i < N; i += 2)
        timers_cancel(t, ids[i]);
    /* Times 0..N/2-1 hold N/4 odd ones; the rest run in the second call. */
    assert_int_equal(timers_run(t, N / 2 - 1), N / 4);
    assert_int_equal(sink.n, N / 4);
    assert_int_equal(timers_run(t, N), N / 4);
    assert_int_equal(sink.n, N / 2);
    for (size_t i = 1; i < sink.n; i++)
        assert_true(sink.ran[i] > sink.ran[i - 1]);
    /* Exactly the odd-indexed timers ran: their times are i*7919 mod N
     * for odd i, which are exactly the odd numbers (N even, 7919 odd). */
    for (size_t i = 0; i < sink.n; i++)
        assert_true(sink.ran[i] % 2 == 1);
    assert_int_equal(timers_next(t), INT64_MAX);
    timers_free(t);
}

static void test_free_with_pending_runs_nothing(void **state)
{
    struct timers *t = timers_new();
    struct log log = {0};
    struct tag a = {&log, 'a'};
    (void)state;

    for (int i = 0; i < 100; i++)
        assert_true(timers_add(t, i, record, &a) > 0);
    timers_free(t);
    assert_int_equal(log.n, 0);
    timers_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_runs_in_time_order),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_callbacks_add_and_cancel),
        cmocka_unit_test(test_many_with_cancels),
        cmocka_unit_test(test_free_with_pending_runs_nothing),
    };
    return cmocka_run_group_tests_name("timers", tests, NULL, NULL);
}
