/* core: see core.h. The logic is in host/core.lua; this file is the glue:
 * the state, the host.* functions core.lua calls, and typed wrappers. */
#include "core.h"

#include <lauxlib.h>
#include <lualib.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canon.h"
#include "dup.h"
#include "embedded.h"
#include "kubepath.h"
#include "luacall.h"
#include "log.h"
#include "names.h"
#include "pool.h"
#include "timers.h"

/* Percent of heap growth over the live caches that starts a collection
 * cycle of the core state (Lua's default is 200: the heap may double). */
#define CORE_GC_PAUSE 120

/* lua-cjson exports its opener but ships no header. */
int luaopen_cjson(lua_State *L);

const char *const core_child_resources[3] = {"services", "endpointslices", "httproutes"};

struct core {
    lua_State *L;
    struct pool *pool;           /* L's memory: see pool.h */
    int module_ref;              /* the table core.lua returned */
    struct sandbox *sb;          /* renders host.render calls */
    core_enqueue_fn enqueue;
    void *arg;
    int64_t (*clock)(void);      /* host.now_ms; clock_ms unless a test sets one */
    int64_t drain_ms;            /* host.drain_ms */
};

static const char core_key = 'C';

static struct core *core_of(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &core_key);
    struct core *c = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return c;
}

/* An error outside any protected call: the state cannot go on. */
static int panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    log_error("core: unprotected Lua error: %s", msg ? msg : "(not a string)");
    return 0; /* Lua aborts */
}

/* host.enqueue(key) */
static int l_enqueue(lua_State *L)
{
    struct core *c = core_of(L);
    const char *key = luaL_checkstring(L, 1);
    if (c->enqueue)
        c->enqueue(c->arg, key);
    return 0;
}

/* host.now_ms() -> milliseconds of the core's clock */
static int l_now_ms(lua_State *L)
{
    struct core *c = core_of(L);
    lua_pushinteger(L, (lua_Integer)(c->clock ? c->clock() : clock_ms()));
    return 1;
}

/* host.drain_ms() -> the route drain delay in milliseconds */
static int l_drain_ms(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)core_of(L)->drain_ms);
    return 1;
}

/* host.render(pod) -> list | nil, reason | false, error */
static int l_render(lua_State *L)
{
    struct core *c = core_of(L);
    char msg[4096];
    luaL_checktype(L, 1, LUA_TTABLE);
    if (c->sb == NULL) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "no scripts are loaded");
        return 2;
    }
    int rc = sandbox_children(c->sb, L, 1, msg, sizeof msg);
    if (rc == 1)
        return 1;                       /* the list */
    if (rc == 0) {                      /* nil was pushed */
        lua_pushstring(L, msg);
        return 2;
    }
    lua_pushboolean(L, 0);
    lua_pushstring(L, msg);
    return 2;
}

/* host.keep_annotations() -> whether the scripts read pod annotations */
static int l_keep_annotations(lua_State *L)
{
    struct core *c = core_of(L);
    lua_pushboolean(L, c->sb != NULL && sandbox_wants_annotations(c->sb));
    return 1;
}

/* host.valid(rule, s) -> boolean */
static int l_valid(lua_State *L)
{
    const char *rule = luaL_checkstring(L, 1);
    const char *s = luaL_checkstring(L, 2);
    bool ok;
    if (strcmp(rule, "dns1035") == 0)
        ok = names_dns1035_label(s);
    else if (strcmp(rule, "subdomain") == 0)
        ok = names_dns1123_subdomain(s);
    else if (strcmp(rule, "label_key") == 0)
        ok = names_label_key(s);
    else if (strcmp(rule, "label_value") == 0)
        ok = names_label_value(s);
    else
        return luaL_error(L, "host.valid: unknown rule '%s'", rule);
    lua_pushboolean(L, ok);
    return 1;
}

