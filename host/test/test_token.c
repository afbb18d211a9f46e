/* Tests of token.c: fixed tokens, files re-read as they rotate (at most
 * once a second unless forced), bad files keeping the previous token. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tmpdir.h"
#include "token.h"

static int setup(void **state)
{
    *state = tmpdir_new("token-test-", "token");
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    tmpdir_free(*state);
    return 0;
}

/* Writes `content` and gives the file a distinct mtime (`stamp` seconds),
 * as a rotation by the kubelet (a new file swapped in) would. */
static void write_file(const char *path, const char *content, time_t stamp)
{
    FILE *f = fopen(path, "w");
    struct timespec ts[2] = { { stamp, 0 }, { stamp, 0 } };

    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void test_fixed_token(void **state)
{
    char err[256];
    struct token *t;

    (void)state;
    t = token_new(NULL, "static-123", 0, err, sizeof(err));
    assert_non_null(t);
    assert_string_equal(token_value(t), "static-123");
    assert_null(token_file(t));
    assert_int_equal(token_refresh(t, true, 5000), 0);
    assert_string_equal(token_value(t), "static-123");
    token_free(t);

    t = token_new(NULL, NULL, 0, err, sizeof(err));
    assert_non_null(t);
    assert_null(token_value(t));
    token_free(t);
    token_free(NULL);
}

static void test_file_wins_and_is_trimmed(void **state)
{
    struct tmpdir *d = *state;
    char err[256];
    struct token *t;

    write_file(d->file, "abc.def\r\n \t\n", 1000);
    t = token_new(d->file, "ignored", 0, err, sizeof(err));
    assert_non_null(t);
    assert_string_equal(token_value(t), "abc.def");
    assert_string_equal(token_file(t), d->file);
    token_free(t);
}

static void test_rotation_seen_once_a_second(void **state)
{
    struct tmpdir *d = *state;
    char err[256];
    struct token *t;

    write_file(d->file, "first\n", 1000);
    t = token_new(d->file, NULL, 0, err, sizeof(err));
    assert_non_null(t);
    write_file(d->file, "second-token\n", 2000);
    /* Looked at no sooner than a second after the last look... */
    assert_int_equal(token_refresh(t, false, TOKEN_CHECK_MS - 1), 0);
    assert_string_equal(token_value(t), "first");
    /* ...then the change is read. */
    assert_int_equal(token_refresh(t, false, TOKEN_CHECK_MS), 0);
    assert_string_equal(token_value(t), "second-token");
    /* Forced (after a 401): at once. */
    write_file(d->file, "third\n", 3000);
    assert_int_equal(token_refresh(t, false, TOKEN_CHECK_MS + 10), 0);
    assert_string_equal(token_value(t), "second-token");
    assert_int_equal(token_refresh(t, true, TOKEN_CHECK_MS + 20), 0);
    assert_string_equal(token_value(t), "third");
    token_free(t);
}

static void test_bad_files_keep_the_old_token(void **state)
{
    struct tmpdir *d = *state;
    char err[256], *big;
    struct token *t;

    write_file(d->file, "good\n", 1000);
    t = token_new(d->file, NULL, 0, err, sizeof(err));
    assert_non_null(t);

    write_file(d->file, "bad\001token\n", 2000);          /* a control character */
    assert_int_equal(token_refresh(t, true, 10), -EINVAL);
    assert_string_equal(token_value(t), "good");

    big = malloc(TOKEN_MAX + 2);
    assert_non_null(big);
    memset(big, 'x', TOKEN_MAX + 1);
    big[TOKEN_MAX + 1] = '\0';
    write_file(d->file, big, 3000);                      /* too large */
    free(big);
    assert_int_equal(token_refresh(t, true, 20), -EFBIG);
    assert_string_equal(token_value(t), "good");

    write_file(d->file, "", 3500);                       /* empty: mid-rotation */
    assert_int_equal(token_refresh(t, true, 25), -ENODATA);
    assert_string_equal(token_value(t), "good");
    write_file(d->file, " \n", 3600);                    /* white space only */
    assert_int_equal(token_refresh(t, true, 26), -ENODATA);
    assert_string_equal(token_value(t), "good");

    unlink(d->file);                                     /* gone */
    assert_int_equal(token_refresh(t, true, 30), -ENOENT);
    assert_string_equal(token_value(t), "good");
    token_free(t);
}

static void test_missing_file_is_an_error_at_start(void **state)
{
    struct tmpdir *d = *state;
    char err[256];

    assert_null(token_new(d->file, "fallback", 0, err, sizeof(err)));
    assert_non_null(strstr(err, "token file"));
    assert_non_null(strstr(err, "No such file"));
}

/* An empty token file at start is an error that names it, not a token of
 * nothing sent to the API server (which answers 401 with no hint why). */
static void test_empty_file_is_an_error_at_start(void **state)
{
    struct tmpdir *d = *state;
    char err[256];

    write_file(d->file, "\n", 1000);
    assert_null(token_new(d->file, NULL, 0, err, sizeof(err)));
    assert_non_null(strstr(err, d->file));
    assert_non_null(strstr(err, "empty"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_token),
        cmocka_unit_test_setup_teardown(test_file_wins_and_is_trimmed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_seen_once_a_second, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files_keep_the_old_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file_is_an_error_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file_is_an_error_at_start, setup, teardown),
    };
    return cmocka_run_group_tests_name("token", tests, NULL, NULL);
}
