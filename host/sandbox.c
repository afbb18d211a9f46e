/* sandbox: see sandbox.h. */
#include "sandbox.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "embedded.h"
#include "file.h"
#include "log.h"
#include "metrics.h"
#include "luacall.h"
#include "luaval.h"
#include "selector.h"

#define DEFAULT_MEMORY (64u << 20)
#define DEFAULT_INSTRUCTIONS 20000000u
#define DEFAULT_CPU_MS 2000u
#define CPU_CHECK_EVERY 16       /* hook ticks between CPU-time checks */
/* Upper bound on the steps of one pattern match (see pattern_steps). */
#define PATTERN_MAX_STEPS 1e9
#define HOOK_EVERY 1000          /* instructions between budget checks */
#define MAX_SCRIPT_BYTES (1u << 20)
/* host.log: a token bucket shared by every sandbox of the process (a
 * reload must not refill it), LOG_BURST lines at once, LOG_PER_SECOND
 * after that; lines over it are dropped and counted. */
#define LOG_BURST 50.0
#define LOG_PER_SECOND 10.0

struct sandbox {
    lua_State *L;
    const struct config *cfg;
    size_t used;                 /* heap bytes held by L */
    size_t limit;                /* cap on used */
    uint64_t budget;             /* instructions allowed per call */
    uint64_t spent;              /* instructions counted in this call */
    int64_t cpu_limit_ns;        /* CPU time allowed per call */
    int64_t cpu_start_ns;        /* thread CPU time when the call began */
    unsigned ticks;              /* hook ticks in this call */
    const char *stop;            /* why the call is being stopped, or NULL */
    int router_ref;              /* registry ref of the router table */
    char *selector;
    char *origin;
    char *dir;                   /* NULL: built-in only */
    char *modules;               /* "name\tkind\tpath\n" per module loaded (sandbox_modules) */
    size_t modules_len;
    bool annotations;            /* router.pod_annotations: scripts read them */
};

/* Globals scripts may use; everything else from the base library goes. */
static const char *const allowed_globals[] = {
    "assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber",
    "tostring", "type", "xpcall", "rawequal", "rawget", "rawlen", "rawset",
    "setmetatable", "getmetatable", "_G", "_VERSION",
    "string", "table", "math", "utf8", NULL,
};

/* Fields of each library scripts may use; spec/unit/sandbox_spec.lua
 * checks that these and allowed_globals are exactly what .luacheckrc lets
 * scripts use. */
struct lib_fields {
    const char *lib;
    const char *const *fields;
};

static const char *const string_fields[] = {
    "byte", "char", "find", "format", "gmatch", "gsub", "len", "lower", "match", "pack",
    "packsize", "rep", "reverse", "sub", "unpack", "upper", NULL,
};
static const char *const table_fields[] = {
    "concat", "insert", "move", "pack", "remove", "sort", "unpack", NULL,
};
static const char *const math_fields[] = {
    "abs", "acos", "asin", "atan", "ceil", "cos", "deg", "exp", "floor", "fmod", "huge", "log",
    "max", "maxinteger", "min", "mininteger", "modf", "pi", "rad", "sin", "sqrt", "tan",
    "tointeger", "type", "ult", NULL,
};
static const char *const utf8_fields[] = {
    "char", "charpattern", "codepoint", "codes", "len", "offset", NULL,
};
static const struct lib_fields allowed_fields[] = {
    {"string", string_fields}, {"table", table_fields}, {"math", math_fields},
    {"utf8", utf8_fields}, {NULL, NULL},
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

static int64_t cpu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Raises the reason the current call is stopped. */
static int raise_stop(lua_State *L, struct sandbox *s)
{
    if (s->stop == NULL)
        s->stop = "instruction budget";
    return luaL_error(L, "%s exceeded (instruction budget %I, CPU time limit %I ms)", s->stop,
                      (lua_Integer)s->budget, (lua_Integer)(s->cpu_limit_ns / 1000000));
}

/* Adds n units of work done in C to the call's instruction count; raises
 * once the budget is spent. */
static void charge(lua_State *L, uint64_t n)
{
    struct sandbox *s = sandbox_of(L);
    s->spent = n > UINT64_MAX - s->spent ? UINT64_MAX : s->spent + n;
    if (s->spent > s->budget)
        raise_stop(L, s);
}

/* Counts instructions and checks CPU time; once over either limit it
 * raises on every later tick too, so a script's own pcall cannot swallow
 * the stop. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct sandbox *s = sandbox_of(L);
    s->spent += HOOK_EVERY;
    if (s->stop == NULL && ++s->ticks % CPU_CHECK_EVERY == 0 &&
        cpu_now_ns() - s->cpu_start_ns > s->cpu_limit_ns)
        s->stop = "CPU time limit";
    if (s->stop != NULL || s->spent > s->budget)
        raise_stop(L, s);
}

static bool stopped(const struct sandbox *s)
{
    return s->stop != NULL || s->spent > s->budget;
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
    if (stopped(s))
        return raise_stop(L, s);
    return lua_gettop(L);
}

/* Calls the library function in upvalue 1 with this call's arguments. */
static int call_original(lua_State *L)
{
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

/* setmetatable without finalizers: Lua marks an object for finalization
 * when its metatable has a __gc field at this moment (later additions do
 * not count), so refusing it here means no script code ever runs outside a
 * budgeted call. */
static int guarded_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc (finalizers) is not allowed in scripts");
        lua_pop(L, 1);
    }
    return call_original(L);
}