/* host.path(apiVersion, kind, namespace, name|nil) -> path */
static int l_path(lua_State *L)
{
    const char *api = luaL_checkstring(L, 1);
    const char *kind = luaL_checkstring(L, 2);
    const char *ns = luaL_optstring(L, 3, NULL);
    const char *name = luaL_optstring(L, 4, NULL);
    const struct kube_resource *r = kube_resource_find(api, kind);
    if (r == NULL)
        return luaL_error(L, "host.path: unknown resource %s %s", api, kind);
    char buf[1024];
    if (kube_path(buf, sizeof buf, r, ns, name, NULL) < 0)
        return luaL_error(L, "host.path: path too long");
    lua_pushstring(L, buf);
    return 1;
}

/* host.gateway() -> name, namespace|nil: the Gateway routes must attach
 * to, as the scripts see it in their config ("" name: the default). */
static int l_gateway(lua_State *L)
{
    struct core *c = core_of(L);
    const struct config *cfg = c->sb ? sandbox_config(c->sb) : NULL;
    const char *name = cfg && cfg->gateway_name && *cfg->gateway_name ? cfg->gateway_name
                                                                       : "envoy-router";
    lua_pushstring(L, name);
    if (cfg && cfg->gateway_namespace && *cfg->gateway_namespace)
        lua_pushstring(L, cfg->gateway_namespace);
    else
        lua_pushnil(L);
    return 2;
}

/* host.hash(v) -> FNV-1a of v's canonical text (canon.h), 16 lowercase
 * hex digits. (In Lua, the text took about 19 us for a 800-byte object and
 * its byte loop 33 us, and a pod's plans hash about twenty.) */
static int l_hash(lua_State *L)
{
    luaL_checkany(L, 1);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)canon_hash(L, 1));
    lua_pushstring(L, hex);
    return 1;
}

/* Protected set-up: libraries, the host table, core.lua. */
static int setup(lua_State *L)
{
    static const luaL_Reg libs[] = {
        {"_G", luaopen_base}, {LUA_STRLIBNAME, luaopen_string},
        {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
        {NULL, NULL},
    };
    static const luaL_Reg host[] = {
        {"enqueue", l_enqueue}, {"render", l_render},
        {"valid", l_valid}, {"path", l_path}, {"gateway", l_gateway}, {"now_ms", l_now_ms},
        {"drain_ms", l_drain_ms}, {"keep_annotations", l_keep_annotations},
        {"hash", l_hash}, {NULL, NULL},
    };
    for (const luaL_Reg *lib = libs; lib->func; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    const struct embedded_file *f = embedded_files;
    while (f->module && strcmp(f->module, "host.core") != 0)
        f++;
    if (f->module == NULL)
        return luaL_error(L, "host/core.lua is not compiled in");
    if (luaL_loadbufferx(L, f->data, f->len, "@host/core.lua", "t") != LUA_OK)
        return lua_error(L);
    luaL_newlib(L, host);
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_call(L, 2, 1);
    if (!lua_istable(L, -1))
        return luaL_error(L, "host/core.lua did not return a table");
    return 1;
}

struct core *core_new(struct sandbox *sb, core_enqueue_fn enqueue, void *arg,
                      char *err, size_t errlen)
{
    struct core *c = calloc(1, sizeof *c);
    /* The caches are many small objects that live long: the pool keeps
     * them without malloc's per-chunk header, and gives a page back as
     * soon as a burst's garbage on it is collected. */
    if (c == NULL || (c->pool = pool_new()) == NULL ||
        (c->L = lua_newstate(pool_alloc, c->pool)) == NULL) {
        snprintf(err, errlen, "out of memory");
        core_free(c);
        return NULL;
    }
    lua_atpanic(c->L, panic);
    c->sb = sb;
    c->enqueue = enqueue;
    c->arg = arg;
    lua_State *L = c->L;
    lua_pushlightuserdata(L, c);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &core_key);
    lua_pushcfunction(L, setup);
    if (luacall_protected(L, 0, 1, err, errlen) != LUA_OK) {
        core_free(c);
        return NULL;
    }
    c->module_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    /* The caches are a large set of long-lived small objects, and every
     * event leaves a little garbage: with Lua's default pause (a new cycle
     * once the heap has doubled) the heap would stay near twice the live
     * caches. A cycle at +CORE_GC_PAUSE% keeps it close to them, for a
     * little more collector work per event. */
    lua_gc(L, LUA_GCINC, CORE_GC_PAUSE, 0, 0);
    return c;
}

void core_set_drain(struct core *c, int64_t drain_ms)
{
    c->drain_ms = drain_ms;
}

void core_set_clock(struct core *c, int64_t (*clock)(void))
{
    c->clock = clock;
}

void core_free(struct core *c)
{
    if (c == NULL)
        return;
    if (c->L)
        lua_close(c->L);
    pool_free(c->pool);
    free(c);
}

void core_set_sandbox(struct core *c, struct sandbox *sb)
{
    c->sb = sb;
}

/* Pushes core.lua's module table (index 1) and its function `fn` (2). */
static void prepare(struct core *c, const char *fn)
{
    lua_State *L = c->L;
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->module_ref);
    lua_getfield(L, -1, fn);
}

