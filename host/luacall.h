/* luacall: calling into Lua from C in protected mode, the way lua.c's
 * docall does: a message handler adds the traceback, and the message is
 * copied out for the caller to report. */
#ifndef ENVOY_ROUTER_LUACALL_H
#define ENVOY_ROUTER_LUACALL_H

#include <lua.h>
#include <stddef.h>

/* Calls the function that sits below the top `nargs` values of L, like
 * lua_pcall(L, nargs, nresults, h) with a handler h that appends a
 * traceback to the error message. Returns LUA_OK with the results in place
 * of the function and its arguments (nothing else is left on the stack).
 * On error returns the Lua status (LUA_ERRRUN, LUA_ERRMEM, ...), copies the
 * message and traceback into err (see luacall_message) and leaves the stack
 * as it was below the function. */
int luacall_protected(lua_State *L, int nargs, int nresults, char *err, size_t errlen);

/* Copies the string (or number) at stack index idx into err, truncated to
 * errlen and always terminated; "(error without a message)" for any other
 * value. A number there becomes a string, as with lua_tostring. */
void luacall_message(lua_State *L, int idx, char *err, size_t errlen);

#endif