/* End of the set "[...]" starting at p[i] (as Lua's matcher reads it: the
 * first character after "[" or "[^" is literal, "%x" is one item). */
static size_t set_end(const char *p, size_t plen, size_t i)
{
    size_t j = i + 1;
    if (j < plen && p[j] == '^')
        j++;
    do {
        j += (j < plen && p[j] == '%') ? 2 : 1;
    } while (j < plen && p[j] != ']');
    return j + 1;
}

/* An upper bound on the steps Lua's backtracking matcher can take for
 * pattern p on an n-byte subject: each start position (one when anchored)
 * times, for every "*", "+" or "-" item (and %b, back-references), the
 * n + 1 lengths it may try before the rest of the pattern, times 2 per
 * "?", times the pattern's length. Loose for ordinary patterns, and
 * exactly what grows without bound for (.-)(.-)(.-)... */
static double pattern_steps(const char *p, size_t plen, size_t n, bool anchor)
{
    double span = (double)n + 1, steps = span;
    size_t i = 0;
    if (anchor && plen > 0 && p[0] == '^') {
        steps = 1;
        i = 1;
    }
    while (i < plen && steps <= PATTERN_MAX_STEPS) {
        char c = p[i];
        size_t end = i + 1;
        if (c == '(' || c == ')') {
            i++;
            continue;
        }
        if (c == '%' && i + 1 < plen) {
            char d = p[i + 1];
            if (d == 'b') {
                steps *= span;
                i += 4;
                continue;
            }
            if (d == 'f') {
                i = (i + 2 < plen && p[i + 2] == '[') ? set_end(p, plen, i + 2) : i + 2;
                continue;
            }
            if (d >= '0' && d <= '9') {
                steps *= span;
                i += 2;
                continue;
            }
            end = i + 2;
        } else if (c == '[') {
            end = set_end(p, plen, i);
        }
        if (end < plen) {
            char q = p[end];
            if (q == '*' || q == '+' || q == '-') {
                steps *= span;
                end++;
            } else if (q == '?') {
                steps *= 2;
                end++;
            }
        }
        i = end;
    }
    return steps * ((double)plen + 1);
}

/* string.find/match/gmatch/gsub (upvalue 1) behind the step bound; upvalue
 * 2: true when a leading "^" anchors (not in gmatch). */
static int bounded_pattern(lua_State *L)
{
    size_t n, plen;
    luaL_checklstring(L, 1, &n);
    const char *p = luaL_checklstring(L, 2, &plen);
    bool anchor = lua_toboolean(L, lua_upvalueindex(2));
    bool plain = lua_toboolean(L, lua_upvalueindex(3)) && lua_toboolean(L, 4);
    if (!plain && pattern_steps(p, plen, n, anchor) > PATTERN_MAX_STEPS)
        return luaL_error(L, "pattern '%s' could backtrack for too long on a subject of %I bytes "
                          "(use fewer repeated items, or anchor it)", p, (lua_Integer)n);
    return call_original(L);
}

/* Items from lo to hi (0 when hi < lo), without overflow. */
static uint64_t span_of(lua_Integer lo, lua_Integer hi)
{
    if (hi < lo)
        return 0;
    uint64_t d = (uint64_t)hi - (uint64_t)lo;
    return d == UINT64_MAX ? d : d + 1;
}

/* string.rep(s, n, sep) loops n times even when s and sep are empty. */
static int charged_rep(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 2);
    if (n > 0)
        charge(L, (uint64_t)n);
    return call_original(L);
}

/* table.move(a1, f, e, t): e - f + 1 moves. */
static int charged_move(lua_State *L)
{
    charge(L, span_of(luaL_checkinteger(L, 2), luaL_checkinteger(L, 3)));
    return call_original(L);
}

