/* Leader election: the timing decisions as pure functions, the Lease read
 * and built by the core state, then whole electors (with short timings)
 * against a fake Lease API on 127.0.0.1 that keeps one Lease and enforces
 * resourceVersion preconditions like the API server does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "kube.h"
#include "leader.h"
#include "log.h"
#include "metrics.h"
#include "timers.h"

int luaopen_cjson(lua_State *L);

/* --- pure decisions ------------------------------------------------------------ */

static struct core_lease rec(const char *holder, int secs, const char *renew, int transitions)
{
    struct core_lease r;
    memset(&r, 0, sizeof r);
    snprintf(r.holder, sizeof r.holder, "%s", holder);
    r.lease_seconds = secs;
    snprintf(r.acquire_time, sizeof r.acquire_time, "2020-01-01T00:00:00.000000Z");
    snprintf(r.renew_time, sizeof r.renew_time, "%s", renew);
    r.transitions = transitions;
    return r;
}

static void test_should_acquire(void **state)
{
    (void)state;
    /* Free: no holder. */
    assert_true(leader_should_acquire(0, 0, 15, "", "me"));
    assert_true(leader_should_acquire(0, 0, 15, NULL, "me"));
    /* Ours already: a renewal. */
    assert_true(leader_should_acquire(1000, 0, 15, "me", "me"));
    /* Another's, still valid up to observed + duration (exclusive). */
    assert_false(leader_should_acquire(0, 0, 15, "other", "me"));
    assert_false(leader_should_acquire(14999, 0, 15, "other", "me"));
    assert_true(leader_should_acquire(15000, 0, 15, "other", "me"));
    assert_false(leader_should_acquire(20000, 6000, 15, "other", "me"));
    assert_true(leader_should_acquire(21000, 6000, 15, "other", "me"));
    /* The holder's own duration counts (a released Lease has 1 s). */
    assert_true(leader_should_acquire(1000, 0, 1, "other", "me"));
    assert_false(leader_lease_expired(999, 0, 1));
}

static void test_observed_time_is_local(void **state)
{
    struct leader_observation o;
    struct core_lease a = rec("other", 15, "2000-01-01T00:00:00.000000Z", 3);
    struct core_lease b = rec("other", 15, "2000-01-01T00:00:02.000000Z", 3);
    (void)state;

    memset(&o, 0, sizeof o);
    /* A renewTime decades old means nothing: what counts is when WE saw it. */
    leader_observe(&o, &a, 100000);
    assert_true(o.have);
    assert_int_equal(o.observed_ms, 100000);
    assert_false(leader_should_acquire(110000, o.observed_ms, 15, o.record.holder, "me"));
    /* Read again unchanged: the clock keeps running from the first sight. */
    leader_observe(&o, &a, 110000);
    assert_int_equal(o.observed_ms, 100000);
    assert_true(leader_should_acquire(115000, o.observed_ms, 15, o.record.holder, "me"));
    /* The holder renewed (the record changed): the clock starts again. */
    leader_observe(&o, &b, 114000);
    assert_int_equal(o.observed_ms, 114000);
    assert_false(leader_should_acquire(115000, o.observed_ms, 15, o.record.holder, "me"));
    assert_true(leader_should_acquire(129000, o.observed_ms, 15, o.record.holder, "me"));
    /* Any field is a change. */
    struct core_lease c = b;
    c.transitions++;
    assert_true(leader_record_changed(&b, &c));
    c = b;
    c.lease_seconds = 1;
    assert_true(leader_record_changed(&b, &c));
    c = b;
    snprintf(c.holder, sizeof c.holder, "x");
    assert_true(leader_record_changed(&b, &c));
    assert_false(leader_record_changed(&b, &b));
}

static void test_step_down(void **state)
{
    (void)state;
    assert_false(leader_should_step_down(0, 0, 10000));
    assert_false(leader_should_step_down(9999, 0, 10000));
    assert_true(leader_should_step_down(10000, 0, 10000));
    assert_false(leader_should_step_down(12000, 2001, 10000));
    /* The renew deadline ends leadership before the others' lease runs
     * out (15 s counted from their sight of our last renewal). */
    assert_true(LEADER_RENEW_DEADLINE_MS < LEADER_LEASE_SECONDS * 1000);
}

