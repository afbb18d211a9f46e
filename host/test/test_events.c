/* Events: what is written for a reported problem, de-duplication of
 * repetitions, the per-Event update interval and the global rate limit,
 * with the clock and the API calls in the test's hands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "log.h"
#include "metrics.h"
#include "timers.h"

#include "scripted.h"

int luaopen_cjson(lua_State *L);

/* --- the scripted transport and the wall clock --------------------------------- */

static struct scripted S;
static double wall;

static double fake_wall(void)
{
    return wall;
}

#define calls S.calls
#define ncalls ((int)S.n)

static void answer(int i, long status)
{
    scripted_answer(&S, (size_t)i, status, "{}");
}

/* Moves both clocks on and runs the timers that came due. */
static void advance(struct timers *t, int64_t ms)
{
    S.now += ms;
    wall += (double)ms / 1000.0;
    timers_run(t, S.now);
}

/* --- fixtures ------------------------------------------------------------------------ */

struct fx {
    struct timers *t;
    struct events *e;
    lua_State *L;
};

static struct events *recorder(struct timers *t, size_t max_entries)
{
    struct kube_transport io = scripted_transport(&S);
    struct events_options o = {.component = "envoy-router", .instance = "pod-a_1234",
                               .max_entries = max_entries, .transport = &io,
                               .wall = fake_wall};
    struct events *e = events_new(NULL, t, &o);
    assert_non_null(e);
    events_set_enabled(e, true);
    return e;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    metrics_reset();
    log_setup(LOG_ERROR, false);
    scripted_free(&S);
    S.now = 1000000;
    wall = 1700000000.0;            /* 2023-11-14T22:13:20Z */
    f->t = timers_new();
    assert_non_null(f->t);
    f->e = recorder(f->t, 0);
    f->L = luaL_newstate();
    luaL_requiref(f->L, "cjson", luaopen_cjson, 1);
    lua_settop(f->L, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    events_free(f->e);
    timers_free(f->t);
    lua_close(f->L);
    scripted_free(&S);
    free(f);
    metrics_reset();
    return 0;
}

/* Field `path` ("a.b.c") of call i's JSON body, as text ("" when absent). */
static const char *field(struct fx *f, int i, const char *path)
{
    static char out[2048];
    lua_State *L = f->L;
    lua_settop(L, 0);
    lua_getglobal(L, "cjson");
    lua_getfield(L, -1, "decode");
    lua_pushstring(L, calls[i].body);
    assert_int_equal(lua_pcall(L, 1, 1, 0), LUA_OK);
    char key[256];
    snprintf(key, sizeof key, "%s", path);
    for (char *part = strtok(key, "."); part; part = strtok(NULL, ".")) {
        if (!lua_istable(L, -1)) {
            lua_pushnil(L);
            break;
        }
        lua_getfield(L, -1, part);
    }
    if (lua_type(L, -1) == LUA_TNUMBER && lua_isinteger(L, -1) == 0) {
        lua_Number n = lua_tonumber(L, -1);
        snprintf(out, sizeof out, "%lld", (long long)n);
    } else {
        const char *s = lua_tostring(L, -1);
        snprintf(out, sizeof out, "%s", s ? s : "");
    }
    lua_settop(L, 0);
    return out;
}

static double dropped(void)
{
    return metrics_value(metrics_counter("envoy_router_events_dropped_total", "", NULL), NULL);
}

static double written(const char *result)
{
    return metrics_value(metrics_counter("envoy_router_events_total", "", "result"), result);
}

/* --- tests ---------------------------------------------------------------------------- */

static void test_bucket(void **state)
{
    struct events_bucket b;
    (void)state;
    events_bucket_init(&b, 10, 25, 0);
    for (int i = 0; i < 25; i++)
        assert_true(events_bucket_take(&b, 0));
    assert_false(events_bucket_take(&b, 0));
    assert_false(events_bucket_take(&b, 99));
    assert_true(events_bucket_take(&b, 100));   /* 10/s: one per 100 ms */
    assert_false(events_bucket_take(&b, 100));
    /* A long pause refills up to the burst, not beyond. */
    for (int i = 0; i < 25; i++)
        assert_true(events_bucket_take(&b, 60000));
    assert_false(events_bucket_take(&b, 60000));
    /* A clock going backwards adds nothing. */
    assert_false(events_bucket_take(&b, 50000));
}

static void test_options_required(void **state)
{
    struct fx *f = *state;
    struct kube_transport io = scripted_transport(&S);
    struct events_options o = {.component = "envoy-router", .instance = "", .transport = &io,
                               .wall = fake_wall};
    assert_null(events_new(NULL, f->t, &o));
    o.instance = "x";
    o.component = NULL;
    assert_null(events_new(NULL, f->t, &o));
    assert_null(events_new(NULL, f->t, NULL));
    events_free(NULL);
    events_report(NULL, "ns", "p", "u", "R", "m");
}

static void test_creates_a_warning_on_the_pod(void **state)
{
    struct fx *f = *state;
    events_report(f->e, "team-a", "nb-1", "uid-1", "NameConflict",
                  "Service team-a/nb-1 already exists");
    assert_int_equal(ncalls, 1);
    assert_string_equal(calls[0].method, "POST");
    assert_string_equal(calls[0].path, "/api/v1/namespaces/team-a/events");
    assert_string_equal(field(f, 0, "apiVersion"), "v1");
    assert_string_equal(field(f, 0, "kind"), "Event");
    assert_string_equal(field(f, 0, "metadata.namespace"), "team-a");
    assert_true(strncmp(field(f, 0, "metadata.name"), "nb-1.", 5) == 0);
    assert_int_equal(strlen(field(f, 0, "metadata.name")), strlen("nb-1.") + 16);
    assert_string_equal(field(f, 0, "involvedObject.kind"), "Pod");
    assert_string_equal(field(f, 0, "involvedObject.apiVersion"), "v1");
    assert_string_equal(field(f, 0, "involvedObject.name"), "nb-1");
    assert_string_equal(field(f, 0, "involvedObject.namespace"), "team-a");
    assert_string_equal(field(f, 0, "involvedObject.uid"), "uid-1");
    assert_string_equal(field(f, 0, "reason"), "NameConflict");
    assert_string_equal(field(f, 0, "message"), "Service team-a/nb-1 already exists");
    assert_string_equal(field(f, 0, "type"), "Warning");
    assert_string_equal(field(f, 0, "source.component"), "envoy-router");
    assert_string_equal(field(f, 0, "reportingComponent"), "envoy-router");
    assert_string_equal(field(f, 0, "reportingInstance"), "pod-a_1234");
    assert_string_equal(field(f, 0, "firstTimestamp"), "2023-11-14T22:13:20Z");
    assert_string_equal(field(f, 0, "lastTimestamp"), "2023-11-14T22:13:20Z");
    assert_string_equal(field(f, 0, "count"), "1");
    answer(0, 201);
    assert_int_equal(events_tracked(f->e), 1);
}

static void test_repeats_update_the_count_once_a_minute(void **state)
{
    struct fx *f = *state;
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");
    answer(0, 201);
    /* Five repetitions within the minute: no request yet. */
    for (int i = 0; i < 5; i++) {
        advance(f->t, 5000);
        events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");
    }
    assert_int_equal(ncalls, 1);
    /* A minute after the create: one PATCH carrying all six. */
    advance(f->t, 34999);
    assert_int_equal(ncalls, 1);
    advance(f->t, 1);
    assert_int_equal(ncalls, 2);
    assert_string_equal(calls[1].method, "PATCH");
    assert_string_equal(calls[1].content_type, "application/merge-patch+json");
    char want[600];
    snprintf(want, sizeof want, "/api/v1/namespaces/ns/events/%s", field(f, 0, "metadata.name"));
    assert_string_equal(calls[1].path, want);
    assert_string_equal(field(f, 1, "count"), "6");
    assert_string_equal(field(f, 1, "lastTimestamp"), "2023-11-14T22:13:45Z");
    answer(1, 200);
    /* Nothing new: no more writes, however long. */
    advance(f->t, 500000);
    assert_int_equal(ncalls, 2);
    /* Another repetition inside the window (10 minutes from the last
     * sighting): the interval has passed, so it goes out at once. */
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");
    assert_int_equal(ncalls, 3);
    assert_string_equal(calls[2].method, "PATCH");
    assert_string_equal(field(f, 2, "count"), "7");
    answer(2, 200);
    assert_int_equal(events_tracked(f->e), 1);
    assert_int_equal(dropped(), 0);
    assert_int_equal(written("created"), 1);
    assert_int_equal(written("updated"), 2);
    assert_int_equal(written("failed"), 0);
}

static void test_repeats_while_creating(void **state)
{
    struct fx *f = *state;
    events_report(f->e, "ns", "p", "u1", "ScriptError", "boom");
    events_report(f->e, "ns", "p", "u1", "ScriptError", "boom");
    events_report(f->e, "ns", "p", "u1", "ScriptError", "boom");
    assert_int_equal(ncalls, 1);
    advance(f->t, 200);
    answer(0, 201);
    assert_int_equal(ncalls, 1);
    advance(f->t, 59800);
    assert_int_equal(ncalls, 2);
    assert_string_equal(field(f, 1, "count"), "3");
    answer(1, 200);
}

static void test_what_makes_a_different_event(void **state)
{
    struct fx *f = *state;
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken too");  /* message */
    events_report(f->e, "ns", "p", "u2", "NameConflict", "taken");      /* pod uid */
    events_report(f->e, "ns", "p", "u1", "ChildRejected", "taken");     /* reason */
    assert_int_equal(ncalls, 4);
    for (int i = 0; i < 4; i++)
        assert_string_equal(calls[i].method, "POST");
    /* Names stay unique even within one clock tick. */
    char *first = strdup(field(f, 0, "metadata.name"));
    assert_string_not_equal(first, field(f, 1, "metadata.name"));
    free(first);
    for (int i = 0; i < 4; i++)
        answer(i, 201);
    assert_int_equal(events_tracked(f->e), 4);
}

static void test_after_the_window_a_new_event(void **state)
{
    struct fx *f = *state;
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");
    answer(0, 201);
    advance(f->t, EVENTS_WINDOW_MS + 1);
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");
    assert_int_equal(ncalls, 2);
    assert_string_equal(calls[1].method, "POST");
    assert_string_equal(field(f, 1, "count"), "1");
    char *first = strdup(field(f, 0, "metadata.name"));
    assert_string_not_equal(first, field(f, 1, "metadata.name"));
    free(first);
    answer(1, 201);
    assert_int_equal(events_tracked(f->e), 1);
}

static void test_rate_limit_drops_and_counts(void **state)
{
    struct fx *f = *state;
    char uid[32];
    for (int i = 0; i < 30; i++) {
        snprintf(uid, sizeof uid, "u%d", i);
        events_report(f->e, "ns", "p", uid, "NameConflict", "taken");
    }
    assert_int_equal(ncalls, EVENTS_BURST);
    assert_int_equal(dropped(), 30 - EVENTS_BURST);
    assert_int_equal(events_tracked(f->e), EVENTS_BURST);
    for (int i = 0; i < ncalls; i++)
        answer(i, 201);
    /* 10 per second come back. */
    advance(f->t, 1000);
    for (int i = 30; i < 45; i++) {
        snprintf(uid, sizeof uid, "u%d", i);
        events_report(f->e, "ns", "p", uid, "NameConflict", "taken");
    }
    assert_int_equal(ncalls, EVENTS_BURST + 10);
    assert_int_equal(dropped(), 30 - EVENTS_BURST + 5);
    for (int i = EVENTS_BURST; i < ncalls; i++)
        answer(i, 201);
}

static void test_rate_limited_update_keeps_its_count(void **state)
{
    struct fx *f = *state;
    char uid[32];
    events_report(f->e, "ns", "p", "u-keep", "NameConflict", "taken");
    answer(0, 201);
    events_report(f->e, "ns", "p", "u-keep", "NameConflict", "taken");
    /* Empty the bucket just before the update is due. */
    advance(f->t, 59999);
    for (int i = 0; ncalls < 1 + EVENTS_BURST && i < 100; i++) {
        snprintf(uid, sizeof uid, "x%d", i);
        events_report(f->e, "ns", "p", uid, "NameConflict", "taken");
    }
    int n = ncalls;
    advance(f->t, 1);
    assert_int_equal(ncalls, n);              /* dropped: no token */
    assert_int_equal(dropped(), 1);
    /* Not lost: the next interval carries it. */
    advance(f->t, 60000);
    assert_int_equal(ncalls, n + 1);
    assert_string_equal(calls[n].method, "PATCH");
    assert_string_equal(field(f, n, "count"), "2");
}

static void test_disabled_writes_nothing(void **state)
{
    struct fx *f = *state;
    events_set_enabled(f->e, false);
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");
    assert_int_equal(ncalls, 0);
    assert_int_equal(events_tracked(f->e), 0);
    events_set_enabled(f->e, true);
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");
    answer(0, 201);
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");
    /* Stepped down before the update was due: it is not sent. */
    events_set_enabled(f->e, false);
    advance(f->t, 120000);
    assert_int_equal(ncalls, 1);
    /* Events without a pod are ignored. */
    events_set_enabled(f->e, true);
    events_report(f->e, "", "p", "u1", "R", "m");
    events_report(f->e, "ns", NULL, "u1", "R", "m");
    assert_int_equal(ncalls, 1);
}

/* Leadership lost: a create in flight (or queued, or backing off in the
 * client) and a count update waiting for its interval must not reach the
 * API server after the new leader took over. */
static void test_step_down_cancels_writes(void **state)
{
    struct fx *f = *state;
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");
    answer(0, 201);
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");     /* update due later */
    events_report(f->e, "ns", "q", "u2", "ScriptError", "boom");        /* create in flight */
    assert_int_equal(ncalls, 2);
    assert_int_equal(events_set_enabled(f->e, false), 1);
    assert_true(calls[1].cancelled);
    assert_int_equal(events_tracked(f->e), 0);
    /* Leading again before the update would have been due: nothing of the
     * old term goes out; a new report is a new Event. */
    assert_int_equal(events_set_enabled(f->e, true), 0);
    advance(f->t, 120000);
    assert_int_equal(ncalls, 2);
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");
    assert_int_equal(ncalls, 3);
    assert_string_equal(calls[2].method, "POST");
    answer(2, 201);
}

static void test_failures_start_afresh(void **state)
{
    struct fx *f = *state;
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");
    answer(0, 403);
    assert_int_equal(events_tracked(f->e), 0);
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");
    assert_int_equal(ncalls, 2);
    assert_string_equal(calls[1].method, "POST");
    answer(1, 201);
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");
    advance(f->t, 60000);
    assert_int_equal(ncalls, 3);
    /* The Event was deleted meanwhile (TTL): the next report creates one. */
    answer(2, 404);
    assert_int_equal(events_tracked(f->e), 0);
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");
    assert_int_equal(ncalls, 4);
    assert_string_equal(calls[3].method, "POST");
    /* A failed update (5xx) is tried again an interval later. */
    answer(3, 201);
    events_report(f->e, "ns", "p", "u1", "NameConflict", "taken");
    advance(f->t, 60000);
    assert_int_equal(ncalls, 5);
    answer(4, 500);
    advance(f->t, 60000);
    assert_int_equal(ncalls, 6);
    assert_string_equal(calls[5].method, "PATCH");
    assert_string_equal(field(f, 5, "count"), "2");
    answer(5, 200);
}

static void test_message_escaped_and_capped(void **state)
{
    struct fx *f = *state;
    char msg[3000];
    memset(msg, 'x', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    static const char lead[] = "a \"quoted\"\nline\twith \\ and \x01 and \xc3\xa9";
    memcpy(msg, lead, sizeof lead - 1);
    /* A two-byte character straddling the cap is not cut in half. */
    msg[1023] = (char)0xc3;
    msg[1024] = (char)0xa9;
    events_report(f->e, "ns", "p", "u1", "ScriptError", msg);
    assert_int_equal(ncalls, 1);
    const char *m = field(f, 0, "message");
    assert_int_equal(strlen(m), 1023);
    assert_memory_equal(m, lead, sizeof lead - 1);
    answer(0, 201);
}

static void test_bounded_memory(void **state)
{
    struct fx *f = *state;
    struct events *e = recorder(f->t, 3);
    char uid[32];
    int first = ncalls;
    for (int i = 0; i < 5; i++) {
        snprintf(uid, sizeof uid, "u%d", i);
        events_report(e, "ns", "p", uid, "R", "m");
        assert_true(events_tracked(e) <= 3);
    }
    assert_int_equal(events_tracked(e), 3);
    /* The forgotten ones had their calls cancelled. */
    assert_true(calls[first].cancelled);
    assert_true(calls[first + 1].cancelled);
    assert_false(calls[first + 4].cancelled);
    events_free(e);
    /* Freeing cancels what is in flight. */
    assert_true(calls[first + 4].cancelled);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket),
        T(test_options_required),
        T(test_creates_a_warning_on_the_pod),
        T(test_repeats_update_the_count_once_a_minute),
        T(test_repeats_while_creating),
        T(test_what_makes_a_different_event),
        T(test_after_the_window_a_new_event),
        T(test_rate_limit_drops_and_counts),
        T(test_rate_limited_update_keeps_its_count),
        T(test_disabled_writes_nothing),
        T(test_step_down_cancels_writes),
        T(test_failures_start_afresh),
        T(test_message_escaped_and_capped),
        T(test_bounded_memory),
    };
    return cmocka_run_group_tests_name("events", tests, NULL, NULL);
}
