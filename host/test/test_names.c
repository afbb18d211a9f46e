/* Name rules: each case is a name a pod, script or user could produce, and
 * what Kubernetes would say about it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "names.h"

struct name_case {
    const char *name;
    bool ok;
};

/* Builds a string of `n` copies of c followed by `tail` in buf. */
static const char *repeat(char *buf, size_t n, char c, const char *tail)
{
    memset(buf, c, n);
    strcpy(buf + n, tail);
    return buf;
}

static void test_dns1035_label(void **state)
{
    static const struct name_case cases[] = {
        {"web", true}, {"a", true}, {"pod-1", true}, {"a-b-c9", true},
        {"", false}, {"1pod", false}, {"-pod", false}, {"pod-", false},
        {"Pod", false}, {"po_d", false}, {"pod.name", false}, {"pod name", false},
        {"p\xc3\xa9", false},
    };
    char buf[80];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (names_dns1035_label(cases[i].name) != cases[i].ok)
            fail_msg("names_dns1035_label(\"%s\") should be %d", cases[i].name, cases[i].ok);
    }
    assert_true(names_dns1035_label(repeat(buf, 63, 'a', "")));
    assert_false(names_dns1035_label(repeat(buf, 64, 'a', "")));
    assert_false(names_dns1035_label(NULL));
}

static void test_dns1123_label(void **state)
{
    static const struct name_case cases[] = {
        {"web", true}, {"1pod", true}, {"0", true}, {"kube-system", true},
        {"", false}, {"-a", false}, {"a-", false}, {"A", false}, {"a.b", false},
        {"a_b", false},
    };
    char buf[80];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (names_dns1123_label(cases[i].name) != cases[i].ok)
            fail_msg("names_dns1123_label(\"%s\") should be %d", cases[i].name, cases[i].ok);
    }
    assert_true(names_dns1123_label(repeat(buf, 62, '9', "z")));
    assert_false(names_dns1123_label(repeat(buf, 63, '9', "z")));
    assert_false(names_dns1123_label(NULL));
}

static void test_dns1123_subdomain(void **state)
{
    static const struct name_case cases[] = {
        {"web", true}, {"pod.v1", true}, {"1.2.3", true}, {"a-b.c-d", true},
        {"notebook-7f9c4.user", true},
        {"", false}, {".a", false}, {"a.", false}, {"a..b", false}, {"a.-b", false},
        {"a-.b", false}, {"A.b", false}, {"a_b.c", false}, {"a/b", false},
    };
    char buf[300];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (names_dns1123_subdomain(cases[i].name) != cases[i].ok)
            fail_msg("names_dns1123_subdomain(\"%s\") should be %d", cases[i].name,
                     cases[i].ok);
    }
    /* Only the total length is bounded, as in Kubernetes. */
    assert_true(names_dns1123_subdomain(repeat(buf, 253, 'a', "")));
    assert_false(names_dns1123_subdomain(repeat(buf, 254, 'a', "")));
    assert_true(names_dns1123_subdomain(repeat(buf, 100, 'a', ".b")));
    assert_false(names_dns1123_subdomain(repeat(buf, 252, 'a', ".")));
    assert_false(names_dns1123_subdomain(NULL));
}

static void test_label_value(void **state)
{
    static const struct name_case cases[] = {
        {"", true}, {"true", true}, {"v1.2_3-x", true}, {"A", true}, {"9", true},
        {"-a", false}, {"a-", false}, {".a", false}, {"a_", false}, {"a b", false},
        {"a/b", false}, {"a:b", false},
    };
    char buf[80];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (names_label_value(cases[i].name) != cases[i].ok)
            fail_msg("names_label_value(\"%s\") should be %d", cases[i].name, cases[i].ok);
    }
    assert_true(names_label_value(repeat(buf, 63, 'x', "")));
    assert_false(names_label_value(repeat(buf, 64, 'x', "")));
    assert_false(names_label_value(NULL));
}

static void test_label_key(void **state)
{
    static const struct name_case cases[] = {
        {"app", true}, {"envoy-router/enabled", true}, {"app.kubernetes.io/managed-by", true},
        {"kubernetes.io/service-name", true}, {"Team_Name", true}, {"a/b.c", true},
        {"", false}, {"/a", false}, {"a/", false}, {"a/b/c", false}, {"A.io/x", false},
        {"-x", false}, {"x_", false}, {"a b", false}, {"a..b/x", false},
    };
    char buf[400];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (names_label_key(cases[i].name) != cases[i].ok)
            fail_msg("names_label_key(\"%s\") should be %d", cases[i].name, cases[i].ok);
    }
    assert_true(names_label_key(repeat(buf, 63, 'k', "")));
    assert_false(names_label_key(repeat(buf, 64, 'k', "")));
    assert_true(names_label_key(repeat(buf, 253, 'p', "/name")));
    assert_false(names_label_key(repeat(buf, 254, 'p', "/name")));
    assert_false(names_label_key(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dns1035_label),
        cmocka_unit_test(test_dns1123_label),
        cmocka_unit_test(test_dns1123_subdomain),
        cmocka_unit_test(test_label_value),
        cmocka_unit_test(test_label_key),
    };
    return cmocka_run_group_tests_name("names", tests, NULL, NULL);
}