static void test_record_next(void **state)
{
    struct core_lease out;
    struct core_lease mine = rec("me", 15, "2020-01-01T00:00:05.000000Z", 4);
    struct core_lease theirs = rec("other", 15, "2020-01-01T00:00:05.000000Z", 4);
    struct core_lease released = rec("", 1, "2020-01-01T00:00:05.000000Z", 4);
    (void)state;

    /* A renewal keeps acquireTime and the transition count. */
    leader_record_next(&mine, true, "me", 15, "NOW", &out);
    assert_string_equal(out.holder, "me");
    assert_string_equal(out.renew_time, "NOW");
    assert_string_equal(out.acquire_time, "2020-01-01T00:00:00.000000Z");
    assert_int_equal(out.transitions, 4);
    assert_int_equal(out.lease_seconds, 15);
    /* A takeover (expired or released) is one more transition. */
    leader_record_next(&theirs, true, "me", 15, "NOW", &out);
    assert_string_equal(out.holder, "me");
    assert_string_equal(out.acquire_time, "NOW");
    assert_int_equal(out.transitions, 5);
    leader_record_next(&released, true, "me", 15, "NOW", &out);
    assert_int_equal(out.transitions, 5);
    assert_int_equal(out.lease_seconds, 15);
    /* A new Lease starts at 0. */
    leader_record_next(&mine, false, "me", 15, "NOW", &out);
    assert_int_equal(out.transitions, 0);
    assert_string_equal(out.acquire_time, "NOW");
}

