/* luaval: plain Lua values (JSON-like: nil, booleans, numbers, strings,
 * tables of them, cjson.null) carried between Lua states. */
#ifndef ENVOY_ROUTER_LUAVAL_H
#define ENVOY_ROUTER_LUAVAL_H

#include <lua.h>
#include <stdbool.h>

/* Deepest nesting luaval_copy accepts. */
#define LUAVAL_MAX_DEPTH 64

/* Caps on one copy: values (tables, keys and scalars each count one) and
 * bytes (string bytes plus a fixed charge per value). 0: no cap. */
struct luaval_limits {
    size_t nodes;
    size_t bytes;
};

/* Pushes onto `to` a deep copy of the value at `idx` in `from` (two
 * different states; integers stay integers). Functions, threads and full
 * userdata, keys other than strings/numbers/booleans, nesting beyond
 * LUAVAL_MAX_DEPTH and copies over `lim` (NULL: no caps; a table shared
 * twice is copied, and counted, twice) are refused: then nothing is pushed
 * onto `to` and -1 is returned with a message in err. Raises only on memory
 * errors in `to` (call it protected). Returns 0 on success. */
int luaval_copy(lua_State *from, int idx, lua_State *to, const struct luaval_limits *lim,
                char *err, size_t errlen);

#endif