/* core.lua failed inside a call whose caller cannot take an error: said
 * once, here, with the function and the traceback. */
static void report(const char *fn, const char *err)
{
    log_kv(LOG_ERROR, "core: host/core.lua failed", "function", fn, "error", err, NULL);
}

/* Calls what prepare pushed with nargs arguments; results from index 2. */
static int invoke(struct core *c, int nargs, int nresults, char *err, size_t errlen)
{
    if (luacall_protected(c->L, nargs, nresults, err, errlen) != LUA_OK) {
        lua_settop(c->L, 0);
        return -1;
    }
    return 0;
}

static char *dup_field(lua_State *L, int idx, const char *field, size_t *len)
{
    char *out = NULL;
    lua_getfield(L, idx, field);
    size_t n = 0;
    const char *s = lua_tolstring(L, -1, &n);
    if ((out = dup_mem(s, n)) != NULL && len)
        *len = n;
    lua_pop(L, 1);
    return out;
}

static char *dup_at(lua_State *L, int idx)
{
    const char *s = lua_tostring(L, idx);
    return s ? strdup(s) : NULL;
}

int core_validate(struct core *c, struct sandbox *candidate, char *err, size_t errlen)
{
    struct sandbox *old = c->sb;
    int rc = 0;
    c->sb = candidate;
    prepare(c, "validate");
    if (invoke(c, 0, 1, err, errlen) != 0) {
        rc = -1;
    } else if (!lua_isnil(c->L, 2)) {
        luacall_message(c->L, 2, err, errlen);
        rc = -1;
    }
    lua_settop(c->L, 0);
    c->sb = old;
    return rc;
}

int core_validate_begin(struct core *c, char *err, size_t errlen)
{
    prepare(c, "validate_begin");
    if (invoke(c, 0, 1, err, errlen) != 0)
        return -1;
    int n = (int)lua_tointeger(c->L, 2);
    lua_settop(c->L, 0);
    return n;
}

int core_validate_step(struct core *c, struct sandbox *candidate, int64_t budget_ms,
                       char *err, size_t errlen)
{
    struct sandbox *old = c->sb;
    int64_t deadline = budget_ms > INT64_MAX - clock_ms() ? INT64_MAX : clock_ms() + budget_ms;
    int rc = 0;
    c->sb = candidate;
    do {
        prepare(c, "validate_next");
        if (invoke(c, 0, 2, err, errlen) != 0) {
            rc = -1;
            break;
        }
        const char *state = lua_tostring(c->L, 2);
        if (state != NULL && strcmp(state, "done") == 0) {
            rc = 1;
            break;
        }
        if (state == NULL || strcmp(state, "failed") == 0) {
            luacall_message(c->L, 3, err, errlen);
            rc = -1;
            break;
        }
    } while (clock_ms() < deadline);
    lua_settop(c->L, 0);
    c->sb = old;
    return rc;
}

int core_list_begin(struct core *c, const char *res)
{
    char err[256];
    prepare(c, "list_begin");
    lua_pushstring(c->L, res);
    int rc = invoke(c, 1, 0, err, sizeof err);
    if (rc != 0)
        report("list_begin", err);
    lua_settop(c->L, 0);
    return rc;
}

