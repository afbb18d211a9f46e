/* canon_hash gives exactly the hash of the text core.lua's Lua canonical()
 * wrote (kept here as the reference), so the desired-hash annotations on
 * existing children stay valid; and it is faster than that text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>

#include "canon.h"

/* The former Lua implementation (canonical text, FNV-1a over its bytes). */
static const char *reference =
    "local function canonical(v, out)\n"
    "  local t = type(v)\n"
    "  if t == 'table' then\n"
    "    local n = #v\n"
    "    if n > 0 or next(v) == nil then\n"
    "      out[#out + 1] = '['\n"
    "      for i = 1, n do\n"
    "        if i > 1 then out[#out + 1] = ',' end\n"
    "        canonical(v[i], out)\n"
    "      end\n"
    "      out[#out + 1] = ']'\n"
    "    else\n"
    "      local keys = {}\n"
    "      for k in pairs(v) do keys[#keys + 1] = tostring(k) end\n"
    "      table.sort(keys)\n"
    "      out[#out + 1] = '{'\n"
    "      for i, k in ipairs(keys) do\n"
    "        if i > 1 then out[#out + 1] = ',' end\n"
    "        out[#out + 1] = string.format('%q:', k)\n"
    "        canonical(v[k] == nil and v[tonumber(k)] or v[k], out)\n"
    "      end\n"
    "      out[#out + 1] = '}'\n"
    "    end\n"
    "  elseif t == 'number' then\n"
    "    local i = math.tointeger(v)\n"
    "    out[#out + 1] = i and string.format('%d', i) or string.format('%.17g', v)\n"
    "  elseif t == 'string' then\n"
    "    out[#out + 1] = string.format('%q', v)\n"
    "  else\n"
    "    out[#out + 1] = tostring(v)\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "return function(v)\n"
    "  local s = table.concat(canonical(v, {}))\n"
    "  local h = -3750763034362895579\n"
    "  for i = 1, #s do h = (h ~ s:byte(i)) * 1099511628211 end\n"
    "  return string.format('%016x', h)\n"
    "end\n";

/* Values: plain, nested, empty, escapes of every kind %q makes, numbers
 * as lua-cjson decodes them (floats) and as Lua writes them (integers).
 * (A boolean key is not among them: the Lua version wrote "nil" for its
 * value, canon_hash the value; JSON has no such keys.) */
static const char *values[] = {
    "return {}",
    "return 'plain'",
    "return 42",
    "return 42.0",
    "return 0.1",
    "return -3.5e300",
    "return 1/0",
    "return true",
    "return { false, 'x', 3 }",
    "return { a = 1, b = { c = {}, d = { 'e', 'f' } } }",
    "return { ['q\"uote'] = 'back\\\\slash', nl = 'line\\nbreak', cr = 'a\\rb' }",
    "return { ctl = 'a\\0b', ctl_digit = 'a\\0001', del = 'x\\127y', tab = '\\t9', bell = '\\a' }",
    "return { [1.5] = 'float key', [2] = 'sparse', n = 2 }",
    "return { apiVersion = 'v1', kind = 'Service', metadata = { name = 'p1', namespace = 'ns',"
    " labels = { ['app.kubernetes.io/managed-by'] = 'envoy-router', ['envoy-router/pod'] = 'p1' },"
    " finalizers = { 'foregroundDeletion' }, ownerReferences = { { apiVersion = 'v1', kind = 'Pod',"
    " name = 'p1', uid = '0f9d3c1e-1111-2222-3333-444455556666', controller = true,"
    " blockOwnerDeletion = false } } }, spec = { clusterIP = 'None', ports = { { name = 'http',"
    " port = 80.0, targetPort = 8080, protocol = 'TCP' } } } }",
    "return { utf8 = 'h\\195\\169llo', high = '\\255\\128' }",
    NULL,
};

static void test_same_as_the_lua_text(void **state)
{
    (void)state;
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    assert_int_equal(luaL_dostring(L, reference), LUA_OK);
    int ref = lua_gettop(L);
    for (const char **v = values; *v; v++) {
        assert_int_equal(luaL_dostring(L, *v), LUA_OK);
        int val = lua_gettop(L);
        lua_pushvalue(L, ref);
        lua_pushvalue(L, val);
        assert_int_equal(lua_pcall(L, 1, 1, 0), LUA_OK);
        char got[17];
        snprintf(got, sizeof got, "%016llx", (unsigned long long)canon_hash(L, val));
        if (strcmp(got, lua_tostring(L, -1)) != 0)
            fail_msg("%s: canon %s, Lua %s", *v, got, lua_tostring(L, -1));
        assert_int_equal(lua_gettop(L), val + 1);       /* canon_hash left the stack alone */
        lua_settop(L, ref);
    }
    lua_close(L);
}

static int hash_deep(lua_State *L)
{
    canon_hash(L, 1);
    return 0;
}

/* Nesting or keys beyond the limits are a Lua error, not a crash or a leak
 * (the key array was malloc'd before, and a nested error leaked it). */
static void test_too_deep_is_an_error(void **state)
{
    (void)state;
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    assert_int_equal(luaL_dostring(L, "local t = {} for _ = 1, 200 do t = { x = t } end return t"),
                     LUA_OK);
    lua_pushcfunction(L, hash_deep);
    lua_insert(L, -2);
    assert_int_not_equal(lua_pcall(L, 1, 0, 0), LUA_OK);
    assert_non_null(strstr(lua_tostring(L, -1), "nesting"));
    lua_pop(L, 1);
    /* So is a table with too many keys (under ASan: nothing leaks either way). */
    assert_int_equal(luaL_dostring(L, "local t = {} for i = 1, 100001 do t['k' .. i] = i end "
                                      "return { x = t }"), LUA_OK);
    lua_pushcfunction(L, hash_deep);
    lua_insert(L, -2);
    assert_int_not_equal(lua_pcall(L, 1, 0, 0), LUA_OK);
    assert_non_null(strstr(lua_tostring(L, -1), "keys"));
    lua_close(L);
}

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* A Service-sized object, against the Lua version timed in the same run
 * (so the bound holds under valgrind and the sanitizers too): at least
 * three times faster (about 13 times here, and under valgrind). */
static void test_faster_than_the_lua_text(void **state)
{
    (void)state;
    enum { N = 2000 };
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    assert_int_equal(luaL_dostring(L, reference), LUA_OK);
    int ref = lua_gettop(L);
    assert_int_equal(luaL_dostring(L, values[13]), LUA_OK);
    int val = lua_gettop(L);
    double t0 = now_us();
    for (int i = 0; i < N; i++) {
        lua_pushvalue(L, ref);
        lua_pushvalue(L, val);
        assert_int_equal(lua_pcall(L, 1, 1, 0), LUA_OK);
        lua_pop(L, 1);
    }
    double lua_us = (now_us() - t0) / N;
    uint64_t x = 0;
    t0 = now_us();
    for (int i = 0; i < N; i++)
        x += canon_hash(L, val);
    double c_us = (now_us() - t0) / N;
    print_message("# a Service: canon_hash %.2f us, the Lua text and byte loop %.2f us (%.1fx; %llx)\n",
                  c_us, lua_us, lua_us / c_us, (unsigned long long)x);
    assert_true(c_us * 3 < lua_us);
    lua_close(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_as_the_lua_text),
        cmocka_unit_test(test_too_deep_is_an_error),
        cmocka_unit_test(test_faster_than_the_lua_text),
    };
    return cmocka_run_group_tests_name("canon", tests, NULL, NULL);
}
