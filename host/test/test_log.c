/* Log lines as an operator's log pipeline would read them. Output goes to
 * an in-memory stream through log_set_output. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"

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
    if (c->f == NULL) {
        free(c);
        return -1;
    }
    log_setup(LOG_INFO, false);
    log_set_output(c->f);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct capture *c = *state;

    log_set_output(NULL);
    log_setup(LOG_INFO, false);
    fclose(c->f);
    free(c->buf);
    free(c);
    return 0;
}

/* The captured text so far. */
static const char *text(struct capture *c)
{
    fflush(c->f);
    return c->buf;
}

/* Checks that `line` starts with a logfmt RFC 3339 UTC time with
 * milliseconds, and returns what follows it. */
static const char *after_time(const char *line, bool json)
{
    const char *prefix = json ? "{\"time\":\"" : "time=";
    const char *t;
    size_t n = strlen(prefix);

    assert_memory_equal(line, prefix, n);
    t = line + n;
    /* 2025-11-26T09:47:00.123Z */
    for (int i = 0; i < 24; i++) {
        static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
        if (shape[i] == 'd')
            assert_true(t[i] >= '0' && t[i] <= '9');
        else
            assert_int_equal(t[i], shape[i]);
    }
    t += 24;
    if (json) {
        assert_memory_equal(t, "\",", 2);
        return t + 2;
    }
    assert_int_equal(*t, ' ');
    return t + 1;
}

static void test_level_parse(void **state)
{
    enum log_level l = LOG_ERROR;
    (void)state;

    assert_int_equal(log_level_parse("debug", &l), 0);
    assert_int_equal(l, LOG_DEBUG);
    assert_int_equal(log_level_parse("info", &l), 0);
    assert_int_equal(l, LOG_INFO);
    assert_int_equal(log_level_parse("warning", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_level_parse("warn", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_level_parse("error", &l), 0);
    assert_int_equal(l, LOG_ERROR);
    assert_int_equal(log_level_parse("INFO", &l), -1);
    assert_int_equal(log_level_parse("", &l), -1);
    assert_int_equal(log_level_parse(NULL, &l), -1);
    assert_int_equal(l, LOG_ERROR); /* untouched by the failures */
}

static void test_logfmt_pairs(void **state)
{
    struct capture *c = *state;

    log_kv(LOG_INFO, "pod reconciled", "pod", "ns/name", "writes", "2", NULL);
    assert_string_equal(after_time(text(c), false),
                        "level=info msg=\"pod reconciled\" pod=ns/name writes=2\n");
}

static void test_logfmt_escaping(void **state)
{
    struct capture *c = *state;

    log_kv(LOG_WARN, "started", "empty", "", "null", NULL, "space", "a b", "quote", "say \"hi\"",
           "eq", "a=b", "nl", "line1\nline2\ttab\r", "ctl", "x\x01y", "bs", "C:\\dir",
           "utf8", "caf\xc3\xa9", "bad", "a\xff" "b", "bad key=", "v", NULL);
    assert_string_equal(after_time(text(c), false),
                        "level=warn msg=started empty=\"\" null=\"\" space=\"a b\" "
                        "quote=\"say \\\"hi\\\"\" eq=\"a=b\" "
                        "nl=\"line1\\nline2\\ttab\\r\" ctl=\"x\\u0001y\" bs=C:\\dir "
                        "utf8=caf\xc3\xa9 bad=\"a\xef\xbf\xbd" "b\" bad_key_=v\n");
}

static void test_json(void **state)
{
    struct capture *c = *state;

    log_setup(LOG_DEBUG, true);
    log_kv(LOG_DEBUG, "script \"router\" failed\n", "pod", "ns/p", "trace",
           "a\\b\x1f", "bad", "\xc0\xaf", NULL);
    assert_string_equal(after_time(text(c), true),
                        "\"level\":\"debug\",\"msg\":\"script \\\"router\\\" failed\\n\","
                        "\"pod\":\"ns/p\",\"trace\":\"a\\\\b\\u001f\","
                        "\"bad\":\"\xef\xbf\xbd\xef\xbf\xbd\"}\n");
}

static void test_printf(void **state)
{
    struct capture *c = *state;

    log_error("kube: PATCH %s: HTTP %ld: %s", "/api/v1/x", 409L, "Conflict");
    assert_string_equal(after_time(text(c), false),
                        "level=error msg=\"kube: PATCH /api/v1/x: HTTP 409: Conflict\"\n");
}

static void test_level_filter(void **state)
{
    struct capture *c = *state;

    log_setup(LOG_WARN, false);
    assert_false(log_enabled(LOG_INFO));
    assert_true(log_enabled(LOG_WARN));
    assert_true(log_enabled(LOG_ERROR));
    log_info("hidden");
    log_debug("hidden");
    log_kv(LOG_INFO, "hidden", "k", "v", NULL);
    assert_true(text(c) == NULL || strcmp(text(c), "") == 0);
    log_warn("shown");
    assert_string_equal(after_time(text(c), false), "level=warn msg=shown\n");
}

struct writer {
    int id;
};

static void *write_many(void *arg)
{
    struct writer *w = arg;
    char id[16], n[16];

    snprintf(id, sizeof id, "%d", w->id);
    for (int i = 0; i < 500; i++) {
        snprintf(n, sizeof n, "%d", i);
        log_kv(LOG_INFO, "from a thread with a longish message to widen the window",
               "thread", id, "n", n, "pad", "0123456789012345678901234567890123456789", NULL);
    }
    return NULL;
}

static void test_threads_never_interleave(void **state)
{
    struct capture *c = *state;
    pthread_t th[4];
    struct writer w[4];
    int lines = 0;
    const char *p;

    for (int i = 0; i < 4; i++) {
        w[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, write_many, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    p = text(c);
    while (*p) {
        const char *end = strchr(p, '\n');
        const char *rest;
        assert_non_null(end);
        rest = after_time(p, false);
        assert_memory_equal(rest, "level=info msg=\"from a thread", 29);
        assert_memory_equal(end - 45, " pad=0123456789012345678901234567890123456789", 45);
        lines++;
        p = end + 1;
    }
    assert_int_equal(lines, 2000);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_level_parse),
        T(test_logfmt_pairs),
        T(test_logfmt_escaping),
        T(test_json),
        T(test_printf),
        T(test_level_filter),
        T(test_threads_never_interleave),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