/* table.insert(t, pos, v) shifts #t - pos + 1 items (#t may come from
 * __len); table.insert(t, v) shifts none. */
static int charged_insert(lua_State *L)
{
    if (lua_gettop(L) == 3)
        charge(L, span_of(luaL_checkinteger(L, 2), luaL_len(L, 1)));
    return call_original(L);
}

/* table.remove(t, pos) shifts #t - pos items. */
static int charged_remove(lua_State *L)
{
    if (lua_gettop(L) >= 2 && !lua_isnil(L, 2))
        charge(L, span_of(luaL_checkinteger(L, 2), luaL_len(L, 1)));
    return call_original(L);
}

/* table.concat(t, sep, i, j) reads j - i + 1 items. */
static int charged_concat(lua_State *L)
{
    lua_Integer i = luaL_optinteger(L, 3, 1);
    lua_Integer j = lua_isnoneornil(L, 4) ? luaL_len(L, 1) : luaL_checkinteger(L, 4);
    charge(L, span_of(i, j));
    return call_original(L);
}

/* table.sort(t): about n log2 n comparisons. */
static int charged_sort(lua_State *L)
{
    lua_Integer n = luaL_len(L, 1);
    if (n > 1) {
        uint64_t lg = 1;
        while (lg < 64 && ((uint64_t)1 << lg) < (uint64_t)n)
            lg++;
        uint64_t un = (uint64_t)n;
        charge(L, un > UINT64_MAX / lg ? UINT64_MAX : un * lg);
    }
    return call_original(L);
}

/* Replaces lib[name] with fn closed over the original (and `extra`
 * booleans as further upvalues). lib at index `lib`. */
static void wrap(lua_State *L, int lib, const char *name, lua_CFunction fn, int nextra,
                 const bool *extra)
{
    lua_getfield(L, lib, name);                             /* orig */
    for (int i = 0; i < nextra; i++)
        lua_pushboolean(L, extra[i]);
    lua_pushcclosure(L, fn, 1 + nextra);
    lua_setfield(L, lib, name);
}

