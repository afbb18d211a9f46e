/* luacall: see luacall.h. */
#include "luacall.h"

#include <lauxlib.h>
#include <stdio.h>

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int luacall_protected(lua_State *L, int nargs, int nresults, char *err, size_t errlen)
{
    int base = lua_gettop(L) - nargs;                   /* the function */
    lua_pushcfunction(L, traceback);                    /* ... fn args tb */
    lua_insert(L, base);                                /* ... tb fn args */
    int rc = lua_pcall(L, nargs, nresults, base);       /* ... tb results | tb msg */
    if (rc != LUA_OK) {
        luacall_message(L, -1, err, errlen);
        lua_settop(L, base - 1);
        return rc;
    }
    lua_remove(L, base);                                /* ... results */
    return LUA_OK;
}

void luacall_message(lua_State *L, int idx, char *err, size_t errlen)
{
    const char *m = lua_tostring(L, idx);
    snprintf(err, errlen, "%s", m ? m : "(error without a message)");
}
