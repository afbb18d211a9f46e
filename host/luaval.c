/* luaval: see luaval.h. */
#include "luaval.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

static int copy_value(lua_State *from, int idx, lua_State *to, int depth,
                      char *err, size_t errlen);

static int copy_table(lua_State *from, int idx, lua_State *to, int depth,
                      char *err, size_t errlen)
{
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
        if (copy_value(from, lua_absindex(from, -2), to, depth, err, errlen) != 0 ||
            copy_value(from, lua_absindex(from, -1), to, depth, err, errlen) != 0) {
            lua_pop(from, 2);
            return -1;
        }
        lua_rawset(to, -3);                             /* to: t */
        lua_pop(from, 1);                               /* from: k */
    }
    return 0;
}

static int copy_value(lua_State *from, int idx, lua_State *to, int depth,
                      char *err, size_t errlen)
{
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
        return copy_table(from, idx, to, depth + 1, err, errlen);
    default:
        snprintf(err, errlen, "cannot carry a %s", luaL_typename(from, idx));
        return -1;
    }
}

int luaval_copy(lua_State *from, int idx, lua_State *to, char *err, size_t errlen)
{
    int top = lua_gettop(to);
    idx = lua_absindex(from, idx);
    if (copy_value(from, idx, to, 0, err, errlen) != 0) {
        lua_settop(to, top);
        return -1;
    }
    return 0;
}
