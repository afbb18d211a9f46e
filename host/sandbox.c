/* sandbox: see sandbox.h. */
#include "sandbox.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedded.h"
#include "log.h"
#include "luaval.h"

#define DEFAULT_MEMORY (64u << 20)
#define DEFAULT_INSTRUCTIONS 20000000u
#define HOOK_EVERY 1000          /* instructions between budget checks */
#define MAX_SCRIPT_BYTES (1u << 20)

struct sandbox {
    lua_State *L;
    const struct config *cfg;
    size_t used;                 /* heap bytes held by L */
    size_t limit;                /* cap on used */
    uint64_t budget;             /* instructions allowed per call */
    uint64_t spent;              /* instructions counted in this call */
    int router_ref;              /* registry ref of the router table */
    char *selector;
    char *origin;
    char *dir;                   /* NULL: built-in only */
};

/* Globals scripts may use; everything else from the base library goes. */
static const char *const allowed_globals[] = {
    "assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber",
    "tostring", "type", "xpcall", "rawequal", "rawget", "rawlen", "rawset",
    "setmetatable", "getmetatable", "_G", "_VERSION",
    "string", "table", "math", "utf8", NULL,
};

/* The registry key of the sandbox pointer, for the hook and require. */
static const char sandbox_key = 'S';

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct sandbox *s = ud;
    /* When ptr is NULL, osize encodes the object type, not a size. */
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        s->used -= old;
        return NULL;
    }
    if (nsize > old && s->used + (nsize - old) > s->limit)
        return NULL;                /* Lua raises "not enough memory" */
    void *p = realloc(ptr, nsize);
    if (p != NULL)
        s->used = s->used - old + nsize;
    return p;
}

static struct sandbox *sandbox_of(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &sandbox_key);
    struct sandbox *s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return s;
}

/* Counts instructions; once over budget it raises on every later tick too,
 * so a script's own pcall cannot swallow the stop. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct sandbox *s = sandbox_of(L);
    s->spent += HOOK_EVERY;
    if (s->spent > s->budget)
        luaL_error(L, "instruction budget of %I exceeded", (lua_Integer)s->budget);
}

/* pcall and xpcall, wrapped: once the budget is spent, the error a script
 * caught is raised again, so `while true do pcall(f) end` still stops. */
static int guarded_pcall(lua_State *L)
{
    struct sandbox *s = sandbox_of(L);
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    if (s->spent > s->budget)
        return luaL_error(L, "instruction budget of %I exceeded", (lua_Integer)s->budget);
    return lua_gettop(L);
}

