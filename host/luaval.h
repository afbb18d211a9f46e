/* luaval: plain Lua values (JSON-like: nil, booleans, numbers, strings,
 * tables of them, cjson.null) compared and carried between Lua states. */
#ifndef ENVOY_ROUTER_LUAVAL_H
#define ENVOY_ROUTER_LUAVAL_H

#include <lua.h>
#include <stdbool.h>

/* Deepest nesting luaval_copy and luaval_contains accept. */
#define LUAVAL_MAX_DEPTH 64

/* Pushes onto `to` a deep copy of the value at `idx` in `from` (two
 * different states; integers stay integers). Functions, threads and full
 * userdata, keys other than strings/numbers/booleans, and nesting beyond
 * LUAVAL_MAX_DEPTH are refused: then nothing is pushed onto `to` and -1 is
 * returned with a message in err. Raises only on memory errors in `to`
 * (call it protected). Returns 0 on success. */
int luaval_copy(lua_State *from, int idx, lua_State *to, char *err, size_t errlen);

/* True when the observed value at `obs` contains the desired value at `des`:
 * every key of a desired table is present in the observed table with a
 * contained value; a desired sequence (non-empty array) requires an
 * observed sequence of the same length; scalars compare equal (numbers by
 * value, 80 == 80.0). Extra observed keys are allowed: the API server adds
 * defaults and status. Does not raise; nesting beyond LUAVAL_MAX_DEPTH is
 * "not contained". */
bool luaval_contains(lua_State *L, int obs, int des);

/* Like luaval_contains, but true when the values differ, with the path of
 * the first difference written to path ("spec.ports[1].port"; "" for the
 * top level). */
bool luaval_diff(lua_State *L, int obs, int des, char *path, size_t len);

/* Lua binding: contains(observed, desired) -> true | false, path of the
 * first difference. */
int luaval_lua_contains(lua_State *L);

#endif