static void arm(struct sandbox *s)
{
    s->spent = 0;
    s->ticks = 0;
    s->stop = NULL;
    s->cpu_start_ns = cpu_now_ns();
    lua_sethook(s->L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

static void disarm(struct sandbox *s)
{
    lua_sethook(s->L, NULL, 0, 0);
}

struct span {
    const char *p;
    size_t n;
};

static int push_span(lua_State *L)
{
    const struct span *sp = lua_touserdata(L, 1);
    lua_pushlstring(L, sp->p, sp->n);
    return 1;
}

/* Reads a whole file into a new Lua string on the stack. Returns 1 when
 * pushed, 0 when the file does not exist, raises on other errors. */
static int push_file(lua_State *L, const char *path)
{
    size_t n = 0;
    char *text = file_read(path, MAX_SCRIPT_BYTES, &n);
    if (text == NULL) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        if (errno == EFBIG)
            return luaL_error(L, "%s is larger than %d bytes", path, MAX_SCRIPT_BYTES);
        return luaL_error(L, "cannot read %s: %s", path, strerror(errno));
    }
    /* Copied in under a pcall: a memory error must not leak the text. */
    struct span sp = {text, n};
    lua_pushcfunction(L, push_span);
    lua_pushlightuserdata(L, &sp);
    int rc = lua_pcall(L, 1, 1, 0);
    free(text);
    if (rc != LUA_OK)
        return lua_error(L);
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

/* Remembers where module `name` came from, for sandbox_modules. Out of
 * memory only loses the note. */
static void note_module(struct sandbox *s, const char *name, const char *source)
{
    bool builtin = s->dir == NULL || strncmp(source, s->dir, strlen(s->dir)) != 0 ||
                   source[strlen(s->dir)] != '/';
    size_t add = strlen(name) + strlen(source) + 16;
    char *m = realloc(s->modules, s->modules_len + add);
    if (m == NULL)
        return;
    s->modules = m;
    int n = snprintf(m + s->modules_len, add, "%s\t%s\t%s\n", name,
                     builtin ? "built-in" : "dir", source);
    if (n > 0)
        s->modules_len += (size_t)n;
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
    note_module(s, name, lua_tostring(L, 4) + 1);
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

static double log_tokens = LOG_BURST;
static int64_t log_refilled_ms;
static uint64_t log_dropped_since;  /* dropped since the last line that passed */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Takes a token; false when the bucket is empty. */
static bool log_allowed(void)
{
    int64_t now = now_ms();
    if (log_refilled_ms == 0)
        log_refilled_ms = now;
    log_tokens += (double)(now - log_refilled_ms) * LOG_PER_SECOND / 1000.0;
    if (log_tokens > LOG_BURST)
        log_tokens = LOG_BURST;
    log_refilled_ms = now;
    if (log_tokens < 1.0)
        return false;
    log_tokens -= 1.0;
    return true;
}

static struct metric *log_dropped_counter(void)
{
    static struct metric *m;
    if (m == NULL)
        m = metrics_counter("envoy_router_script_log_dropped_total",
                            "host.log lines from scripts dropped by the rate limit.", NULL);
    return m;
}

/* host.log(level, message) from scripts, rate-limited: a script logging on
 * every call for thousands of pods must not flood the operator's log. */
static int sandbox_log(lua_State *L)
{
    const char *level = luaL_checkstring(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    enum log_level lv = LOG_INFO;
    if (log_level_parse(level, &lv) != 0)
        return luaL_error(L, "host.log: unknown level '%s'", level);
    if (!log_enabled(lv))
        return 0;
    if (!log_allowed()) {
        log_dropped_since++;
        metrics_add(log_dropped_counter(), NULL, 1);
        return 0;
    }
    if (log_dropped_since > 0) {
        char n[32];
        snprintf(n, sizeof n, "%llu", (unsigned long long)log_dropped_since);
        log_kv(LOG_WARN, "scripts: host.log lines dropped by the rate limit", "dropped", n, NULL);
        log_dropped_since = 0;
    }
    log_kv(lv, msg, "source", "script", NULL);
    return 0;
}

static bool listed(const char *const *list, const char *name)
{
    for (; *list; list++)
        if (strcmp(*list, name) == 0)
            return true;
    return false;
}

/* Removes from library lf->lib (a global, at G index 1) every field not
 * in lf->fields. */
static void trim_library(lua_State *L, const struct lib_fields *lf)
{
    lua_getfield(L, 1, lf->lib);                            /* G lib */
    int lib = lua_gettop(L);
    lua_newtable(L);                                        /* G lib doomed */
    lua_pushnil(L);
    while (lua_next(L, lib) != 0) {                         /* G lib doomed k v */
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING || !listed(lf->fields, lua_tostring(L, -1))) {
            lua_pushvalue(L, -1);
            lua_rawseti(L, lib + 1, (lua_Integer)lua_rawlen(L, lib + 1) + 1);
        }
    }
    for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, lib + 1); i++) {
        lua_rawgeti(L, lib + 1, i);
        lua_pushnil(L);
        lua_rawset(L, lib);
    }
    lua_pop(L, 2);                                          /* G */
}

/* __index of pod.metadata when router.lua did not ask for annotations:
 * the host's pod cache drops them then, so a read is a bug in the scripts,
 * not an absent field. */
static int undeclared_field(lua_State *L)
{
    const char *k = lua_tostring(L, 2);
    if (k != NULL && strcmp(k, "annotations") == 0)
        return luaL_error(L, "pod.metadata.annotations is read, but router.lua does not set "
                          "pod_annotations = true (without it the host keeps no pod annotations)");
    return 0;
}

/* Functions replaced by a closure over the original: the script's pcall
 * cannot swallow a spent budget, setmetatable is guarded, and the C functions
 * that loop where the count hook cannot see them are charged for their work.
 * lib NULL: a global. extra: the booleans wrap() passes on. */
static const struct wrapped {
    const char *lib, *name;
    lua_CFunction fn;
    int nextra;
    bool extra[2];
} wrapped[] = {
    {NULL, "pcall", guarded_pcall, 0, {false, false}},
    {NULL, "xpcall", guarded_pcall, 0, {false, false}},
    {NULL, "setmetatable", guarded_setmetatable, 0, {false, false}},
    {"string", "find", bounded_pattern, 2, {true, true}},
    {"string", "match", bounded_pattern, 2, {true, false}},
    {"string", "gsub", bounded_pattern, 2, {true, false}},
    {"string", "gmatch", bounded_pattern, 2, {false, false}},
    {"string", "rep", charged_rep, 0, {false, false}},
    {"table", "move", charged_move, 0, {false, false}},
    {"table", "insert", charged_insert, 0, {false, false}},
    {"table", "remove", charged_remove, 0, {false, false}},
    {"table", "concat", charged_concat, 0, {false, false}},
    {"table", "sort", charged_sort, 0, {false, false}},
    {NULL, NULL, NULL, 0, {false, false}},
};

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
    /* Trim each library to its allow-list: string.dump (bytecode, useless
     * without load), math.random (impure) and the 5.3 compatibility math
     * functions of Debian's build are not on it. */
    for (const struct lib_fields *lf = allowed_fields; lf->lib; lf++)
        trim_library(L, lf);
    for (const struct wrapped *w = wrapped; w->name; w++) {
        int lib = 1;
        if (w->lib != NULL) {
            lua_getfield(L, 1, w->lib);                     /* G lib */
            lib = 2;
        }
        wrap(L, lib, w->name, w->fn, w->nextra, w->extra);
        lua_settop(L, 1);                                   /* G */
    }
    lua_pushcfunction(L, sandbox_require);
    lua_setfield(L, 1, "require");
    lua_newtable(L);
    lua_pushcfunction(L, undeclared_field);
    lua_setfield(L, -2, "__index");
    lua_setfield(L, LUA_REGISTRYINDEX, "sandbox.metadata_guard");
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
    char err[512];
    if (selector_check(lua_tostring(L, -1), err, sizeof err) != 0)
        return luaL_error(L, "router.lua: %s", err);
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "children") != LUA_TFUNCTION)
        return luaL_error(L, "router.lua: 'children' must be a function(pod, config)");
    lua_pop(L, 1);
    int t = lua_getfield(L, -1, "pod_annotations");
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        return luaL_error(L, "router.lua: 'pod_annotations' must be a boolean");
    lua_pop(L, 1);
    return 1;
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
    s->cpu_limit_ns = (int64_t)(lim && lim->cpu_ms ? lim->cpu_ms : DEFAULT_CPU_MS) * 1000000;
    metrics_add(log_dropped_counter(), NULL, 0);            /* shown from the start */
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
    lua_pushcfunction(L, setup);
    if (luacall_protected(L, 0, 0, err, errlen) != LUA_OK)
        goto fail;
    lua_pushcfunction(L, load_router);
    arm(s);
    int rc = luacall_protected(L, 0, 1, err, errlen);
    disarm(s);
    if (rc != LUA_OK)
        goto fail;
    lua_getfield(L, -1, "selector");
    s->selector = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (s->selector == NULL)
        goto oom;
    lua_getfield(L, -1, "pod_annotations");
    s->annotations = lua_toboolean(L, -1);
    lua_pop(L, 1);
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
    free(s->modules);
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

