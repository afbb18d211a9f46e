/* The protected call: results in place, the stack restored on error, the
 * traceback in the copied message, truncation always terminated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>

#include "luacall.h"

static int setup(void **state)
{
    lua_State *L = luaL_newstate();
    if (L == NULL)
        return -1;
    luaL_openlibs(L);
    *state = L;
    return 0;
}

static int teardown(void **state)
{
    lua_close(*state);
    return 0;
}

/* Pushes the global function defined by `chunk` under `name`. */
static void push_fn(lua_State *L, const char *chunk, const char *name)
{
    assert_int_equal(luaL_dostring(L, chunk), LUA_OK);
    lua_getglobal(L, name);
    assert_true(lua_isfunction(L, -1));
}

static void test_results_in_place(void **state)
{
    lua_State *L = *state;
    char err[64] = "untouched";

    lua_pushliteral(L, "below");                            /* 1 */
    push_fn(L, "function add(a, b) return a + b, a * b end", "add");
    lua_pushinteger(L, 3);
    lua_pushinteger(L, 4);
    assert_int_equal(luacall_protected(L, 2, 2, err, sizeof err), LUA_OK);
    assert_int_equal(lua_gettop(L), 3);
    assert_string_equal(lua_tostring(L, 1), "below");
    assert_int_equal(lua_tointeger(L, 2), 7);
    assert_int_equal(lua_tointeger(L, 3), 12);
    assert_string_equal(err, "untouched");
    lua_settop(L, 0);
}

static void test_error_has_traceback_and_stack_restored(void **state)
{
    lua_State *L = *state;
    char err[1024];

    lua_pushliteral(L, "below");
    push_fn(L, "function inner() error('boom here') end\n"
               "function outer(x) inner() return x end", "outer");
    lua_pushinteger(L, 1);
    assert_int_equal(luacall_protected(L, 1, 1, err, sizeof err), LUA_ERRRUN);
    assert_int_equal(lua_gettop(L), 1);
    assert_string_equal(lua_tostring(L, 1), "below");
    assert_non_null(strstr(err, "boom here"));
    assert_non_null(strstr(err, "stack traceback:"));
    assert_non_null(strstr(err, "inner"));
    assert_non_null(strstr(err, "outer"));
    lua_settop(L, 0);
}

static void test_non_string_error_object(void **state)
{
    lua_State *L = *state;
    char err[256];

    push_fn(L, "function throw_table() error({}) end", "throw_table");
    assert_int_equal(luacall_protected(L, 0, 0, err, sizeof err), LUA_ERRRUN);
    assert_int_equal(lua_gettop(L), 0);
    assert_non_null(strstr(err, "(error object is a table value)"));
}

static void test_truncated_message_is_terminated(void **state)
{
    lua_State *L = *state;
    char err[8];

    memset(err, 'x', sizeof err);
    push_fn(L, "function long() error('a message longer than eight bytes', 0) end", "long");
    assert_int_not_equal(luacall_protected(L, 0, 0, err, sizeof err), LUA_OK);
    assert_string_equal(err, "a messa");
}

static void test_message(void **state)
{
    lua_State *L = *state;
    char err[64];

    lua_pushnil(L);
    luacall_message(L, -1, err, sizeof err);
    assert_string_equal(err, "(error without a message)");
    lua_pushinteger(L, 42);
    luacall_message(L, -1, err, sizeof err);
    assert_string_equal(err, "42");
    lua_pushliteral(L, "plain");
    luacall_message(L, 3, err, sizeof err);
    assert_string_equal(err, "plain");
    assert_int_equal(lua_gettop(L), 3);
    lua_settop(L, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_results_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_has_traceback_and_stack_restored, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_non_string_error_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_message_is_terminated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message, setup, teardown),
    };
    return cmocka_run_group_tests_name("luacall", tests, NULL, NULL);
}
