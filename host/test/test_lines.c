/* Stream framing: however curl cuts the body, the same lines come out. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lines.h"

/* Collects lines as "<line>|" so an empty or merged line would show. */
struct sink {
    char text[8192];
    size_t len;
    int count;
    int stop_at;   /* return `stop_rc` on this line number (1-based); 0: never */
    int stop_rc;
};

static int collect(void *arg, const char *line, size_t len)
{
    struct sink *s = arg;

    assert_true(len > 0);
    assert_null(memchr(line, '\n', len));
    assert_true(s->len + len + 1 < sizeof s->text);
    memcpy(s->text + s->len, line, len);
    s->len += len;
    s->text[s->len++] = '|';
    s->text[s->len] = '\0';
    s->count++;
    return s->count == s->stop_at ? s->stop_rc : 0;
}

/* Several JSON-ish lines, CRLF endings, blank lines, and multi-byte UTF-8
 * (so some cuts fall inside a character). */
static const char stream[] =
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"p\\u00e9\"}}}\n"
    "\r\n"
    "\n"
    "second line\r\n"
    "third \xc3\xbc \xe2\x82\xac \xf0\x9f\x98\x80 multi-byte\n"
    "a\rb\n"
    "tail without newline";
static const char expected[] =
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"p\\u00e9\"}}}|"
    "second line|"
    "third \xc3\xbc \xe2\x82\xac \xf0\x9f\x98\x80 multi-byte|"
    "a\rb|";
#define TAIL_LEN (sizeof "tail without newline" - 1)

static void check_sink(const struct sink *s, struct lines *l)
{
    assert_string_equal(s->text, expected);
    assert_int_equal(s->count, 4);
    assert_int_equal(lines_pending(l), TAIL_LEN);
}

static void test_every_split_point(void **state)
{
    size_t n = sizeof stream - 1;
    (void)state;

    for (size_t i = 0; i <= n; i++) {
        struct lines *l = lines_new(128);
        struct sink s = {0};
        assert_non_null(l);
        assert_int_equal(lines_feed(l, stream, i, collect, &s), 0);
        assert_int_equal(lines_feed(l, stream + i, n - i, collect, &s), 0);
        check_sink(&s, l);
        lines_free(l);
    }
}

static void test_every_pair_of_split_points(void **state)
{
    size_t n = sizeof stream - 1;
    (void)state;

    for (size_t i = 0; i <= n; i++) {
        for (size_t j = i; j <= n; j++) {
            struct lines *l = lines_new(128);
            struct sink s = {0};
            assert_non_null(l);
            assert_int_equal(lines_feed(l, stream, i, collect, &s), 0);
            assert_int_equal(lines_feed(l, stream + i, j - i, collect, &s), 0);
            assert_int_equal(lines_feed(l, stream + j, n - j, collect, &s), 0);
            check_sink(&s, l);
            lines_free(l);
        }
    }
}

static void test_one_byte_chunks(void **state)
{
    struct lines *l = lines_new(128);
    struct sink s = {0};
    (void)state;

    assert_non_null(l);
    for (size_t i = 0; i < sizeof stream - 1; i++)
        assert_int_equal(lines_feed(l, stream + i, 1, collect, &s), 0);
    check_sink(&s, l);
    /* The tail becomes a line once its newline arrives. */
    assert_int_equal(lines_feed(l, "\n", 1, collect, &s), 0);
    assert_int_equal(s.count, 5);
    assert_string_equal(s.text + strlen(expected), "tail without newline|");
    assert_int_equal(lines_pending(l), 0);
    lines_free(l);
}

static void test_crlf_and_blank_lines(void **state)
{
    struct lines *l = lines_new(16);
    struct sink s = {0};
    (void)state;

    assert_int_equal(lines_feed(l, "a\r\n\r\n\n\r\nb\r", 10, collect, &s), 0);
    assert_string_equal(s.text, "a|");
    assert_int_equal(lines_pending(l), 2); /* "b\r" */
    assert_int_equal(lines_feed(l, "\n", 1, collect, &s), 0);
    assert_string_equal(s.text, "a|b|");
    lines_free(l);
}

static void test_max_line_exactly(void **state)
{
    struct lines *l = lines_new(8);
    struct sink s = {0};
    (void)state;

    /* 8 bytes fit, with or without a CR, in one piece or cut before the LF. */
    assert_int_equal(lines_feed(l, "12345678\n", 9, collect, &s), 0);
    assert_int_equal(lines_feed(l, "abcdefgh\r\n", 10, collect, &s), 0);
    assert_int_equal(lines_feed(l, "ABCDEFGH\r", 9, collect, &s), 0);
    assert_int_equal(lines_pending(l), 9);
    assert_int_equal(lines_feed(l, "\n", 1, collect, &s), 0);
    assert_string_equal(s.text, "12345678|abcdefgh|ABCDEFGH|");
    lines_free(l);
}

