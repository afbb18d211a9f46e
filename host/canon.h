/* canon: a change detector for plain Lua values (JSON-like: nil, booleans,
 * numbers, strings, tables of them, cjson.null), without building text. */
#ifndef ENVOY_ROUTER_CANON_H
#define ENVOY_ROUTER_CANON_H

#include <lua.h>
#include <stdint.h>

/* Deepest nesting, and most keys in one table, canon_hash accepts. */
#define CANON_MAX_DEPTH 64
#define CANON_MAX_KEYS 100000

/* FNV-1a (64 bits, from HASH_SEED) of the canonical text of the value at
 * `idx`: the bytes core.lua's former canonical() wrote, so hashes kept on
 * children stay valid. Tables with a border (#t > 0) or empty are lists of
 * t[1..#t]; other tables are objects with keys as tostring() gives them,
 * sorted bytewise, each as string.format("%q:", key) then its value;
 * numbers with an integral value as "%d", others "%.17g"; strings as %q;
 * anything else as tostring(). Raises a Lua error (nothing leaks) when
 * nesting exceeds CANON_MAX_DEPTH or a table has more than CANON_MAX_KEYS
 * keys. Leaves the stack as it found it. */
uint64_t canon_hash(lua_State *L, int idx);

#endif