static void test_micro_time_and_identity(void **state)
{
    char buf[64], small[8];
    (void)state;

    leader_micro_time(0, buf, sizeof buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000000Z");
    leader_micro_time(1700000000.25, buf, sizeof buf);
    assert_string_equal(buf, "2023-11-14T22:13:20.250000Z");

    assert_int_equal(leader_default_identity(buf, sizeof buf), 0);
    char *us = strrchr(buf, '_');
    assert_non_null(us);
    assert_true(us > buf);
    assert_int_equal(strlen(us + 1), 16);
    assert_int_equal(strspn(us + 1, "0123456789abcdef"), 16);
    char again[64];
    assert_int_equal(leader_default_identity(again, sizeof again), 0);
    assert_string_not_equal(buf, again);
    assert_int_equal(leader_default_identity(small, sizeof small), -1);
}

/* --- the Lease as JSON (core_lease_parse, core_lease_body) ---------------------- */

/* Evaluates Lua `expr` with `o` bound to the decoded JSON `text` and
 * returns the result as text in out ("" for nil). */
static void json_eval(const char *text, const char *expr, char *out, size_t len)
{
    lua_State *L = luaL_newstate();
    char code[512];
    assert_non_null(L);
    luaL_openlibs(L);
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_setglobal(L, "cjson");
    snprintf(code, sizeof code, "local o = cjson.decode(...); return %s", expr);
    assert_int_equal(luaL_loadstring(L, code), LUA_OK);
    lua_pushstring(L, text);
    assert_int_equal(lua_pcall(L, 1, 1, 0), LUA_OK);
    const char *v = lua_isnil(L, -1) ? "" : lua_tostring(L, -1);
    snprintf(out, len, "%s", v ? v : "?");
    lua_close(L);
}

static int core_setup(void **state)
{
    char err[256];
    struct core *c = core_new(NULL, NULL, NULL, err, sizeof err);
    assert_non_null(c);
    *state = c;
    return 0;
}

static int core_teardown(void **state)
{
    core_free(*state);
    return 0;
}

static int parse_text(struct core *c, const char *text, struct core_lease *out, char *err,
                      size_t errlen)
{
    return core_lease_parse(c, text, strlen(text), out, err, errlen);
}

static void test_lease_parse(void **state)
{
    struct core *c = *state;
    struct core_lease r;
    char err[256], holder[400];

    assert_int_equal(parse_text(c, "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
                                   "\"metadata\":{\"name\":\"lock\",\"resourceVersion\":\"7\"},"
                                   "\"spec\":{\"holderIdentity\":\"pod-a_12\","
                                   "\"leaseDurationSeconds\":15,"
                                   "\"acquireTime\":\"2024-05-01T10:00:00.000000Z\","
                                   "\"renewTime\":\"2024-05-01T10:00:08.500000Z\","
                                   "\"leaseTransitions\":3}}", &r, err, sizeof err), 0);
    assert_string_equal(r.holder, "pod-a_12");
    assert_int_equal(r.lease_seconds, 15);
    assert_string_equal(r.acquire_time, "2024-05-01T10:00:00.000000Z");
    assert_string_equal(r.renew_time, "2024-05-01T10:00:08.500000Z");
    assert_int_equal(r.transitions, 3);

    /* A Lease without a spec (or with one not yet written) is free. */
    assert_int_equal(parse_text(c, "{\"metadata\":{\"name\":\"lock\"}}", &r, err, sizeof err), 0);
    assert_string_equal(r.holder, "");
    assert_int_equal(r.lease_seconds, 0);
    assert_string_equal(r.renew_time, "");
    assert_int_equal(r.transitions, 0);
    assert_int_equal(parse_text(c, "{\"metadata\":{},\"spec\":{\"holderIdentity\":null}}", &r,
                                err, sizeof err), 0);
    assert_string_equal(r.holder, "");

    /* Ill-typed or out-of-range fields read as absent, not as garbage. */
    assert_int_equal(parse_text(c, "{\"metadata\":{},\"spec\":{\"holderIdentity\":42,"
                                   "\"leaseDurationSeconds\":1.5,\"acquireTime\":{},"
                                   "\"renewTime\":[1],\"leaseTransitions\":-2}}", &r, err,
                                sizeof err), 0);
    assert_string_equal(r.holder, "");
    assert_int_equal(r.lease_seconds, 0);
    assert_string_equal(r.acquire_time, "");
    assert_string_equal(r.renew_time, "");
    assert_int_equal(r.transitions, 0);
    assert_int_equal(parse_text(c, "{\"metadata\":{},\"spec\":{\"leaseDurationSeconds\":"
                                   "1e12,\"leaseTransitions\":1000000000}}", &r, err,
                                sizeof err), 0);
    assert_int_equal(r.lease_seconds, 0);
    assert_int_equal(r.transitions, 1000000000);

    /* A holder longer than the record holds is cut, not overrun. */
    memset(holder, 'h', sizeof holder);
    char text[600];
    snprintf(text, sizeof text, "{\"metadata\":{},\"spec\":{\"holderIdentity\":\"%.*s\"}}",
             (int)(sizeof holder - 1), holder);
    assert_int_equal(parse_text(c, text, &r, err, sizeof err), 0);
    assert_int_equal(strlen(r.holder), sizeof r.holder - 1);
}

static void test_lease_parse_malformed(void **state)
{
    struct core *c = *state;
    struct core_lease r;
    char err[256];
    static const char *const bad[] = {
        "", "{\"metadata\":", "not json", "[]", "42", "\"Lease\"", "null", "{}",
        "{\"metadata\":\"lock\"}", "{\"kind\":\"Status\",\"code\":500}",
    };

    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        memset(&r, 'x', sizeof r);
        assert_int_equal(parse_text(c, bad[i], &r, err, sizeof err), -1);
        /* The reason is said, and the record is left empty, never stale. */
        assert_true(strstr(err, "not JSON") != NULL || strstr(err, "not a Lease") != NULL);
        assert_string_equal(r.holder, "");
        assert_int_equal(r.transitions, 0);
    }
    /* The core state is fine afterwards. */
    assert_int_equal(parse_text(c, "{\"metadata\":{},\"spec\":{\"holderIdentity\":\"a\"}}", &r,
                                err, sizeof err), 0);
    assert_string_equal(r.holder, "a");
}

