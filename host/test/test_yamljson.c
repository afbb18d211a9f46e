/* Tests of yamljson: pod files in YAML become the JSON the host reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "yamljson.h"

static void expect(const char *yaml, const char *json)
{
    char err[256];
    size_t len;
    char *out = yamljson_convert(yaml, strlen(yaml), &len, err, sizeof err);
    if (out == NULL)
        fail_msg("convert: %s", err);
    assert_string_equal(out, json);
    assert_int_equal(len, strlen(json));
    free(out);
}

static void test_scalars_follow_the_core_schema(void **state)
{
    (void)state;
    expect("a: 1\nb: -2.5\nc: true\nd: ~\ne: \"8080\"\nf: hello world\ng: 'no'\nh: null\n",
           "{\"a\":1,\"b\":-2.5,\"c\":true,\"d\":null,\"e\":\"8080\",\"f\":\"hello world\","
           "\"g\":\"no\",\"h\":null}");
}

static void test_nesting_and_lists(void **state)
{
    (void)state;
    expect("metadata:\n  name: p\n  labels: {envoy-router/enabled: \"true\"}\n"
           "status:\n  podIPs:\n  - ip: 10.0.0.1\n  - ip: fd00::1\n  conditions: []\n",
           "{\"metadata\":{\"name\":\"p\",\"labels\":{\"envoy-router/enabled\":\"true\"}},"
           "\"status\":{\"podIPs\":[{\"ip\":\"10.0.0.1\"},{\"ip\":\"fd00::1\"}],\"conditions\":[]}}");
}

static void test_escapes(void **state)
{
    (void)state;
    expect("m: \"say \\\"hi\\\"\\n\\\\\"\n", "{\"m\":\"say \\\"hi\\\"\\n\\\\\"}");
}

static void test_json_passes_through(void **state)
{
    (void)state;
    expect("  {\"a\": [1, 2]}", "  {\"a\": [1, 2]}");
}

static void test_errors_name_the_line(void **state)
{
    (void)state;
    char err[256];
    size_t len;
    const char *bad = "a: 1\nb: [unclosed\n";
    assert_null(yamljson_convert(bad, strlen(bad), &len, err, sizeof err));
    assert_non_null(strstr(err, "line "));
    const char *alias = "a: &x 1\nb: *x\n";
    assert_null(yamljson_convert(alias, strlen(alias), &len, err, sizeof err));
    assert_non_null(strstr(err, "aliases"));
    assert_null(yamljson_convert("", 0, &len, err, sizeof err));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars_follow_the_core_schema),
        cmocka_unit_test(test_nesting_and_lists),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_json_passes_through),
        cmocka_unit_test(test_errors_name_the_line),
    };
    return cmocka_run_group_tests_name("yamljson", tests, NULL, NULL);
}
