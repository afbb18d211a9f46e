/* Tests of luaval: values carried between Lua states. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>

#include "luaval.h"

static void test_copy_between_states(void **state)
{
    (void)state;
    lua_State *A = luaL_newstate(), *B = luaL_newstate();
    luaL_openlibs(A);
    luaL_openlibs(B);
    char err[256];
    assert_int_equal(luaL_dostring(A, "return {n=8080, f=1.5, s='x', b=false, l={1,2,{k='v'}}}"), LUA_OK);
    assert_int_equal(luaval_copy(A, -1, B, NULL, err, sizeof err), 0);
    lua_setglobal(B, "t");
    assert_int_equal(luaL_dostring(B, "return math.type(t.n) == 'integer' and t.n == 8080 and "
                                      "t.f == 1.5 and t.s == 'x' and t.b == false and "
                                      "#t.l == 3 and t.l[3].k == 'v'"), LUA_OK);
    assert_true(lua_toboolean(B, -1));
    lua_settop(B, 0);
    /* Functions and cycles are refused, and nothing is left on B's stack. */
    assert_int_equal(luaL_dostring(A, "return {f=print}"), LUA_OK);
    assert_int_equal(luaval_copy(A, -1, B, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "function"));
    assert_int_equal(lua_gettop(B), 0);
    assert_int_equal(luaL_dostring(A, "local t = {} t.self = t return t"), LUA_OK);
    assert_int_equal(luaval_copy(A, -1, B, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "deeper"));
    assert_int_equal(lua_gettop(B), 0);
    lua_close(A);
    lua_close(B);
}

/* A table shared many times is small in its own state and huge once
 * copied: the caps stop the copy early and leave nothing behind. */
static void test_copy_capped(void **state)
{
    (void)state;
    lua_State *A = luaL_newstate(), *B = luaL_newstate();
    luaL_openlibs(A);
    char err[256];
    assert_int_equal(luaL_dostring(A, "local t = {} for i = 1, 40 do t = {t, t} end return t"),
                     LUA_OK);
    struct luaval_limits nodes = {.nodes = 1000};
    assert_int_equal(luaval_copy(A, -1, B, &nodes, err, sizeof err), -1);
    assert_non_null(strstr(err, "too large"));
    assert_int_equal(lua_gettop(B), 0);
    assert_int_equal(luaL_dostring(A, "return {string.rep('x', 5000), string.rep('y', 5000)}"),
                     LUA_OK);
    struct luaval_limits bytes = {.bytes = 8000};
    assert_int_equal(luaval_copy(A, -1, B, &bytes, err, sizeof err), -1);
    assert_non_null(strstr(err, "bytes"));
    bytes.bytes = 20000;
    assert_int_equal(luaval_copy(A, -1, B, &bytes, err, sizeof err), 0);
    assert_int_equal(lua_gettop(B), 1);
    lua_close(A);
    lua_close(B);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_between_states),
        cmocka_unit_test(test_copy_capped),
    };
    return cmocka_run_group_tests_name("luaval", tests, NULL, NULL);
}
