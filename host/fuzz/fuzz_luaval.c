/* Fuzz target: the value copy between Lua states (host/luaval.c), which
 * carries pods into the sandbox and children out of it.
 *
 * The input is a small program that builds a value in state A: tables,
 * integers, floats, strings, booleans, cjson.null, sets, appends and
 * references to tables built earlier (shared tables and cycles). The top
 * value is copied to B with the caps the sandbox uses, then with tight
 * caps. Invariants: a refused copy leaves B's stack as it was; an accepted
 * one copied back to A equals the original (same types, integers stay
 * integers, same keys and values), so nothing is lost or invented.
 *
 *   make fuzz-build && build/fuzz/fuzz_luaval host/fuzz/corpus/luaval */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luaval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_STACK 40

struct prog {
    const uint8_t *p;
    size_t n;
};

static int byte(struct prog *g)
{
    if (g->n == 0)
        return -1;
    g->n--;
    return *g->p++;
}

/* Protected: runs the program in A (upvalue-free; prog as light userdata). */
static int build(lua_State *A)
{
    struct prog *g = lua_touserdata(A, 1);
    lua_settop(A, 0);
    luaL_checkstack(A, MAX_STACK + 8, "fuzz_luaval");     /* a C function gets 20 slots */
    lua_newtable(A);                                   /* the root */
    int op;
    while ((op = byte(g)) >= 0) {
        int top = lua_gettop(A);
        switch (op % 9) {
        case 0:
            if (top < MAX_STACK)
                lua_newtable(A);
            break;
        case 1: {
            int hi = byte(g), lo = byte(g);
            if (top < MAX_STACK)
                lua_pushinteger(A, (lua_Integer)((hi < 0 ? 0 : hi) << 8 | (lo < 0 ? 0 : lo)) - 1000);
            break;
        }
        case 2:
            if (top < MAX_STACK)
                lua_pushnumber(A, (double)(byte(g) & 0xff) / 4.0 + 0.25);
            break;
        case 3: {
            int len = byte(g);
            if (len < 0)
                len = 0;
            len %= 48;
            if ((size_t)len > g->n)
                len = (int)g->n;
            if (top < MAX_STACK)
                lua_pushlstring(A, (const char *)g->p, (size_t)len);
            g->p += len;
            g->n -= (size_t)len;
            break;
        }
        case 4:
            if (top < MAX_STACK)
                lua_pushboolean(A, byte(g) & 1);
            break;
        case 5:
            if (top < MAX_STACK)
                lua_pushlightuserdata(A, NULL);        /* cjson.null */
            break;
        case 6:                                        /* t[k] = v */
            if (top >= 3 && lua_istable(A, top - 2) && !lua_isnil(A, top - 1) &&
                !lua_isnil(A, top) && lua_type(A, top - 1) != LUA_TTABLE)
                lua_rawset(A, top - 2);
            break;
        case 7:                                        /* t[#t+1] = v */
            if (top >= 2 && lua_istable(A, top - 1) && !lua_isnil(A, top))
                lua_rawseti(A, top - 1, (lua_Integer)lua_rawlen(A, top - 1) + 1);
            break;
        case 8: {                                      /* push stack[i] again */
            int i = byte(g);
            if (i >= 0 && top < MAX_STACK)
                lua_pushvalue(A, 1 + i % top);
            break;
        }
        }
    }
    /* Fold everything into the root, so the whole program is one value. */
    while (lua_gettop(A) > 1)
        lua_rawseti(A, 1, (lua_Integer)lua_rawlen(A, 1) + 1);
    return 1;
}

struct copy_args {
    lua_State *from;
    int idx;
    const struct luaval_limits *lim;
    int rc;
    char err[256];
};

static int do_copy(lua_State *to)
{
    struct copy_args *c = lua_touserdata(to, 1);
    lua_pop(to, 1);
    c->rc = luaval_copy(c->from, c->idx, to, c->lim, c->err, sizeof c->err);
    return lua_gettop(to);
}

/* Copies from[idx] onto `to` protected; returns the rc, or -2 on a Lua error. */
static int copy(lua_State *from, int idx, lua_State *to, const struct luaval_limits *lim)
{
    struct copy_args c = {from, idx, lim, 0, {0}};
    int top = lua_gettop(to);
    lua_pushcfunction(to, do_copy);
    lua_pushlightuserdata(to, &c);
    if (lua_pcall(to, 1, LUA_MULTRET, 0) != LUA_OK) {
        lua_settop(to, top);
        return -2;
    }
    if (c.rc != 0 && lua_gettop(to) != top)
        abort();                                       /* a refused copy pushed something */
    if (c.rc == 0 && lua_gettop(to) != top + 1)
        abort();
    if (c.rc != 0 && c.err[0] == '\0')
        abort();
    return c.rc;
}

/* Deep equality of two plain values in one state (no metatables). */
static int same(lua_State *L, int a, int b, int depth)
{
    a = lua_absindex(L, a);
    b = lua_absindex(L, b);
    if (lua_type(L, a) != lua_type(L, b) || depth > LUAVAL_MAX_DEPTH + 1 || !lua_checkstack(L, 4))
        return 0;
    if (lua_type(L, a) == LUA_TNUMBER && lua_isinteger(L, a) != lua_isinteger(L, b))
        return 0;
    if (lua_type(L, a) != LUA_TTABLE)
        return lua_rawequal(L, a, b);
    size_t na = 0, nb = 0;
    lua_pushnil(L);
    while (lua_next(L, a) != 0) {                       /* k va */
        na++;
        lua_pushvalue(L, -2);
        lua_rawget(L, b);                               /* k va vb */
        int ok = same(L, -2, -1, depth + 1);
        lua_pop(L, 2);
        if (!ok) {
            lua_pop(L, 1);
            return 0;
        }
    }
    lua_pushnil(L);
    while (lua_next(L, b) != 0) {
        nb++;
        lua_pop(L, 1);
    }
    return na == nb;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *A = luaL_newstate(), *B = luaL_newstate();
    struct prog g = {data, size};
    lua_pushcfunction(A, build);
    lua_pushlightuserdata(A, &g);
    if (lua_pcall(A, 1, 1, 0) != LUA_OK)
        abort();
    static const struct luaval_limits sandbox = {100000, 16u << 20}, tight = {64, 2048};
    const struct luaval_limits *caps[2] = {&sandbox, &tight};
    for (int i = 0; i < 2; i++) {
        if (copy(A, 1, B, caps[i]) != 0)
            continue;
        if (copy(B, -1, A, NULL) != 0)
            abort();                                   /* B's copy must come back whole */
        if (!same(A, 1, -1, 0))
            abort();                                   /* lost or invented on the way */
        lua_pop(A, 1);
        lua_pop(B, 1);
    }
    lua_close(A);
    lua_close(B);
    return 0;
}