const struct config *sandbox_config(const struct sandbox *s)
{
    return s->cfg;
}

const char *sandbox_modules(const struct sandbox *s)
{
    return s->modules ? s->modules : "";
}

bool sandbox_wants_annotations(const struct sandbox *s)
{
    return s->annotations;
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

static const struct luaval_limits output_limits = {
    SANDBOX_MAX_OUTPUT_NODES, SANDBOX_MAX_OUTPUT_BYTES,
};

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
    if (luaval_copy(c->from, c->pod_idx, S, &output_limits, err, sizeof err) != 0)
        return luaL_error(S, "cannot pass the pod to the scripts: %s", err);
    if (!c->s->annotations) {
        if (lua_getfield(S, -1, "metadata") == LUA_TTABLE) {
            lua_getfield(S, LUA_REGISTRYINDEX, "sandbox.metadata_guard");
            lua_setmetatable(S, -2);
        }
        lua_pop(S, 1);
    }
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
    lua_pushcfunction(S, call_children);
    lua_pushlightuserdata(S, &c);
    arm(s);
    int rc = luacall_protected(S, 1, 2, msg, msglen);       /* 1 r1, 2 r2 */
    disarm(s);
    if (rc != LUA_OK) {
        /* msg already holds the error with its traceback */
    } else if (lua_isnil(S, 1)) {
        const char *why = lua_tostring(S, 2);
        snprintf(msg, msglen, "%s", why ? why : "no reason given");
        lua_pushnil(L);
        ret = 0;
    } else if (lua_istable(S, 1)) {
        if (luaval_copy(S, 1, L, &output_limits, msg, msglen) == 0)
            ret = 1;
        else
            snprintf(msg + strlen(msg), msglen - strlen(msg), " (children() output; at most %u "
                     "values, %u bytes)", SANDBOX_MAX_OUTPUT_NODES, SANDBOX_MAX_OUTPUT_BYTES);
    } else {
        snprintf(msg, msglen, "children() returned a %s; want a list of objects, "
                 "or nil and a reason", luaL_typename(S, 1));
    }
    lua_settop(S, 0);
    if (ret < 0)
        lua_gc(S, LUA_GCCOLLECT);   /* give back what a failed call held */
    return ret;
}