static void test_lease_body(void **state)
{
    struct core *c = *state;
    struct core_lease in = rec("me", 15, "2024-05-01T10:00:08.500000Z", 2), back;
    char err[256], buf[256];
    size_t len = 0;

    /* No base: a new Lease for the POST. */
    char *body = core_lease_body(c, NULL, 0, "ns", "lock", &in, &len, err, sizeof err);
    assert_non_null(body);
    assert_int_equal(len, strlen(body));
    json_eval(body, "o.apiVersion .. ' ' .. o.kind .. ' ' .. o.metadata.namespace .. '/' .. "
                    "o.metadata.name", buf, sizeof buf);
    assert_string_equal(buf, "coordination.k8s.io/v1 Lease ns/lock");
    json_eval(body, "o.metadata.resourceVersion", buf, sizeof buf);
    assert_string_equal(buf, "");
    /* Whole numbers go out as JSON integers (the API server refuses 15.0). */
    assert_non_null(strstr(body, "\"leaseDurationSeconds\":15"));
    assert_null(strstr(body, "15.0"));
    assert_int_equal(core_lease_parse(c, body, len, &back, err, sizeof err), 0);
    assert_false(leader_record_changed(&in, &back));
    free(body);

    /* On a base: its resourceVersion (the PUT's precondition), the fields
     * election does not own and the rest of the spec go back unchanged;
     * managedFields stay behind; the election fields are ours. */
    static const char base[] =
        "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
        "\"metadata\":{\"name\":\"lock\",\"namespace\":\"ns\",\"resourceVersion\":\"41\","
        "\"labels\":{\"keep\":\"me\"},\"managedFields\":[{\"manager\":\"x\"}]},"
        "\"spec\":{\"holderIdentity\":\"other\",\"leaseDurationSeconds\":30,"
        "\"leaseTransitions\":9,\"strategy\":\"OldestEmulationVersion\"}}";
    body = core_lease_body(c, base, strlen(base), "other-ns", "other-name", &in, &len, err,
                           sizeof err);
    assert_non_null(body);
    json_eval(body, "o.metadata.resourceVersion .. ' ' .. o.metadata.labels.keep .. ' ' .. "
                    "o.metadata.namespace .. '/' .. o.metadata.name .. ' ' .. o.spec.strategy",
              buf, sizeof buf);
    assert_string_equal(buf, "41 me ns/lock OldestEmulationVersion");
    json_eval(body, "tostring(o.metadata.managedFields)", buf, sizeof buf);
    assert_string_equal(buf, "nil");
    assert_int_equal(core_lease_parse(c, body, len, &back, err, sizeof err), 0);
    assert_false(leader_record_changed(&in, &back));
    free(body);

    /* A released record: no holder, written as an empty string. */
    struct core_lease rel = rec("", 1, "NOW", 3);
    body = core_lease_body(c, base, strlen(base), "ns", "lock", &rel, &len, err, sizeof err);
    assert_non_null(body);
    json_eval(body, "'[' .. o.spec.holderIdentity .. '] ' .. "
                    "math.tointeger(o.spec.leaseDurationSeconds)", buf, sizeof buf);
    assert_string_equal(buf, "[] 1");
    free(body);

    /* A base that is not a Lease: no body, and why. */
    len = 99;
    assert_null(core_lease_body(c, "{\"metadata\":", 12, "ns", "lock", &in, &len, err,
                                sizeof err));
    assert_non_null(strstr(err, "not JSON"));
    assert_null(core_lease_body(c, "[]", 2, "ns", "lock", &in, &len, err, sizeof err));
    assert_non_null(strstr(err, "not a Lease"));
}

/* --- a fake Lease API ------------------------------------------------------------ */

/* Runs under the server's mutex. Globals: lease (table or nil), rv, fail,
 * garbled (a GET answers 200 with this text instead of the Lease). */
static const char fake_api[] =
    "local cjson = require('cjson')\n"
    "lease, rv, fail, puts, garbled = nil, 0, false, 0, nil\n"
    "local function status(code) return code, cjson.encode({kind = 'Status', code = code}) end\n"
    "function handle(method, path, body)\n"
    "  if fail then return status(503) end\n"
    "  local item = path:match('/leases/[^/]+$') ~= nil\n"
    "  if method == 'GET' and item then\n"
    "    if garbled then return 200, garbled end\n"
    "    if not lease then return status(404) end\n"
    "    return 200, cjson.encode(lease)\n"
    "  elseif method == 'POST' and not item then\n"
    "    if lease then return status(409) end\n"
    "    local o = cjson.decode(body)\n"
    "    rv = rv + 1; o.metadata.resourceVersion = tostring(rv); lease = o\n"
    "    return 201, cjson.encode(o)\n"
    "  elseif method == 'PUT' and item then\n"
    "    if not lease then return status(404) end\n"
    "    local o = cjson.decode(body)\n"
    "    if o.metadata.resourceVersion ~= lease.metadata.resourceVersion then\n"
    "      return status(409)\n"
    "    end\n"
    "    rv = rv + 1; o.metadata.resourceVersion = tostring(rv); lease = o; puts = puts + 1\n"
    "    return 200, cjson.encode(o)\n"
    "  end\n"
    "  return status(405)\n"
    "end\n"
    "function field(name)\n"
    "  if not lease then return nil end\n"
    "  if name == 'rv' then return lease.metadata.resourceVersion end\n"
    "  if name == 'label' then return lease.metadata.labels and lease.metadata.labels.keep end\n"
    "  local v = lease.spec[name]\n"
    "  return math.type(v) == 'float' and math.tointeger(v) or v\n"
    "end\n"
    "function intrude(holder)\n"
    "  rv = rv + 1; lease.metadata.resourceVersion = tostring(rv)\n"
    "  lease.spec.holderIdentity = holder\n"
    "  lease.spec.renewTime = lease.spec.renewTime .. 'x'\n"
    "end\n";