static void arm(struct sandbox *s)
{
    s->spent = 0;
    lua_sethook(s->L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

static void disarm(struct sandbox *s)
{
    lua_sethook(s->L, NULL, 0, 0);
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Reads a whole file into a new Lua string on the stack. Returns 1 when
 * pushed, 0 when the file does not exist, raises on other errors. */
static int push_file(lua_State *L, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        return luaL_error(L, "cannot open %s: %s", path, strerror(errno));
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t total = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        total += n;
        if (total > MAX_SCRIPT_BYTES) {
            fclose(f);
            return luaL_error(L, "%s is larger than %d bytes", path, MAX_SCRIPT_BYTES);
        }
        luaL_addlstring(&b, chunk, n);
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad)
        return luaL_error(L, "cannot read %s", path);
    luaL_pushresult(&b);
    return 1;
}

static bool valid_module_name(const char *name)
{
    if (*name == '\0' || *name == '.')
        return false;
    for (const char *p = name; *p; p++) {
        char c = *p;
        bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '_' || c == '-';
        if (c == '.') {
            if (p[1] == '.' || p[1] == '\0')
                return false;
        } else if (!word) {
            return false;
        }
    }
    return true;
}

/* Finds module `name` and pushes its source and chunk name ("@path").
 * Raises when it cannot be found. */
static void push_source(lua_State *L, struct sandbox *s, const char *name)
{
    /* "builtin.X" is always the built-in X, so a user's template can wrap
     * the default of the same name. */
    bool builtin = strncmp(name, "builtin.", 8) == 0;
    if (builtin)
        name += 8;
    if (s->dir != NULL && !builtin) {
        /* "<dir>/a/b.lua", then the flat "<dir>/a.b.lua". */
        char nested[4096], flat[4096];
        snprintf(nested, sizeof nested, "%s/%s.lua", s->dir, name);
        for (char *p = nested + strlen(s->dir) + 1; *p; p++)
            if (*p == '.' && strcmp(p, ".lua") != 0)
                *p = '/';
        snprintf(flat, sizeof flat, "%s/%s.lua", s->dir, name);
        const char *paths[2] = {nested, flat};
        for (int i = 0; i < 2; i++) {
            if (push_file(L, paths[i])) {
                lua_pushfstring(L, "@%s", paths[i]);
                return;
            }
        }
    }
    for (const struct embedded_file *f = embedded_files; f->module; f++) {
        if (strncmp(f->module, "host.", 5) != 0 && strcmp(f->module, name) == 0) {
            lua_pushlstring(L, f->data, f->len);
            lua_pushfstring(L, "@%s", f->path);
            return;
        }
    }
    luaL_error(L, "module '%s' not found in %s or the built-in scripts",
               name, s->dir ? s->dir : "(no scripts dir)");
}

/* require(name): scripts only, text only, cached per sandbox. */
static int sandbox_require(lua_State *L)
{
    struct sandbox *s = sandbox_of(L);
    const char *name = luaL_checkstring(L, 1);
    if (!valid_module_name(name))
        return luaL_error(L, "invalid module name '%s'", name);
    lua_settop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, "sandbox.loaded");   /* name loaded */
    lua_getfield(L, 2, name);                               /* name loaded mod */
    if (!lua_isnil(L, -1))
        return 1;
    lua_pop(L, 1);
    push_source(L, s, name);                                /* name loaded src chunkname */
    size_t len;
    const char *src = lua_tolstring(L, 3, &len);
    if (luaL_loadbufferx(L, src, len, lua_tostring(L, 4), "t") != LUA_OK)
        return lua_error(L);                                /* syntax error with file:line */
    lua_pushstring(L, name);
    lua_call(L, 1, 1);                                      /* ... module */
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, 2, name);
    return 1;
}

/* host.log(level, message) from scripts. */
static int sandbox_log(lua_State *L)
{
    const char *level = luaL_checkstring(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    enum log_level lv = LOG_INFO;
    if (log_level_parse(level, &lv) != 0)
        return luaL_error(L, "host.log: unknown level '%s'", level);
    log_kv(lv, msg, "source", "script", NULL);
    return 0;
}

/* Runs in protected mode: opens the allowed libraries and trims _G. */
static int setup(lua_State *L)
{
    static const luaL_Reg libs[] = {
        {"_G", luaopen_base}, {LUA_STRLIBNAME, luaopen_string},
        {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8}, {NULL, NULL},
    };
    for (const luaL_Reg *lib = libs; lib->func; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    /* Remove every global not on the allow-list. */
    lua_pushglobaltable(L);                                 /* G */
    lua_newtable(L);                                        /* G doomed */
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {                           /* G doomed k v */
        lua_pop(L, 1);
        bool keep = false;
        if (lua_type(L, -1) == LUA_TSTRING)
            for (const char *const *a = allowed_globals; *a && !keep; a++)
                keep = strcmp(lua_tostring(L, -1), *a) == 0;
        if (!keep) {
            lua_pushvalue(L, -1);
            lua_rawseti(L, 2, (lua_Integer)lua_rawlen(L, 2) + 1);
        }
    }
    for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, 2); i++) {
        lua_rawgeti(L, 2, i);
        lua_pushnil(L);
        lua_rawset(L, 1);
    }
    lua_pop(L, 1);                                          /* G */
    /* string.dump hands out bytecode, useless without load. */
    lua_getfield(L, 1, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    /* math.random would make scripts impure. */
    lua_getfield(L, 1, "math");
    lua_pushnil(L);
    lua_setfield(L, -2, "random");
    lua_pushnil(L);
    lua_setfield(L, -2, "randomseed");
    lua_pop(L, 1);
    static const char *const guarded[] = {"pcall", "xpcall"};
    for (size_t i = 0; i < 2; i++) {
        lua_getfield(L, 1, guarded[i]);
        lua_pushcclosure(L, guarded_pcall, 1);
        lua_setfield(L, 1, guarded[i]);
    }
    lua_pushcfunction(L, sandbox_require);
    lua_setfield(L, 1, "require");
    lua_newtable(L);                                        /* G host */
    lua_pushcfunction(L, sandbox_log);
    lua_setfield(L, -2, "log");
    lua_setfield(L, 1, "host");
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "sandbox.loaded");
    return 0;
}

