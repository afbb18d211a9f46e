/* Tests of the script sandbox: what scripts may and may not do. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>

#include "config.h"
#include "log.h"
#include "sandbox.h"

static struct config cfg = {
    .gateway_name = "gw", .gateway_namespace = "", .service_port = 80, .pod_port = 8080,
    .headless = true,
};

static char dir[256];

/* Writes router.lua (and optionally another module) into a fresh dir. */
static const char *scripts(const char *router, const char *modname, const char *mod)
{
    snprintf(dir, sizeof dir, "/tmp/er-sandbox-%d-XXXXXX", (int)getpid());
    assert_non_null(mkdtemp(dir));
    char path[512];
    snprintf(path, sizeof path, "%s/router.lua", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(router, f);
    fclose(f);
    if (modname) {
        snprintf(path, sizeof path, "%s/%s", dir, modname);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(mod, f);
        fclose(f);
    }
    return dir;
}

#define ROUTER(body) \
    "return { selector = 'a=b', children = function(pod, config) " body " end }"

/* Calls children() on a small pod; returns the sandbox result code. */
static int call(struct sandbox *sb, char *msg, size_t len)
{
    lua_State *L = luaL_newstate();
    lua_newtable(L);
    lua_newtable(L);
    lua_pushstring(L, "p1");
    lua_setfield(L, -2, "name");
    lua_setfield(L, -2, "metadata");
    int rc = sandbox_children(sb, L, 1, msg, len);
    if (rc == 1) {
        assert_true(lua_istable(L, -1));
    }
    lua_close(L);
    return rc;
}

static void test_builtin_scripts_load(void **state)
{
    (void)state;
    char err[1024];
    struct sandbox *sb = sandbox_new(NULL, &cfg, NULL, err, sizeof err);
    assert_non_null(sb);
    assert_string_equal(sandbox_selector(sb), "envoy-router/enabled=true");
    assert_string_equal(sandbox_origin(sb), "built-in");
    sandbox_free(sb);
}

static void expect_denied(const char *body, const char *needle)
{
    char err[4096], msg[4096];
    struct sandbox *sb = sandbox_new(scripts(body, NULL, NULL), &cfg, NULL, err, sizeof err);
    assert_non_null(sb);
    assert_int_equal(call(sb, msg, sizeof msg), -1);
    if (strstr(msg, needle) == NULL)
        fail_msg("error '%s' lacks '%s'", msg, needle);
    sandbox_free(sb);
}

static void test_io_os_load_debug_denied(void **state)
{
    (void)state;
    expect_denied(ROUTER("return io.open('/etc/passwd')"), "io");
    expect_denied(ROUTER("return os.getenv('HOME')"), "os");
    expect_denied(ROUTER("return load('return 1')()"), "load");
    expect_denied(ROUTER("return debug.getinfo(1)"), "debug");
    expect_denied(ROUTER("return dofile('/etc/passwd')"), "dofile");
    expect_denied(ROUTER("return package.loaded"), "package");
    expect_denied(ROUTER("return math.random()"), "random");
    expect_denied(ROUTER("return require('../../etc/passwd')"), "invalid module name");
    expect_denied(ROUTER("return require('host.core')"), "not found");
}

static void test_binary_chunk_refused(void **state)
{
    (void)state;
    char err[4096];
    /* A precompiled chunk starts with ESC "Lua". */
    const char *d = scripts("\x1bLua\x54\x00 garbage", NULL, NULL);
    assert_null(sandbox_new(d, &cfg, NULL, err, sizeof err));
    assert_non_null(strstr(err, "binary"));
}

static void test_endless_loop_stopped(void **state)
{
    (void)state;
    char err[4096], msg[4096];
    /* pcall inside the script must not swallow the stop. */
    struct sandbox_limits lim = {.instructions = 1000000};
    struct sandbox *sb = sandbox_new(
        scripts(ROUTER("while true do pcall(function() while true do end end) end"), NULL, NULL),
        &cfg, &lim, err, sizeof err);
    assert_non_null(sb);
    assert_int_equal(call(sb, msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "instruction budget"));
    /* The VM is still usable afterwards. */
    assert_int_equal(call(sb, msg, sizeof msg), -1);
    sandbox_free(sb);
}

static void test_memory_cap_holds(void **state)
{
    (void)state;
    char err[4096], msg[4096];
    struct sandbox_limits lim = {.memory_bytes = 8u << 20};
    struct sandbox *sb = sandbox_new(
        scripts(ROUTER("local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1024) .. i end"),
                NULL, NULL),
        &cfg, &lim, err, sizeof err);
    assert_non_null(sb);
    assert_int_equal(call(sb, msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "memory"));
    assert_true(sandbox_memory(sb) <= lim.memory_bytes);
    sandbox_free(sb);
}

static void test_syntax_error_names_file_and_line(void **state)
{
    (void)state;
    char err[4096];
    const char *d = scripts("return {\n selector = 'a=b',\n children = function( end }", NULL, NULL);
    assert_null(sandbox_new(d, &cfg, NULL, err, sizeof err));
    assert_non_null(strstr(err, "router.lua:3:"));
}

static void test_shape_checked(void **state)
{
    (void)state;
    char err[4096];
    assert_null(sandbox_new(scripts("return { children = function() end }", NULL, NULL), &cfg,
                            NULL, err, sizeof err));
    assert_non_null(strstr(err, "selector"));
    assert_null(sandbox_new(scripts("return { selector = 'a=b' }", NULL, NULL), &cfg, NULL,
                            err, sizeof err));
    assert_non_null(strstr(err, "children"));
}

static void test_require_flat_and_builtin_fallback(void **state)
{
    (void)state;
    char err[4096], msg[4096];
    /* templates.x comes from the flat file "templates.x.lua" (ConfigMap
     * style); lib.names falls back to the built-in module. */
    const char *d = scripts(ROUTER("local x = require('templates.x') "
                                   "local names = require('lib.names') "
                                   "assert(type(names) == 'table') "
                                   "return {}, x"),
                            "templates.x.lua", "return 'flat'");
    struct sandbox *sb = sandbox_new(d, &cfg, NULL, err, sizeof err);
    assert_non_null(sb);
    assert_int_equal(call(sb, msg, sizeof msg), 1);
    sandbox_free(sb);
}

static void test_not_for_us_and_bad_result(void **state)
{
    (void)state;
    char err[4096], msg[4096];
    struct sandbox *sb = sandbox_new(scripts(ROUTER("return nil, 'no IP yet'"), NULL, NULL), &cfg,
                                     NULL, err, sizeof err);
    assert_non_null(sb);
    assert_int_equal(call(sb, msg, sizeof msg), 0);
    assert_string_equal(msg, "no IP yet");
    sandbox_free(sb);
    sb = sandbox_new(scripts(ROUTER("return 42"), NULL, NULL), &cfg, NULL, err, sizeof err);
    assert_non_null(sb);
    assert_int_equal(call(sb, msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "returned a number"));
    sandbox_free(sb);
}

static void test_config_reaches_scripts_fresh_each_call(void **state)
{
    (void)state;
    char err[4096], msg[4096];
    struct sandbox *sb = sandbox_new(
        scripts(ROUTER("assert(config.gatewayName == 'gw', 'gw') "
                       "assert(math.type(config.servicePort) == 'integer' and config.servicePort == 80) "
                       "assert(config.podPort == 8080 and config.headless == true) "
                       "assert(config.seen == nil, 'config leaked between calls') "
                       "config.seen = true return {}"),
                NULL, NULL),
        &cfg, NULL, err, sizeof err);
    assert_non_null(sb);
    assert_int_equal(call(sb, msg, sizeof msg), 1);
    assert_int_equal(call(sb, msg, sizeof msg), 1);
    sandbox_free(sb);
}

/* CPU seconds of this process: what a runaway script costs, whatever the
 * load of the machine (wall time on a busy CI box says little). */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A finalizer would run with no budget at lua_close or at a collection
 * outside a call: the sandbox refuses to set one, at load and in calls. */
static void test_finalizers_refused(void **state)
{
    (void)state;
    char err[4096];
#define HANG "setmetatable({}, {__gc = function() while true do end end}) "
    assert_null(sandbox_new(scripts(HANG "return { selector = 'a=b', children = function() end }",
                                    NULL, NULL), &cfg, NULL, err, sizeof err));
    assert_non_null(strstr(err, "__gc"));
    expect_denied(ROUTER(HANG "return {}"), "__gc");
    /* A metatable borrowed from the strings carries no way around it. */
    expect_denied(ROUTER("local mt = getmetatable('') mt.__gc = function() while true do end end "
                         "setmetatable({}, mt) return {}"), "__gc");
}

/* C functions run between hook ticks: each of these looped for minutes or
 * for ever before they were bounded. Each must stop within seconds. */
static void test_c_functions_bounded(void **state)
{
    (void)state;
    static const struct { const char *body, *needle; } cases[] = {
        {"return {string.find(string.rep('a', 3000), '(.-)(.-)(.-)(.-)b')}", "pattern"},
        {"for w in string.gmatch(string.rep('a', 3000), 'a*a*a*a*b') do end return {}", "pattern"},
        {"return {(string.gsub(string.rep('a', 3000), '.-.-.-.-b', ''))}", "pattern"},
        {"return {string.rep('', math.maxinteger)}", "budget"},
        {"table.move({}, 1, math.maxinteger - 1, 2) return {}", "budget"},
        {"local t = setmetatable({}, {__len = function() return math.maxinteger end}) "
         "table.remove(t, 1) return {}", "budget"},
        {"local t = setmetatable({}, {__len = function() return math.maxinteger - 1 end}) "
         "table.insert(t, 1, 'x') return {}", "budget"},
        {"local t = setmetatable({}, {__len = function() return 1 << 30 end, __index = tostring}) "
         "table.sort(t) return {}", "budget"},
        {"local x = 0 while true do x = x + 1 end", "CPU time"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[4096], msg[4096];
        /* A huge instruction budget, so the CPU-time limit is what stops
         * the last case. */
        struct sandbox_limits lim = {.cpu_ms = 1000};
        if (strcmp(cases[i].needle, "CPU time") == 0)
            lim.instructions = UINT64_MAX / 2;
        char body[1024];
        snprintf(body, sizeof body, "return { selector = 'a=b', children = function(pod, config) "
                 "%s end }", cases[i].body);
        struct sandbox *sb = sandbox_new(scripts(body, NULL, NULL), &cfg, &lim, err, sizeof err);
        assert_non_null(sb);
        double t0 = now_s();
        int rc = call(sb, msg, sizeof msg);
        double took = now_s() - t0;
        sandbox_free(sb);
        if (rc != -1 || strstr(msg, cases[i].needle) == NULL || took > 5.0)
            fail_msg("case %zu (%s): rc %d after %.1f CPU s: %s", i, cases[i].body, rc, took,
                     msg);
    }
}

/* Legitimate patterns on names and annotations still work. */
static void test_ordinary_patterns_allowed(void **state)
{
    (void)state;
    char err[4096], msg[4096];
    struct sandbox *sb = sandbox_new(
        scripts(ROUTER("local s = string.rep('a', 2000) .. '.b' "
                       "assert(s:match('^(.-)%.(.*)$') == string.rep('a', 2000)) "
                       "assert(('My_Pod.x'):gsub('[^%w%-]', '-') == 'My-Pod-x') "
                       "assert(string.find(s, '.b', 1, true) == 2001) "
                       "local n = 0 for w in s:gmatch('%a+') do n = n + 1 end assert(n == 2) "
                       "local t = {} for i = 1, 1000 do table.insert(t, 1, i) end "
                       "table.sort(t) assert(table.concat(t, ','):sub(1, 5) == '1,2,3') "
                       "return {}"), NULL, NULL),
        &cfg, NULL, err, sizeof err);
    assert_non_null(sb);
    if (call(sb, msg, sizeof msg) != 1)
        fail_msg("%s", msg);
    sandbox_free(sb);
}

/* Output that nests a table in itself twice per step is tiny in the
 * sandbox and 2^40 nodes once copied: the copy is bounded. */
static void test_output_copy_bounded(void **state)
{
    (void)state;
    char err[4096], msg[4096];
    struct sandbox *sb = sandbox_new(
        scripts(ROUTER("local t = {} for i = 1, 40 do t = {t, t} end return {t}"), NULL, NULL),
        &cfg, NULL, err, sizeof err);
    assert_non_null(sb);
    double t0 = now_s();
    assert_int_equal(call(sb, msg, sizeof msg), -1);
    assert_true(now_s() - t0 < 5.0);
    assert_non_null(strstr(msg, "too large"));
    sandbox_free(sb);
}

/* host.log is rate-limited: a script logging on every call cannot flood
 * the operator's log; what is dropped is counted and said once. */
static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_host_log_throttled(void **state)
{
    (void)state;
    char err[4096], msg[4096];
    FILE *out = tmpfile();
    assert_non_null(out);
    log_set_output(out);
    struct sandbox *sb = sandbox_new(
        scripts(ROUTER("for i = 1, 1000 do host.log('info', 'line ' .. i) end return {}"),
                NULL, NULL),
        &cfg, NULL, err, sizeof err);
    assert_non_null(sb);
    double t0 = wall_s();
    int rc1 = call(sb, msg, sizeof msg);
    usleep(300 * 1000);             /* a few tokens come back */
    int rc2 = call(sb, msg, sizeof msg);
    double took = wall_s() - t0;
    sandbox_free(sb);
    log_set_output(stderr);
    assert_int_equal(rc1, 1);
    assert_int_equal(rc2, 1);
    rewind(out);
    char line[1024];
    int script_lines = 0, dropped_notes = 0;
    while (fgets(line, sizeof line, out)) {
        script_lines += strstr(line, "source=script") != NULL;
        dropped_notes += strstr(line, "host.log lines dropped") != NULL;
    }
    fclose(out);
    /* The burst, then 10 lines a second for as long as it ran (slow under
     * valgrind), and a note for the dropped ones. */
    int most = 50 + (int)(took * 10.0) + 2;
    if (script_lines < 50 || script_lines > most)
        fail_msg("%d script lines logged out of 2000 in %.1f s (at most %d)", script_lines,
                 took, most);
    assert_true(dropped_notes >= 1);
}

/* Pod annotations reach scripts only when router.lua asks for them
 * (pod_annotations = true); otherwise reading them is an error that says
 * what to declare, and other metadata reads as before. */
static void test_annotations_only_when_declared(void **state)
{
    (void)state;
    char err[4096], msg[4096];
    const char *reads = "local _ = pod.metadata.annotations return {} end }";
    char router[512];
    snprintf(router, sizeof router, "return { selector = 'a=b', children = function(pod) %s", reads);
    struct sandbox *sb = sandbox_new(scripts(router, NULL, NULL), &cfg, NULL, err, sizeof err);
    assert_non_null(sb);
    assert_false(sandbox_wants_annotations(sb));
    assert_int_equal(call(sb, msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "pod_annotations = true"));
    sandbox_free(sb);
    sb = sandbox_new(scripts(ROUTER("assert(pod.metadata.name == 'p1') "
                                    "assert(pod.metadata.labels == nil) return {}"), NULL, NULL),
                     &cfg, NULL, err, sizeof err);
    assert_non_null(sb);
    assert_int_equal(call(sb, msg, sizeof msg), 1);
    sandbox_free(sb);
    snprintf(router, sizeof router, "return { selector = 'a=b', pod_annotations = true, "
             "children = function(pod) %s", reads);
    sb = sandbox_new(scripts(router, NULL, NULL), &cfg, NULL, err, sizeof err);
    assert_non_null(sb);
    assert_true(sandbox_wants_annotations(sb));
    assert_int_equal(call(sb, msg, sizeof msg), 1);
    sandbox_free(sb);
    sb = sandbox_new(scripts("return { selector = 'a=b', pod_annotations = 'yes', "
                             "children = function() return {} end }", NULL, NULL),
                     &cfg, NULL, err, sizeof err);
    assert_null(sb);
    assert_non_null(strstr(err, "pod_annotations"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_scripts_load),
        cmocka_unit_test(test_io_os_load_debug_denied),
        cmocka_unit_test(test_binary_chunk_refused),
        cmocka_unit_test(test_endless_loop_stopped),
        cmocka_unit_test(test_memory_cap_holds),
        cmocka_unit_test(test_syntax_error_names_file_and_line),
        cmocka_unit_test(test_shape_checked),
        cmocka_unit_test(test_require_flat_and_builtin_fallback),
        cmocka_unit_test(test_not_for_us_and_bad_result),
        cmocka_unit_test(test_config_reaches_scripts_fresh_each_call),
        cmocka_unit_test(test_finalizers_refused),
        cmocka_unit_test(test_c_functions_bounded),
        cmocka_unit_test(test_ordinary_patterns_allowed),
        cmocka_unit_test(test_output_copy_bounded),
        cmocka_unit_test(test_host_log_throttled),
        cmocka_unit_test(test_annotations_only_when_declared),
    };
    return cmocka_run_group_tests_name("sandbox", tests, NULL, NULL);
}