struct fake {
    struct MHD_Daemon *d;
    unsigned port;
    pthread_mutex_t mu;
    lua_State *L;
};

struct upload {
    char *body;
    size_t len;
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *data, size_t *size, void **ctx)
{
    struct fake *f = cls;
    struct upload *u = *ctx;
    (void)version;
    if (u == NULL) {
        *ctx = u = calloc(1, sizeof *u);
        return u ? MHD_YES : MHD_NO;
    }
    if (*size > 0) {
        char *nb = realloc(u->body, u->len + *size + 1);
        if (nb == NULL)
            return MHD_NO;
        u->body = nb;
        memcpy(u->body + u->len, data, *size);
        u->len += *size;
        u->body[u->len] = '\0';
        *size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&f->mu);
    lua_State *L = f->L;
    lua_getglobal(L, "handle");
    lua_pushstring(L, method);
    lua_pushstring(L, url);
    lua_pushlstring(L, u->body ? u->body : "", u->len);
    int ok = lua_pcall(L, 3, 2, 0) == LUA_OK;
    unsigned code = ok ? (unsigned)lua_tointeger(L, -2) : 500;
    size_t n = 0;
    const char *s = ok ? lua_tolstring(L, -1, &n) : "{}";
    struct MHD_Response *r = MHD_create_response_from_buffer(ok ? n : 2, (void *)s,
                                                             MHD_RESPMEM_MUST_COPY);
    lua_settop(L, 0);
    pthread_mutex_unlock(&f->mu);
    free(u->body);
    free(u);
    *ctx = NULL;
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result rc = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return rc;
}

static void fake_start(struct fake *f)
{
    struct sockaddr_in sa;
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->L = luaL_newstate();
    assert_non_null(f->L);
    luaL_openlibs(f->L);
    luaL_requiref(f->L, "cjson", luaopen_cjson, 0);
    lua_settop(f->L, 0);
    assert_int_equal(luaL_dostring(f->L, fake_api), LUA_OK);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                            NULL, NULL, on_request, f, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&sa, MHD_OPTION_END);
    assert_non_null(f->d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(info);
    f->port = info->port;
}

static void fake_stop(struct fake *f)
{
    MHD_stop_daemon(f->d);
    lua_close(f->L);
    pthread_mutex_destroy(&f->mu);
}

/* Runs Lua `code` against the fake's state; returns the result as text
 * ("" for nil) in out. */
static void fake_eval(struct fake *f, const char *code, char *out, size_t len)
{
    pthread_mutex_lock(&f->mu);
    assert_int_equal(luaL_loadstring(f->L, code), LUA_OK);
    assert_int_equal(lua_pcall(f->L, 0, 1, 0), LUA_OK);
    const char *s = lua_isnil(f->L, -1) ? "" : lua_tostring(f->L, -1);
    snprintf(out, len, "%s", s ? s : "?");
    lua_settop(f->L, 0);
    pthread_mutex_unlock(&f->mu);
}

/* --- electors against the fake ------------------------------------------------- */

struct world {
    struct fake f;
    struct kube *k;
    struct core *c;
    struct timers *t;
};

struct watcher {
    int gained, lost, released;
    int64_t gained_ms, lost_ms;
};

static void on_change(void *arg, bool leading)
{
    struct watcher *w = arg;
    if (leading) {
        w->gained++;
        w->gained_ms = clock_ms();
    } else {
        w->lost++;
        w->lost_ms = clock_ms();
    }
}

static void on_released(void *arg)
{
    struct watcher *w = arg;
    w->released++;
}

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof *w);
    char url[64], err[256];
    struct kube_auth a = {0};
    struct kube_options o = {.max_in_flight = 4, .max_attempts = 1, .timeout_ms = 2000,
                             .user_agent = "envoy-router/test"};
    assert_non_null(w);
    metrics_reset();
    log_setup(LOG_ERROR, false);
    fake_start(&w->f);
    snprintf(url, sizeof url, "http://127.0.0.1:%u", w->f.port);
    a.server = url;
    w->k = kube_new(&a, &o, err, sizeof err);
    w->c = core_new(NULL, NULL, NULL, err, sizeof err);
    w->t = timers_new();
    assert_non_null(w->k);
    assert_non_null(w->c);
    assert_non_null(w->t);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;
    kube_free(w->k);
    core_free(w->c);
    timers_free(w->t);
    fake_stop(&w->f);
    free(w);
    metrics_reset();
    return 0;
}