int core_list_page(struct core *c, const char *res, const char *body, size_t len,
                   char **rv, char **cont, char *err, size_t errlen)
{
    *rv = *cont = NULL;
    prepare(c, "list_page");
    lua_pushstring(c->L, res);
    lua_pushlstring(c->L, body, len);
    if (invoke(c, 2, 2, err, errlen) != 0)
        return -1;
    *rv = dup_at(c->L, 2);
    *cont = dup_at(c->L, 3);
    lua_settop(c->L, 0);
    return 0;
}

int core_list_end(struct core *c, const char *res)
{
    char err[256];
    prepare(c, "list_end");
    lua_pushstring(c->L, res);
    int rc = invoke(c, 1, 0, err, sizeof err);
    if (rc != 0)
        report("list_end", err);
    lua_settop(c->L, 0);
    /* A list's pages were decoded whole: hand their garbage back to the
     * system now rather than keep the heap at its peak. */
    core_trim(c);
    return rc;
}

int core_watch_event(struct core *c, const char *res, const char *line, size_t len,
                     char **rv, long *code, char *err, size_t errlen)
{
    *rv = NULL;
    *code = 0;
    prepare(c, "watch_event");
    lua_pushstring(c->L, res);
    lua_pushlstring(c->L, line, len);
    if (invoke(c, 2, 4, err, errlen) != 0)
        return -1;
    *rv = dup_at(c->L, 3);
    if (lua_isinteger(c->L, 4)) {
        *code = (long)lua_tointeger(c->L, 4);
        luacall_message(c->L, 5, err, errlen);
    }
    lua_settop(c->L, 0);
    return 0;
}

/* Reads the plan table at index idx into *plan. Raises on memory errors. */
static int read_plan(lua_State *L, int idx, struct core_plan *plan)
{
    memset(plan, 0, sizeof *plan);
    plan->error = dup_field(L, idx, "error", NULL);
    if (lua_getfield(L, idx, "pod") == LUA_TTABLE) {
        plan->has_pod = true;
        plan->pod_name = dup_field(L, -1, "name", NULL);
        plan->pod_namespace = dup_field(L, -1, "namespace", NULL);
        plan->pod_uid = dup_field(L, -1, "uid", NULL);
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "requeue_ms");
    plan->requeue_ms = lua_isinteger(L, -1) ? (int64_t)lua_tointeger(L, -1) : 0;
    lua_pop(L, 1);
    lua_getfield(L, idx, "actions");
    size_t n = lua_rawlen(L, -1);
    if (n > 0 && (plan->actions = calloc(n, sizeof *plan->actions)) == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct core_action *a = &plan->actions[i];
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        int t = lua_gettop(L);
        a->verb = dup_field(L, t, "verb", NULL);
        a->res = dup_field(L, t, "res", NULL);
        a->key = dup_field(L, t, "key", NULL);
        a->kind = dup_field(L, t, "kind", NULL);
        a->method = dup_field(L, t, "method", NULL);
        a->path = dup_field(L, t, "path", NULL);
        a->content_type = dup_field(L, t, "content_type", NULL);
        a->body = dup_field(L, t, "body", &a->body_len);
        a->why = dup_field(L, t, "why", NULL);
        lua_pop(L, 1);
        plan->n_actions++;
        if (!a->verb || !a->res || !a->key || !a->method || !a->path || !a->body)
            return -1;
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "problems");
    n = lua_rawlen(L, -1);
    if (n > 0 && (plan->problems = calloc(n, sizeof *plan->problems)) == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        plan->problems[i].reason = dup_field(L, lua_gettop(L), "reason", NULL);
        plan->problems[i].message = dup_field(L, lua_gettop(L), "message", NULL);
        lua_getfield(L, -1, "notice");
        plan->problems[i].notice = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_pop(L, 1);
        plan->n_problems++;
    }
    lua_pop(L, 1);
    return 0;
}

int core_reconcile(struct core *c, const char *key, struct core_plan *plan,
                   char *err, size_t errlen)
{
    memset(plan, 0, sizeof *plan);
    prepare(c, "reconcile");
    lua_pushstring(c->L, key);
    if (invoke(c, 1, 1, err, errlen) != 0)
        return -1;
    int rc = read_plan(c->L, 2, plan);
    lua_settop(c->L, 0);
    if (rc != 0) {
        core_plan_free(plan);
        snprintf(err, errlen, "out of memory reading the plan of %s", key);
    }
    return rc;
}

