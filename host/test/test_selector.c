/* Tests of the label selector syntax check: what the API server accepts
 * passes, what it refuses with 400 does not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "selector.h"

static void test_valid_selectors(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "", "   ", "envoy-router/enabled=true", "a==b", "a!=b", "a", "!a", "a=",
        "app.kubernetes.io/name in (web, api)", "tier notin (db)", "x in ()",
        "a=b,c!=d, e in (f,g) ,!h,i", "replicas>3", "n < 2", "a in (b,)", "example.com/a_b.c=X-1_y.z",
        "\ta = b\r\n",
    };
    char err[512];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (selector_check(ok[i], err, sizeof err) != 0)
            fail_msg("refused \"%s\": %s", ok[i], err);
}

static void test_invalid_selectors(void **state)
{
    (void)state;
    static const struct { const char *sel, *needle; } bad[] = {
        {"a=b=c", "expected ','"},
        {"a in b", "expected '('"},
        {"a in (b", "expected ',' or ')'"},
        {"a=b,", "expected a label key"},
        {",a", "expected a label key"},
        {"-bad-key=x", "invalid label key"},
        {"a=not a value", "expected ','"},
        {"a=-bad-", "invalid label value"},
        {"a in (b, -c)", "invalid label value"},
        {"a>b", "integer"},
        {"n < -2", "integer"},
        {"n<+2", "integer"},
        {"a is b", "expected an operator"},
        {"!a=b", "expected ','"},
        {"a=((", "expected ','"},
        {"UPPER/x=y", "invalid label key"},
        /* The API server's blanks are space, tab, CR and LF: \v and \f
         * are part of a word there, not between words. */
        {"a\v=b", "invalid label key"},
        {"a=b\f", "invalid label value"},
    };
    char err[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (selector_check(bad[i].sel, err, sizeof err) != -1)
            fail_msg("accepted \"%s\"", bad[i].sel);
        if (strstr(err, bad[i].needle) == NULL)
            fail_msg("\"%s\": '%s' lacks '%s'", bad[i].sel, err, bad[i].needle);
    }
    char huge[2048];
    memset(huge, 'a', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    assert_int_equal(selector_check(huge, err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_selectors),
        cmocka_unit_test(test_invalid_selectors),
    };
    return cmocka_run_group_tests_name("selector", tests, NULL, NULL);
}
