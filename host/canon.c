/* canon: see canon.h. */
#include "canon.h"

#include <lauxlib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

static uint64_t feed(uint64_t h, const char *s, size_t n)
{
    return hash_bytes(h, s, n);
}

/* The bytes string.format("%q", s) writes (Lua 5.4's addquoted). */
static uint64_t feed_quoted(uint64_t h, const char *s, size_t len)
{
    h = feed(h, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '\n') {
            char esc[2] = {'\\', (char)c};
            h = feed(h, esc, 2);
        } else if (c < 32 || c == 127) {
            /* s[len] is the NUL every Lua string ends with. */
            unsigned char next = (unsigned char)s[i + 1];
            char buf[8];
            int n = snprintf(buf, sizeof buf, next >= '0' && next <= '9' ? "\\%03d" : "\\%d", c);
            h = feed(h, buf, (size_t)n);
        } else {
            h = feed(h, (const char *)&c, 1);
        }
    }
    return feed(h, "\"", 1);
}

/* The bytes of tostring(v) for the value at idx. */
static uint64_t feed_tostring(lua_State *L, int idx, uint64_t h)
{
    size_t n;
    const char *s = luaL_tolstring(L, idx, &n);
    h = feed(h, s, n);
    lua_pop(L, 1);
    return h;
}

struct key {
    const char *s;
    size_t n;
    int slot;           /* stack slot of the original key */
};

static int key_cmp(const void *a, const void *b)
{
    const struct key *x = a, *y = b;
    int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
    if (c != 0)
        return c;
    return x->n < y->n ? -1 : x->n > y->n;
}

static uint64_t walk(lua_State *L, int idx, uint64_t h, int depth);

static uint64_t walk_object(lua_State *L, int idx, uint64_t h, int depth)
{
    int base = lua_gettop(L);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        n++;
    }
    if (n > CANON_MAX_KEYS || !lua_checkstack(L, (int)(2 * n) + 8))
        luaL_error(L, "canon: more than %d keys in one table", CANON_MAX_KEYS);
    /* A userdata, not malloc: a Lua error further down (nesting, memory)
     * unwinds past this frame, and the collector frees it then. */
    struct key *keys = lua_newuserdatauv(L, n * sizeof *keys + 1, 0);
    size_t got = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);              /* the value */
        lua_pushvalue(L, -1);       /* the copy below stays; lua_next continues from the top */
        keys[got++].slot = lua_gettop(L) - 1;
    }
    /* The keys sit above the userdata; their texts go above them. */
    for (size_t i = 0; i < n; i++) {
        keys[i].s = luaL_tolstring(L, keys[i].slot, &keys[i].n);
    }
    qsort(keys, n, sizeof *keys, key_cmp);
    h = feed(h, "{", 1);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            h = feed(h, ",", 1);
        h = feed_quoted(h, keys[i].s, keys[i].n);
        h = feed(h, ":", 1);
        lua_pushvalue(L, keys[i].slot);
        lua_rawget(L, idx);
        h = walk(L, lua_gettop(L), h, depth + 1);
        lua_pop(L, 1);
    }
    lua_settop(L, base);
    return feed(h, "}", 1);
}

static uint64_t walk(lua_State *L, int idx, uint64_t h, int depth)
{
    char buf[64];
    int n;
    switch (lua_type(L, idx)) {
    case LUA_TTABLE: {
        if (depth > CANON_MAX_DEPTH)
            luaL_error(L, "canon: nesting deeper than %d", CANON_MAX_DEPTH);
        luaL_checkstack(L, 8, "canon");
        lua_Unsigned len = lua_rawlen(L, idx);
        bool empty = false;
        if (len == 0) {
            lua_pushnil(L);
            empty = lua_next(L, idx) == 0;
            if (!empty)
                lua_pop(L, 2);
        }
        if (len > 0 || empty) {
            h = feed(h, "[", 1);
            for (lua_Unsigned i = 1; i <= len; i++) {
                if (i > 1)
                    h = feed(h, ",", 1);
                lua_rawgeti(L, idx, (lua_Integer)i);
                h = walk(L, lua_gettop(L), h, depth + 1);
                lua_pop(L, 1);
            }
            return feed(h, "]", 1);
        }
        return walk_object(L, idx, h, depth);
    }
    case LUA_TNUMBER: {
        lua_Integer i;
        if (lua_isinteger(L, idx)) {
            n = snprintf(buf, sizeof buf, LUA_INTEGER_FMT, lua_tointeger(L, idx));
        } else if (lua_numbertointeger(lua_tonumber(L, idx), &i) &&
                   (lua_Number)i == lua_tonumber(L, idx)) {
            n = snprintf(buf, sizeof buf, LUA_INTEGER_FMT, i);
        } else {
            n = snprintf(buf, sizeof buf, "%.17g", (double)lua_tonumber(L, idx));
        }
        return feed(h, buf, (size_t)n);
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        return feed_quoted(h, s, len);
    }
    default:
        return feed_tostring(L, idx, h);
    }
}

uint64_t canon_hash(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    int top = lua_gettop(L);
    uint64_t h = walk(L, idx, HASH_SEED, 0);
    lua_settop(L, top);
    return h;
}