void core_plan_free(struct core_plan *plan)
{
    for (size_t i = 0; i < plan->n_actions; i++) {
        struct core_action *a = &plan->actions[i];
        free(a->verb), free(a->res), free(a->key), free(a->kind);
        free(a->method), free(a->path), free(a->content_type), free(a->body);
        free(a->why);
    }
    for (size_t i = 0; i < plan->n_problems; i++)
        free(plan->problems[i].reason), free(plan->problems[i].message);
    free(plan->actions);
    free(plan->problems);
    free(plan->error);
    free(plan->pod_name);
    free(plan->pod_namespace);
    free(plan->pod_uid);
    memset(plan, 0, sizeof *plan);
}

enum core_outcome core_result(struct core *c, const struct core_action *a, long status,
                              const char *body, size_t len)
{
    char err[512];
    enum core_outcome out = CORE_RETRY;
    prepare(c, "result");
    lua_pushstring(c->L, a->res);
    lua_pushstring(c->L, a->key);
    lua_pushstring(c->L, a->verb);
    lua_pushinteger(c->L, status);
    lua_pushlstring(c->L, body ? body : "", body ? len : 0);
    if (invoke(c, 5, 1, err, sizeof err) != 0) {
        report("result", err);
        return CORE_RETRY;
    }
    const char *s = lua_tostring(c->L, 2);
    if (s && strcmp(s, "ok") == 0)
        out = CORE_OK;
    else if (s && strcmp(s, "conflict") == 0)
        out = CORE_CONFLICT;
    else if (s && strcmp(s, "rejected") == 0)
        out = CORE_REJECTED;
    lua_settop(c->L, 0);
    return out;
}

char *core_render(struct core *c, const char *pod_json, size_t len, char *err, size_t errlen)
{
    prepare(c, "render");
    lua_pushlstring(c->L, pod_json, len);
    if (invoke(c, 1, 2, err, errlen) != 0)
        return NULL;
    char *out = NULL;
    if (lua_isstring(c->L, 2)) {
        if ((out = dup_at(c->L, 2)) == NULL)
            snprintf(err, errlen, "out of memory");
    } else {
        luacall_message(c->L, 3, err, errlen);
    }
    lua_settop(c->L, 0);
    return out;
}

int core_check(struct core *c, char *err, size_t errlen)
{
    const struct embedded_file *f = embedded_files;
    while (f->module && strcmp(f->module, "host.fixtures") != 0)
        f++;
    if (f->module == NULL) {
        snprintf(err, errlen, "host/fixtures.lua is not compiled in");
        return -1;
    }
    prepare(c, "check");
    if (luaL_loadbufferx(c->L, f->data, f->len, "@host/fixtures.lua", "t") != LUA_OK) {
        luacall_message(c->L, -1, err, errlen);
        lua_settop(c->L, 0);
        return -1;
    }
    if (luacall_protected(c->L, 0, 1, err, errlen) != LUA_OK) {
        lua_settop(c->L, 0);
        return -1;
    }
    if (invoke(c, 1, 2, err, errlen) != 0)
        return -1;
    int n = -1;
    if (lua_isinteger(c->L, 2))
        n = (int)lua_tointeger(c->L, 2);
    else
        luacall_message(c->L, 3, err, errlen);
    lua_settop(c->L, 0);
    return n;
}

size_t core_enqueue_all(struct core *c)
{
    char err[256];
    size_t n = 0;
    prepare(c, "enqueue_all");
    if (invoke(c, 0, 1, err, sizeof err) == 0)
        n = (size_t)lua_tointeger(c->L, 2);
    else
        report("enqueue_all", err);
    lua_settop(c->L, 0);
    return n;
}

void core_writes_cancelled(struct core *c)
{
    char err[256];
    prepare(c, "writes_cancelled");
    if (invoke(c, 0, 0, err, sizeof err) != 0)
        report("writes_cancelled", err);
    lua_settop(c->L, 0);
}