/* Short timings: lease 1 s, renew deadline 600 ms, retry 100 ms. */
static struct leader *elector(struct world *w, const char *id, struct watcher *wa)
{
    struct leader_options o = {.namespace = "ns", .name = "lock", .identity = id,
                               .lease_seconds = 1, .renew_deadline_ms = 600, .retry_ms = 100};
    struct leader *l = leader_new(w->k, w->c, w->t, &o, on_change, wa);
    assert_non_null(l);
    return l;
}

/* Drives the loop until cond(arg) or max_ms; returns the ms it took. */
static int64_t run_until(struct world *w, bool (*cond)(void *), void *arg, int max_ms)
{
    int64_t t0 = clock_ms(), end = t0 + max_ms;
    while (clock_ms() < end) {
        if (cond && cond(arg))
            break;
        kube_wait(w->k, NULL, 0, 5);
        kube_perform(w->k);
        timers_run(w->t, clock_ms());
    }
    return clock_ms() - t0;
}

static bool gained(void *arg)
{
    return ((struct watcher *)arg)->gained > 0;
}

static bool lost(void *arg)
{
    return ((struct watcher *)arg)->lost > 0;
}

static bool released(void *arg)
{
    return ((struct watcher *)arg)->released > 0;
}

static void test_options_required(void **state)
{
    struct world *w = *state;
    struct leader_options o = {.namespace = "ns", .name = "lock", .identity = ""};
    assert_null(leader_new(w->k, w->c, w->t, &o, NULL, NULL));
    o.identity = "me";
    assert_null(leader_new(w->k, NULL, w->t, &o, NULL, NULL));   /* no core */
    o.namespace = "";
    assert_null(leader_new(w->k, w->c, w->t, &o, NULL, NULL));
    assert_null(leader_new(w->k, w->c, w->t, NULL, NULL, NULL));
    leader_free(NULL);
    assert_int_equal(leader_release(NULL, NULL, NULL), -1);
}

static void test_one_leader_and_renewals(void **state)
{
    struct world *w = *state;
    struct watcher wa = {0}, wb = {0};
    char buf[128];
    struct leader *a = elector(w, "a", &wa);
    leader_start(a);
    run_until(w, gained, &wa, 2000);
    assert_true(leader_is_leader(a));
    assert_int_equal(metrics_value(metrics_gauge("leader_election_master_status", "", "name"),
                                   "lock"), 1);
    struct leader *b = elector(w, "b", &wb);
    leader_start(b);
    /* Four lease durations: a renews every 100 ms, b never gets in. */
    run_until(w, gained, &wb, 4000);
    assert_int_equal(wb.gained, 0);
    assert_false(leader_is_leader(b));
    assert_true(leader_is_leader(a));
    assert_int_equal(wa.lost, 0);
    fake_eval(&w->f, "return field('holderIdentity')", buf, sizeof buf);
    assert_string_equal(buf, "a");
    fake_eval(&w->f, "return field('leaseTransitions')", buf, sizeof buf);
    assert_string_equal(buf, "0");
    fake_eval(&w->f, "return puts", buf, sizeof buf);
    assert_true(atoi(buf) >= 20);
    /* A candidate that is not leading cannot release anything. */
    assert_int_equal(leader_release(b, on_released, &wb), -1);
    leader_free(b);
    leader_free(a);
}

static void test_takeover_after_crash_waits_for_the_lease(void **state)
{
    struct world *w = *state;
    struct watcher wa = {0}, wb = {0};
    char buf[128];
    struct leader *a = elector(w, "a", &wa);
    struct leader *b = elector(w, "b", &wb);
    leader_start(a);
    run_until(w, gained, &wa, 2000);
    leader_start(b);
    run_until(w, NULL, NULL, 500);
    /* a dies without releasing: b must wait out the 1 s lease from the last
     * change it saw, and not much longer. */
    leader_free(a);
    int64_t took = run_until(w, gained, &wb, 4000);
    assert_int_equal(wb.gained, 1);
    assert_true(took >= 850);
    assert_true(took <= 1600);
    fake_eval(&w->f, "return field('holderIdentity')", buf, sizeof buf);
    assert_string_equal(buf, "b");
    fake_eval(&w->f, "return field('leaseTransitions')", buf, sizeof buf);
    assert_string_equal(buf, "1");
    leader_free(b);
}

