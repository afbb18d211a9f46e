/* luaval: see luaval.h. */
#include "luaval.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Per-value charge against luaval_limits.bytes (about a table slot). */
#define VALUE_BYTES 32

struct copy {
    lua_State *from, *to;
    struct luaval_limits left;   /* what the copy may still use */
    bool capped;
    char *err;
    size_t errlen;
};

static int copy_value(struct copy *c, int idx, int depth);

/* Counts one value of `len` string bytes; -1 when over the caps. */
static int count(struct copy *c, size_t len)
{
    if (!c->capped)
        return 0;
    size_t cost = len + VALUE_BYTES;
    if (c->left.nodes == 0 || c->left.bytes < cost) {
        snprintf(c->err, c->errlen, "value too large to copy (over %s)",
                 c->left.nodes == 0 ? "the cap on values" : "the cap on bytes");
        return -1;
    }
    c->left.nodes--;
    c->left.bytes -= cost;
    return 0;
}

static int copy_table(struct copy *c, int idx, int depth)
{
    lua_State *from = c->from, *to = c->to;
    char *err = c->err;
    size_t errlen = c->errlen;
    if (depth > LUAVAL_MAX_DEPTH) {
        snprintf(err, errlen, "value nested deeper than %d levels", LUAVAL_MAX_DEPTH);
        return -1;
    }
    luaL_checkstack(from, 3, "luaval_copy");
    luaL_checkstack(to, 3, "luaval_copy");
    lua_newtable(to);                                   /* to: t */
    lua_pushnil(from);                                  /* from: nil */
    while (lua_next(from, idx) != 0) {                  /* from: k v */
        int kt = lua_type(from, -2);
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN) {
            snprintf(err, errlen, "table key of type %s", lua_typename(from, kt));
            lua_pop(from, 2);
            return -1; /* luaval_copy resets the stack of `to` */
        }
        if (copy_value(c, lua_absindex(from, -2), depth) != 0 ||
            copy_value(c, lua_absindex(from, -1), depth) != 0) {
            lua_pop(from, 2);
            return -1;
        }
        lua_rawset(to, -3);                             /* to: t */
        lua_pop(from, 1);                               /* from: k */
    }
    return 0;
}

static int copy_value(struct copy *c, int idx, int depth)
{
    lua_State *from = c->from, *to = c->to;
    size_t slen = 0;
    if (lua_type(from, idx) == LUA_TSTRING)
        lua_tolstring(from, idx, &slen);
    if (count(c, slen) != 0)
        return -1;
    switch (lua_type(from, idx)) {
    case LUA_TNIL:
        lua_pushnil(to);
        return 0;
    case LUA_TBOOLEAN:
        lua_pushboolean(to, lua_toboolean(from, idx));
        return 0;
    case LUA_TNUMBER:
        if (lua_isinteger(from, idx))
            lua_pushinteger(to, lua_tointeger(from, idx));
        else
            lua_pushnumber(to, lua_tonumber(from, idx));
        return 0;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(from, idx, &len);
        lua_pushlstring(to, s, len);
        return 0;
    }
    case LUA_TLIGHTUSERDATA:
        /* cjson.null: the same NULL pointer in every state. */
        lua_pushlightuserdata(to, lua_touserdata(from, idx));
        return 0;
    case LUA_TTABLE:
        return copy_table(c, idx, depth + 1);
    default:
        snprintf(c->err, c->errlen, "cannot carry a %s", luaL_typename(from, idx));
        return -1;
    }
}

int luaval_copy(lua_State *from, int idx, lua_State *to, const struct luaval_limits *lim,
                char *err, size_t errlen)
{
    struct copy c = {.from = from, .to = to, .err = err, .errlen = errlen};
    if (lim != NULL && (lim->nodes != 0 || lim->bytes != 0)) {
        c.capped = true;
        c.left.nodes = lim->nodes ? lim->nodes : SIZE_MAX;
        c.left.bytes = lim->bytes ? lim->bytes : SIZE_MAX;
    }
    int top = lua_gettop(to);
    idx = lua_absindex(from, idx);
    if (copy_value(&c, idx, 0) != 0) {
        lua_settop(to, top);
        return -1;
    }
    return 0;
}