void core_stats(struct core *c, size_t *managed, size_t *pods, size_t *children)
{
    char err[256];
    *managed = *pods = *children = 0;
    prepare(c, "stats");
    if (invoke(c, 0, 3, err, sizeof err) == 0) {
        *managed = (size_t)lua_tointeger(c->L, 2);
        *pods = (size_t)lua_tointeger(c->L, 3);
        *children = (size_t)lua_tointeger(c->L, 4);
    } else {
        report("stats", err);
    }
    lua_settop(c->L, 0);
}

void core_route_states(struct core *c, int64_t now_ms, size_t *accepted, size_t *not_accepted,
                       size_t *unresolved, size_t *pending)
{
    char err[256];
    *accepted = *not_accepted = *unresolved = *pending = 0;
    prepare(c, "route_states");
    lua_pushinteger(c->L, now_ms);
    if (invoke(c, 1, 4, err, sizeof err) == 0) {
        *accepted = (size_t)lua_tointeger(c->L, 2);
        *not_accepted = (size_t)lua_tointeger(c->L, 3);
        *unresolved = (size_t)lua_tointeger(c->L, 4);
        *pending = (size_t)lua_tointeger(c->L, 5);
    }
    lua_settop(c->L, 0);
}

size_t core_memory(struct core *c)
{
    lua_gc(c->L, LUA_GCCOLLECT);
    return (size_t)lua_gc(c->L, LUA_GCCOUNT) * 1024u + (size_t)lua_gc(c->L, LUA_GCCOUNTB);
}

void core_trim(struct core *c)
{
    lua_gc(c->L, LUA_GCCOLLECT);
    pool_tidy(c->pool);
    malloc_trim(0);
    if (log_enabled(LOG_DEBUG)) {
        size_t lua = (size_t)lua_gc(c->L, LUA_GCCOUNT);
        log_debug("core: trimmed: Lua heap %zu KiB, its pool %zu KiB touched in %zu pages", lua,
                  pool_touched(c->pool) / 1024, pool_pages(c->pool));
    }
}

/* Copies the string at idx into buf (cut to fit; "" when not a string). */
static void copy_at(lua_State *L, int idx, char *buf, size_t len)
{
    const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : "";
    snprintf(buf, len, "%s", s);
}

int core_lease_parse(struct core *c, const char *text, size_t len, struct core_lease *out,
                     char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    prepare(c, "lease_parse");
    lua_pushlstring(c->L, text, len);
    if (invoke(c, 1, 5, err, errlen) != 0)
        return -1;
    if (lua_isnil(c->L, 2)) {
        luacall_message(c->L, 3, err, errlen);
        lua_settop(c->L, 0);
        return -1;
    }
    copy_at(c->L, 2, out->holder, sizeof out->holder);
    out->lease_seconds = (int)lua_tointeger(c->L, 3);
    copy_at(c->L, 4, out->acquire_time, sizeof out->acquire_time);
    copy_at(c->L, 5, out->renew_time, sizeof out->renew_time);
    out->transitions = (int)lua_tointeger(c->L, 6);
    lua_settop(c->L, 0);
    return 0;
}

char *core_lease_body(struct core *c, const char *base, size_t base_len, const char *ns,
                      const char *name, const struct core_lease *rec, size_t *len,
                      char *err, size_t errlen)
{
    char *out = NULL;
    prepare(c, "lease_body");
    if (base)
        lua_pushlstring(c->L, base, base_len);
    else
        lua_pushnil(c->L);
    lua_pushstring(c->L, ns);
    lua_pushstring(c->L, name);
    lua_pushstring(c->L, rec->holder);
    lua_pushinteger(c->L, rec->lease_seconds);
    lua_pushstring(c->L, rec->acquire_time);
    lua_pushstring(c->L, rec->renew_time);
    lua_pushinteger(c->L, rec->transitions);
    if (invoke(c, 8, 2, err, errlen) != 0)
        return NULL;
    if (!lua_isstring(c->L, 2))
        luacall_message(c->L, 3, err, errlen);
    else if ((out = dup_at(c->L, 2)) == NULL)
        snprintf(err, errlen, "out of memory");
    else
        *len = strlen(out);             /* JSON text holds no NUL */
    lua_settop(c->L, 0);
    return out;
}