static void test_release_hands_over_at_once(void **state)
{
    struct world *w = *state;
    struct watcher wa = {0}, wb = {0};
    char buf[128];
    struct leader *a = elector(w, "a", &wa);
    struct leader *b = elector(w, "b", &wb);
    fake_eval(&w->f, "lease = {apiVersion = 'coordination.k8s.io/v1', kind = 'Lease', "
                     "metadata = {name = 'lock', namespace = 'ns', resourceVersion = '100', "
                     "labels = {keep = 'me'}}, spec = {}}; rv = 100; return 1", buf, sizeof buf);
    leader_start(a);
    run_until(w, gained, &wa, 2000);
    leader_start(b);
    run_until(w, NULL, NULL, 300);
    assert_int_equal(leader_release(a, on_released, &wa), 0);
    assert_int_equal(wa.lost, 1);            /* stops counting as leader at once */
    assert_false(leader_is_leader(a));
    run_until(w, released, &wa, 2000);
    assert_int_equal(wa.released, 1);
    int64_t took = run_until(w, gained, &wb, 3000);
    assert_int_equal(wb.gained, 1);
    assert_true(took < 400);                  /* a retry period, not the lease */
    fake_eval(&w->f, "return field('holderIdentity')", buf, sizeof buf);
    assert_string_equal(buf, "b");
    /* Two takeovers: a took the holder-less Lease, b the released one. */
    fake_eval(&w->f, "return field('leaseTransitions')", buf, sizeof buf);
    assert_string_equal(buf, "2");
    /* Fields election does not own survive the PUTs. */
    fake_eval(&w->f, "return field('label')", buf, sizeof buf);
    assert_string_equal(buf, "me");
    /* a campaigns no more. */
    run_until(w, NULL, NULL, 1500);
    assert_int_equal(wa.gained, 1);
    leader_free(a);
    leader_free(b);
}

static void test_release_writes_an_empty_holder(void **state)
{
    struct world *w = *state;
    struct watcher wa = {0};
    char buf[128];
    struct leader *a = elector(w, "a", &wa);
    leader_start(a);
    run_until(w, gained, &wa, 2000);
    assert_int_equal(leader_release(a, on_released, &wa), 0);
    run_until(w, released, &wa, 2000);
    fake_eval(&w->f, "return field('holderIdentity')", buf, sizeof buf);
    assert_string_equal(buf, "");
    fake_eval(&w->f, "return field('leaseDurationSeconds')", buf, sizeof buf);
    assert_string_equal(buf, "1");
    assert_int_equal(metrics_value(metrics_gauge("leader_election_master_status", "", "name"),
                                   "lock"), 0);
    leader_free(a);
}

static void test_release_after_an_unseen_renewal(void **state)
{
    struct world *w = *state;
    struct watcher wa = {0};
    char buf[128];
    struct leader *a = elector(w, "a", &wa);
    leader_start(a);
    run_until(w, gained, &wa, 2000);
    /* The Lease moved on without a changing hands (as when a renewal went
     * through but its answer was lost): the release PUT meets 409, reads
     * the Lease again, finds it still ours and releases it. */
    fake_eval(&w->f, "rv = rv + 1; lease.metadata.resourceVersion = tostring(rv); return 1",
              buf, sizeof buf);
    assert_int_equal(leader_release(a, on_released, &wa), 0);
    run_until(w, released, &wa, 2000);
    assert_int_equal(wa.released, 1);
    fake_eval(&w->f, "return field('holderIdentity')", buf, sizeof buf);
    assert_string_equal(buf, "");
    fake_eval(&w->f, "return field('leaseDurationSeconds')", buf, sizeof buf);
    assert_string_equal(buf, "1");
    leader_free(a);
}

