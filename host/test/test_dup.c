/* Copies that say when memory ran out: the flag is set on failure only and
 * never cleared, NULL in gives NULL out, bytes are copied exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dup.h"

static void test_dup_str(void **state)
{
    (void)state;
    bool oom = false;
    char src[] = "token-123";
    char *d = dup_str(src, &oom);

    assert_non_null(d);
    assert_ptr_not_equal(d, src);
    assert_string_equal(d, "token-123");
    assert_false(oom);
    assert_null(dup_str(NULL, &oom));       /* absent is not a failure */
    assert_false(oom);
    oom = true;                             /* an earlier failure stays told */
    char *e = dup_str("x", &oom);
    assert_non_null(e);
    assert_true(oom);
    free(d);
    free(e);
}

static void test_dup_mem(void **state)
{
    (void)state;
    static const char bytes[] = {'a', '\0', 'b', 'c'};
    char *d = dup_mem(bytes, sizeof bytes);

    assert_non_null(d);
    assert_memory_equal(d, bytes, sizeof bytes);
    assert_int_equal(d[sizeof bytes], '\0');
    free(d);
    d = dup_mem("abc", 0);
    assert_non_null(d);
    assert_string_equal(d, "");
    free(d);
    d = dup_mem("abcdef", 3);               /* a prefix, terminated */
    assert_string_equal(d, "abc");
    free(d);
    assert_null(dup_mem(NULL, 5));
}

/* The test's strdup stands in for libc's in this program, so running out of
 * memory can be made to happen on one chosen copy. */
static int fail_countdown;      /* fail the n-th strdup from now; 0: never */

char *strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d;

    if (fail_countdown > 0 && --fail_countdown == 0)
        return NULL;
    if ((d = malloc(n)) != NULL)
        memcpy(d, s, n);
    return d;
}

static void test_out_of_memory_sets_flag(void **state)
{
    (void)state;
    bool oom = false;
    char *a, *b, *c;

    fail_countdown = 2;                     /* the second of three copies fails */
    a = dup_str("server", &oom);
    b = dup_str("token-file", &oom);
    c = dup_str("token", &oom);             /* a later success does not clear it */
    fail_countdown = 0;
    assert_non_null(a);
    assert_null(b);
    assert_non_null(c);
    assert_true(oom);
    free(a);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dup_str),
        cmocka_unit_test(test_dup_mem),
        cmocka_unit_test(test_out_of_memory_sets_flag),
    };
    return cmocka_run_group_tests_name("dup", tests, NULL, NULL);
}