static void test_too_long_then_recovers(void **state)
{
    struct lines *l = lines_new(8);
    struct sink s = {0};
    (void)state;

    /* Complete in one chunk. */
    assert_int_equal(lines_feed(l, "ok\n123456789\nlost\n", 18, collect, &s), -E2BIG);
    assert_string_equal(s.text, "ok|");
    assert_int_equal(lines_pending(l), 0);
    assert_int_equal(lines_feed(l, "fine\n", 5, collect, &s), 0);
    assert_string_equal(s.text, "ok|fine|");

    /* Growing across chunks: refused as soon as it is too long, before its
     * newline arrives, so memory stays bounded. */
    assert_int_equal(lines_feed(l, "12345", 5, collect, &s), 0);
    assert_int_equal(lines_feed(l, "6789", 4, collect, &s), -E2BIG);
    assert_int_equal(lines_pending(l), 0);
    assert_int_equal(lines_feed(l, "x\n", 2, collect, &s), 0);
    assert_string_equal(s.text, "ok|fine|x|");

    /* One byte over, and the byte is not a CR. */
    assert_int_equal(lines_feed(l, "12345678", 8, collect, &s), 0);
    assert_int_equal(lines_feed(l, "9", 1, collect, &s), -E2BIG);
    /* A CR beyond the limit that is not followed by LF. */
    assert_int_equal(lines_feed(l, "12345678\r", 9, collect, &s), 0);
    assert_int_equal(lines_feed(l, "x", 1, collect, &s), -E2BIG);
    /* Joined from the held part and the new chunk. */
    assert_int_equal(lines_feed(l, "1234", 4, collect, &s), 0);
    assert_int_equal(lines_feed(l, "56789\n", 6, collect, &s), -E2BIG);
    assert_int_equal(lines_feed(l, "y\n", 2, collect, &s), 0);
    assert_string_equal(s.text, "ok|fine|x|y|");
    lines_free(l);
}

static void test_callback_stops(void **state)
{
    struct lines *l = lines_new(32);
    struct sink s = {.stop_at = 2, .stop_rc = 7};
    (void)state;

    assert_int_equal(lines_feed(l, "a\nb\nc\nd", 7, collect, &s), 7);
    assert_string_equal(s.text, "a|b|");
    assert_int_equal(lines_pending(l), 3); /* "c\nd" kept unread */

    /* Stopping again while the held lines are read: the new bytes are kept
     * behind them. */
    s.stop_at = 3;
    s.stop_rc = -5;
    assert_int_equal(lines_feed(l, "e\n", 2, collect, &s), -5);
    assert_string_equal(s.text, "a|b|c|");
    assert_int_equal(lines_pending(l), 3); /* "d" then "e\n" */

    s.stop_at = 0;
    assert_int_equal(lines_feed(l, NULL, 0, collect, &s), 0);
    assert_string_equal(s.text, "a|b|c|de|");
    assert_int_equal(lines_pending(l), 0);
    assert_int_equal(lines_feed(l, "f\n", 2, collect, &s), 0);
    assert_string_equal(s.text, "a|b|c|de|f|");
    lines_free(l);
}

static void test_stop_on_last_line_keeps_nothing(void **state)
{
    struct lines *l = lines_new(32);
    struct sink s = {.stop_at = 1, .stop_rc = 1};
    (void)state;

    assert_int_equal(lines_feed(l, "only\n", 5, collect, &s), 1);
    assert_int_equal(lines_pending(l), 0);
    assert_int_equal(lines_feed(l, "next\n", 5, collect, &s), 0);
    assert_string_equal(s.text, "only|next|");
    lines_free(l);
}

static void test_reset_drops_partial_line(void **state)
{
    struct lines *l = lines_new(32);
    struct sink s = {0};
    (void)state;

    assert_int_equal(lines_feed(l, "{\"type\":\"MOD", 12, collect, &s), 0);
    assert_int_equal(lines_pending(l), 12);
    lines_reset(l);
    assert_int_equal(lines_pending(l), 0);
    assert_int_equal(lines_feed(l, "{}\n", 3, collect, &s), 0);
    assert_string_equal(s.text, "{}|");
    lines_free(l);
    lines_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_split_point),
        cmocka_unit_test(test_every_pair_of_split_points),
        cmocka_unit_test(test_one_byte_chunks),
        cmocka_unit_test(test_crlf_and_blank_lines),
        cmocka_unit_test(test_max_line_exactly),
        cmocka_unit_test(test_too_long_then_recovers),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_stop_on_last_line_keeps_nothing),
        cmocka_unit_test(test_reset_drops_partial_line),
    };
    return cmocka_run_group_tests_name("lines", tests, NULL, NULL);
}