static void test_steps_down_when_renewals_fail(void **state)
{
    struct world *w = *state;
    struct watcher wa = {0};
    char buf[16];
    struct leader *a = elector(w, "a", &wa);
    leader_start(a);
    run_until(w, gained, &wa, 2000);
    fake_eval(&w->f, "fail = true; return 1", buf, sizeof buf);
    int64_t t0 = clock_ms();
    run_until(w, lost, &wa, 3000);
    assert_int_equal(wa.lost, 1);
    /* The renew deadline (600 ms) from the last good renewal, well before
     * the others' 1 s lease. */
    assert_true(wa.lost_ms - t0 <= 700);
    assert_true(wa.lost_ms - t0 >= 400);
    assert_false(leader_is_leader(a));
    /* The API answers again: a takes the Lease back (still its own). */
    fake_eval(&w->f, "fail = false; return 1", buf, sizeof buf);
    run_until(w, NULL, NULL, 500);
    assert_true(leader_is_leader(a));
    fake_eval(&w->f, "return field('leaseTransitions')", buf, sizeof buf);
    assert_string_equal(buf, "0");
    leader_free(a);
}

static void test_conflict_reads_again_and_yields(void **state)
{
    struct world *w = *state;
    struct watcher wa = {0};
    char buf[16];
    struct leader *a = elector(w, "a", &wa);
    leader_start(a);
    run_until(w, gained, &wa, 2000);
    /* Someone else writes the Lease: a's next PUT carries a stale
     * resourceVersion (409), a reads again and sees a valid holder. */
    fake_eval(&w->f, "intrude('intruder'); return 1", buf, sizeof buf);
    int64_t took = run_until(w, lost, &wa, 2000);
    assert_int_equal(wa.lost, 1);
    assert_true(took < 400);
    fake_eval(&w->f, "return field('holderIdentity')", buf, sizeof buf);
    assert_string_equal(buf, "intruder");
    leader_free(a);
}

static void test_malformed_lease_is_reported_not_taken(void **state)
{
    struct world *w = *state;
    struct watcher wa = {0}, wb = {0};
    char buf[128], *log = NULL;
    size_t loglen = 0;
    struct leader *a = elector(w, "a", &wa);
    leader_start(a);
    run_until(w, gained, &wa, 2000);
    /* The API server answers a's reads with something that is not a Lease:
     * b, a candidate, never takes it, says why once, and does not crash. */
    fake_eval(&w->f, "garbled = '{\"kind\":\"Lease\",\"metadata\":'; return 1", buf,
              sizeof buf);
    FILE *out = open_memstream(&log, &loglen);
    assert_non_null(out);
    log_set_output(out);
    log_setup(LOG_WARN, false);
    struct leader *b = elector(w, "b", &wb);
    leader_start(b);
    run_until(w, gained, &wb, 1500);
    log_setup(LOG_ERROR, false);
    log_set_output(NULL);
    fclose(out);
    assert_int_equal(wb.gained, 0);
    assert_non_null(strstr(log, "leader: Lease request failed"));
    assert_non_null(strstr(log, "request=get"));
    assert_non_null(strstr(log, "not JSON"));
    /* Said once for the run of failures, not at every retry. */
    char *first = strstr(log, "request=get");
    assert_null(strstr(first + 1, "request=get"));
    free(log);
    /* a, the leader, renews on the Lease it holds: still the holder. */
    assert_true(leader_is_leader(a));
    /* Readable again: b reads a live holder and stays a candidate. */
    fake_eval(&w->f, "garbled = nil; return 1", buf, sizeof buf);
    run_until(w, gained, &wb, 1500);
    assert_int_equal(wb.gained, 0);
    fake_eval(&w->f, "return field('holderIdentity')", buf, sizeof buf);
    assert_string_equal(buf, "a");
    leader_free(b);
    leader_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_should_acquire),
        cmocka_unit_test(test_observed_time_is_local),
        cmocka_unit_test(test_step_down),
        cmocka_unit_test(test_record_next),
        cmocka_unit_test(test_micro_time_and_identity),
        cmocka_unit_test_setup_teardown(test_lease_parse, core_setup, core_teardown),
        cmocka_unit_test_setup_teardown(test_lease_parse_malformed, core_setup, core_teardown),
        cmocka_unit_test_setup_teardown(test_lease_body, core_setup, core_teardown),
        cmocka_unit_test_setup_teardown(test_options_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_leader_and_renewals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takeover_after_crash_waits_for_the_lease, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_release_hands_over_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_writes_an_empty_holder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_after_an_unseen_renewal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_steps_down_when_renewals_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflict_reads_again_and_yields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_lease_is_reported_not_taken, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("leader", tests, NULL, NULL);
}
