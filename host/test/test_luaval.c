/* Tests of luaval: "observed already contains desired", and values carried
 * between Lua states. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>

#include "luaval.h"

/* Evaluates two Lua expressions and returns luaval_diff's verdict. */
static bool differ(lua_State *L, const char *obs, const char *des, char *path, size_t len)
{
    char code[2048];
    snprintf(code, sizeof code, "return %s, %s", obs, des);
    if (luaL_dostring(L, code) != LUA_OK)
        fail_msg("%s", lua_tostring(L, -1));
    bool d = luaval_diff(L, -2, -1, path, len);
    assert_int_equal(luaval_contains(L, -2, -1), !d);
    lua_settop(L, 0);
    return d;
}

static void test_contains(void **state)
{
    (void)state;
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    char path[256];
    /* Extra observed fields (server defaults, status) are fine. */
    assert_false(differ(L, "{spec={ports={{port=80.0,name='http',nodePort=1}}, clusterIPs={'None'}}, status={}}",
                        "{spec={ports={{port=80,name='http'}}}}", path, sizeof path));
    /* A changed scalar, with its path. */
    assert_true(differ(L, "{spec={ports={{port=81,name='http'}}}}", "{spec={ports={{port=80,name='http'}}}}",
                       path, sizeof path));
    assert_string_equal(path, "spec.ports[1].port");
    /* A list of another length differs: an extra entry is not ours to keep. */
    assert_true(differ(L, "{a={1,2}}", "{a={1}}", path, sizeof path));
    assert_string_equal(path, "a");
    /* Missing field, wrong type, booleans. */
    assert_true(differ(L, "{}", "{x={y=1}}", path, sizeof path));
    assert_string_equal(path, "x");
    assert_true(differ(L, "{x='1'}", "{x=1}", path, sizeof path));
    assert_true(differ(L, "{c={ready=true}}", "{c={ready=false}}", path, sizeof path));
    assert_string_equal(path, "c.ready");
    assert_false(differ(L, "{c={ready=false, x=1}}", "{c={ready=false}}", path, sizeof path));
    /* An empty desired table is contained in anything that is a table. */
    assert_false(differ(L, "{labels={a='b'}}", "{labels={}}", path, sizeof path));
    lua_close(L);
}

static void test_copy_between_states(void **state)
{
    (void)state;
    lua_State *A = luaL_newstate(), *B = luaL_newstate();
    luaL_openlibs(A);
    luaL_openlibs(B);
    char err[256];
    assert_int_equal(luaL_dostring(A, "return {n=8080, f=1.5, s='x', b=false, l={1,2,{k='v'}}}"), LUA_OK);
    assert_int_equal(luaval_copy(A, -1, B, err, sizeof err), 0);
    lua_setglobal(B, "t");
    assert_int_equal(luaL_dostring(B, "return math.type(t.n) == 'integer' and t.n == 8080 and "
                                      "t.f == 1.5 and t.s == 'x' and t.b == false and "
                                      "#t.l == 3 and t.l[3].k == 'v'"), LUA_OK);
    assert_true(lua_toboolean(B, -1));
    lua_settop(B, 0);
    /* Functions and cycles are refused, and nothing is left on B's stack. */
    assert_int_equal(luaL_dostring(A, "return {f=print}"), LUA_OK);
    assert_int_equal(luaval_copy(A, -1, B, err, sizeof err), -1);
    assert_non_null(strstr(err, "function"));
    assert_int_equal(lua_gettop(B), 0);
    assert_int_equal(luaL_dostring(A, "local t = {} t.self = t return t"), LUA_OK);
    assert_int_equal(luaval_copy(A, -1, B, err, sizeof err), -1);
    assert_non_null(strstr(err, "deeper"));
    assert_int_equal(lua_gettop(B), 0);
    lua_close(A);
    lua_close(B);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contains),
        cmocka_unit_test(test_copy_between_states),
    };
    return cmocka_run_group_tests_name("luaval", tests, NULL, NULL);
}