/* Loads router and checks its shape; called protected with the router
 * table left on the stack. */
static int load_router(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "router");
    lua_call(L, 1, 1);
    if (!lua_istable(L, -1))
        return luaL_error(L, "router.lua must return a table, got %s", luaL_typename(L, -1));
    if (lua_getfield(L, -1, "selector") != LUA_TSTRING)
        return luaL_error(L, "router.lua: 'selector' must be a string (a label selector)");
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "children") != LUA_TFUNCTION)
        return luaL_error(L, "router.lua: 'children' must be a function(pod, config)");
    lua_pop(L, 1);
    return 1;
}

static void copy_msg(lua_State *L, int idx, char *msg, size_t len)
{
    const char *m = lua_tostring(L, idx);
    snprintf(msg, len, "%s", m ? m : "(error without a message)");
}

struct sandbox *sandbox_new(const char *dir, const struct config *cfg,
                            const struct sandbox_limits *lim, char *err, size_t errlen)
{
    struct sandbox *s = calloc(1, sizeof *s);
    if (s == NULL)
        goto oom;
    s->cfg = cfg;
    s->limit = lim && lim->memory_bytes ? lim->memory_bytes : DEFAULT_MEMORY;
    s->budget = lim && lim->instructions ? lim->instructions : DEFAULT_INSTRUCTIONS;
    s->router_ref = LUA_NOREF;
    if (dir != NULL && *dir != '\0') {
        if ((s->dir = strdup(dir)) == NULL || (s->origin = strdup(dir)) == NULL)
            goto oom;
    } else if ((s->origin = strdup("built-in")) == NULL) {
        goto oom;
    }
    s->L = lua_newstate(capped_alloc, s);
    if (s->L == NULL)
        goto oom;
    lua_State *L = s->L;
    lua_pushlightuserdata(L, s);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &sandbox_key);
    lua_pushcfunction(L, traceback);                        /* tb */
    lua_pushcfunction(L, setup);
    if (lua_pcall(L, 0, 0, 1) != LUA_OK) {
        copy_msg(L, -1, err, errlen);
        goto fail;
    }
    lua_pushcfunction(L, load_router);
    arm(s);
    int rc = lua_pcall(L, 0, 1, 1);
    disarm(s);
    if (rc != LUA_OK) {
        copy_msg(L, -1, err, errlen);
        goto fail;
    }
    lua_getfield(L, -1, "selector");
    s->selector = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (s->selector == NULL)
        goto oom;
    s->router_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    return s;
oom:
    snprintf(err, errlen, "out of memory loading the scripts");
fail:
    sandbox_free(s);
    return NULL;
}

void sandbox_free(struct sandbox *s)
{
    if (s == NULL)
        return;
    if (s->L != NULL)
        lua_close(s->L);
    free(s->selector);
    free(s->origin);
    free(s->dir);
    free(s);
}

const char *sandbox_selector(const struct sandbox *s)
{
    return s->selector;
}

const char *sandbox_origin(const struct sandbox *s)
{
    return s->origin;
}

size_t sandbox_memory(const struct sandbox *s)
{
    return s->used;
}

/* Pushes the config table of one call, built fresh so a script that
 * changes it cannot affect the next call. Raises on memory errors. */
static void push_config(lua_State *L, const struct config *c)
{
    lua_createtable(L, 0, 9);
    lua_pushstring(L, c->gateway_name ? c->gateway_name : "");
    lua_setfield(L, -2, "gatewayName");
    lua_pushstring(L, c->gateway_namespace ? c->gateway_namespace : "");
    lua_setfield(L, -2, "gatewayNamespace");
    lua_pushinteger(L, c->service_port);
    lua_setfield(L, -2, "servicePort");
    lua_pushinteger(L, c->pod_port);
    lua_setfield(L, -2, "podPort");
    lua_pushboolean(L, c->rewrite_prefix);
    lua_setfield(L, -2, "rewritePrefix");
    lua_pushboolean(L, c->headless);
    lua_setfield(L, -2, "headless");
    lua_newtable(L);
    for (int i = 0; c->hostnames && c->hostnames[i]; i++) {
        lua_pushstring(L, c->hostnames[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "hostnames");
    lua_newtable(L);
    for (int i = 0; i < c->n_extra; i++) {
        lua_pushstring(L, c->extra[i].value);
        lua_setfield(L, -2, c->extra[i].key);
    }
    lua_setfield(L, -2, "extra");
}

struct call {
    struct sandbox *s;
    lua_State *from;   /* the core state holding the pod */
    int pod_idx;
};

/* Protected: copies the pod in, builds config, calls children; returns
 * its two results. Memory and budget errors raise here, inside the pcall. */
static int call_children(lua_State *S)
{
    struct call *c = lua_touserdata(S, 1);
    char err[256];
    lua_rawgeti(S, LUA_REGISTRYINDEX, c->s->router_ref);   /* call router */
    lua_getfield(S, -1, "children");                        /* call router fn */
    if (luaval_copy(c->from, c->pod_idx, S, err, sizeof err) != 0)
        return luaL_error(S, "cannot pass the pod to the scripts: %s", err);
    push_config(S, c->s->cfg);                              /* ... fn pod config */
    lua_call(S, 2, 2);                                      /* call router r1 r2 */
    return 2;
}

int sandbox_children(struct sandbox *s, lua_State *L, int pod_idx, char *msg, size_t msglen)
{
    lua_State *S = s->L;
    struct call c = {s, L, lua_absindex(L, pod_idx)};
    int ret = -1;
    lua_settop(S, 0);
    lua_pushcfunction(S, traceback);                        /* 1 tb */
    lua_pushcfunction(S, call_children);
    lua_pushlightuserdata(S, &c);
    arm(s);
    int rc = lua_pcall(S, 1, 2, 1);                         /* 1 tb, 2 r1, 3 r2 */
    disarm(s);
    if (rc != LUA_OK) {
        copy_msg(S, -1, msg, msglen);
    } else if (lua_isnil(S, 2)) {
        const char *why = lua_tostring(S, 3);
        snprintf(msg, msglen, "%s", why ? why : "no reason given");
        lua_pushnil(L);
        ret = 0;
    } else if (lua_istable(S, 2)) {
        if (luaval_copy(S, 2, L, msg, msglen) == 0)
            ret = 1;
    } else {
        snprintf(msg, msglen, "children() returned a %s; want a list of objects, "
                 "or nil and a reason", luaL_typename(S, 2));
    }
    lua_settop(S, 0);
    if (ret < 0)
        lua_gc(S, LUA_GCCOLLECT);   /* give back what a failed call held */
    return ret;
}
