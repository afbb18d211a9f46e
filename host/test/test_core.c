/* Tests of core: caches fed from list/watch bodies, and the plans. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <time.h>

#include "config.h"
#include "log.h"
#include "core.h"
#include "sandbox.h"

static struct config cfg = {
    .gateway_name = "gw", .gateway_namespace = "", .service_port = 80, .pod_port = 8080,
    .headless = true,
};

struct fixture {
    struct sandbox *sb;
    struct core *core;
    char queued[32][128];
    int n_queued;
    int64_t now_ms;             /* what core_route_states is told */
};

static void record(void *arg, const char *key)
{
    struct fixture *f = arg;
    if (f->n_queued < 32)
        snprintf(f->queued[f->n_queued++], 128, "%s", key);
}

static int setup(void **state)
{
    char err[4096];
    struct fixture *f = calloc(1, sizeof *f);
    f->sb = sandbox_new(NULL, &cfg, NULL, err, sizeof err);
    assert_non_null(f->sb);
    f->core = core_new(f->sb, record, f, err, sizeof err);
    if (f->core == NULL)
        fail_msg("core_new: %s", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    core_free(f->core);
    sandbox_free(f->sb);
    free(f);
    return 0;
}

#define POD(name, ip, ready) \
    "{\"metadata\":{\"name\":\"" name "\",\"namespace\":\"ns\",\"uid\":\"uid-" name "\"," \
    "\"resourceVersion\":\"5\",\"labels\":{\"envoy-router/enabled\":\"true\"}," \
    "\"managedFields\":[{\"manager\":\"kubectl\"}]}," \
    "\"spec\":{\"nodeName\":\"n1\"},\"status\":{\"podIP\":\"" ip "\"," \
    "\"conditions\":[{\"type\":\"Ready\",\"status\":\"" ready "\"}]}}"

static void list(struct fixture *f, const char *res, const char *items)
{
    char body[16384], err[512], *rv, *cont;
    snprintf(body, sizeof body,
             "{\"kind\":\"List\",\"metadata\":{\"resourceVersion\":\"10\"},\"items\":[%s]}", items);
    assert_int_equal(core_list_begin(f->core, res), 0);
    assert_int_equal(core_list_page(f->core, res, body, strlen(body), &rv, &cont, err, sizeof err), 0);
    assert_string_equal(rv, "10");
    assert_string_equal(cont, "");
    free(rv);
    free(cont);
    assert_int_equal(core_list_end(f->core, res), 0);
}

static void plan(struct fixture *f, const char *key, struct core_plan *p)
{
    char err[4096];
    if (core_reconcile(f->core, key, p, err, sizeof err) != 0)
        fail_msg("reconcile: %s", err);
}

/* The object an action's write makes, as the API server stores it: the
 * body with "uid" and "resourceVersion" inserted into metadata. */
static void stored(const struct core_action *a, size_t i, char *body, size_t size)
{
    const char *md = strstr(a->body, "\"metadata\":{");
    assert_non_null(md);
    size_t head = (size_t)(md - a->body) + strlen("\"metadata\":{");
    /* Each write makes a new version; its echo and its answer carry the
     * same one (derived from what was written, from 1000 up, apart from
     * the versions the tests write by hand). */
    unsigned version = 2166136261u;
    for (const char *c = a->body; *c; c++)
        version = (version ^ (unsigned char)*c) * 16777619u;
    version = 1000 + version % 1000000000u;
    snprintf(body, size, "%.*s\"uid\":\"child-%zu\",\"resourceVersion\":\"%u\","
             "\"managedFields\":[],%s", (int)head, a->body, i, version++, a->body + head);
    /* A create's body carries a resourceVersion no object has (its
     * precondition); what is stored has the server's. */
    static const char never[] = ",\"resourceVersion\":\"18446744073709551615\"";
    char *at = strstr(body, never);
    if (at != NULL)
        memmove(at, at + strlen(never), strlen(at + strlen(never)) + 1);
    assert_null(strstr(body, "18446744073709551615"));
}

/* Answers every action of the plan as the API server would: the body
 * echoed back with server fields added. */
static void answer_one(struct fixture *f, struct core_action *a, size_t i)
{
    if (strcmp(a->verb, "delete") == 0) {
        assert_int_equal(core_result(f->core, a, 200, "{}", 2), CORE_OK);
        return;
    }
    char body[16384];
    stored(a, i, body, sizeof body);
    assert_int_equal(core_result(f->core, a, 201, body, strlen(body)), CORE_OK);
}

/* Delivers one watch event of `type` with `object` (JSON) on resource res. */
static void deliver(struct fixture *f, const char *res, const char *type, const char *object)
{
    char ev[16500], err[512], *rv;
    long code;
    snprintf(ev, sizeof ev, "{\"type\":\"%s\",\"object\":%s}", type, object);
    assert_int_equal(core_watch_event(f->core, res, ev, strlen(ev), &rv, &code, err, sizeof err), 0);
    free(rv);
}

/* Delivers the watch event of what action a writes, before its answer. */
static void echo(struct fixture *f, const struct core_action *a, size_t i)
{
    char body[16384];
    stored(a, i, body, sizeof body);
    deliver(f, a->res, "ADDED", body);
}

static void answer(struct fixture *f, struct core_plan *p)
{
    for (size_t i = 0; i < p->n_actions; i++)
        answer_one(f, &p->actions[i], i);
}

/* Plans and answers until the pod's children are all written. */
static void settle(struct fixture *f, const char *key)
{
    struct core_plan p;
    for (int i = 0; i < 6; i++) {
        plan(f, key, &p);
        size_t n = p.n_actions;
        answer(f, &p);
        core_plan_free(&p);
        if (n == 0)
            return;
    }
    fail_msg("%s did not settle", key);
}

static void test_new_pod_gets_three_creates_then_nothing(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    list(f, "services", "");
    list(f, "endpointslices", "");
    list(f, "httproutes", "");
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    assert_int_equal(f->n_queued, 1);
    assert_string_equal(f->queued[0], "ns/p1");

    /* Round 1: only the Service, with the garbage collector's finalizer
     * foregroundDeletion; what points at it waits until it is ours.
     * Round 2: the EndpointSlice and the HTTPRoute, the route naming the
     * Service (answered with uid child-0) as a blocking owner. */
    int seen = 0;
    for (int round = 1; round <= 2; round++) {
    plan(f, "ns/p1", &p);
    assert_null(p.error);
    assert_int_equal(p.n_actions, round == 2 ? 2 : 1);
    if (round == 1) {
        assert_string_equal(p.actions[0].res, "services");
        assert_non_null(strstr(p.actions[0].body, "\"finalizers\":[\"foregroundDeletion\"]"));
        f->n_queued = 0;
    }
    for (size_t i = 0; i < p.n_actions; i++) {
        struct core_action *a = &p.actions[i];
        assert_string_equal(a->verb, "create");
        /* Created by server-side apply, guarded by a resourceVersion no
         * object has, so an existing name is never taken over. */
        assert_string_equal(a->method, "PATCH");
        assert_string_equal(a->content_type, "application/apply-patch+yaml");
        assert_non_null(strstr(a->body, "\"resourceVersion\":\"18446744073709551615\""));
        assert_non_null(strstr(a->body, "desired-hash\":\""));
        assert_non_null(strstr(a->body, "managed-by\":\"envoy-router\""));
        assert_non_null(strstr(a->body, "\"uid\":\"uid-p1\""));
        assert_non_null(strstr(a->body, "\"namespace\":\"ns\""));
        if (strcmp(a->res, "services") == 0) {
            assert_string_equal(a->path, "/api/v1/namespaces/ns/services/p1"
                                         "?fieldManager=envoy-router&force=true");
            seen |= 1;
        } else if (strcmp(a->res, "endpointslices") == 0) {
            assert_string_equal(a->path, "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices/p1"
                                         "?fieldManager=envoy-router&force=true");
            assert_non_null(strstr(a->body, "10.1.2.3"));
            assert_null(strstr(a->body, "child-0"));
            seen |= 2;
        } else {
            assert_string_equal(a->path, "/apis/gateway.networking.k8s.io/v1/namespaces/ns/"
                                         "httproutes/p1?fieldManager=envoy-router&force=true");
            assert_non_null(strstr(a->body, "\"/p1\""));
            assert_non_null(strstr(a->body, "\"uid\":\"child-0\""));
            assert_non_null(strstr(a->body, "\"blockOwnerDeletion\":true"));
            seen |= 4;
        }
    }
    answer(f, &p);
    core_plan_free(&p);
    if (round == 1) {
        /* The Service's answer queues the pod again for the rest. */
        assert_int_equal(f->n_queued, 1);
        assert_string_equal(f->queued[0], "ns/p1");
    }
    }
    assert_int_equal(seen, 7);

    /* Observed now contains desired: no write. */
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 0);
    assert_int_equal(p.n_problems, 0);
    core_plan_free(&p);

    size_t managed, pods, children;
    core_stats(f->core, &managed, &pods, &children);
    assert_int_equal(managed, 1);
    assert_int_equal(pods, 1);
    assert_int_equal(children, 3);
}

/* The watch ahead of the answer to the operator's own write (its echo)
 * queues nothing: the answer settles the pod's job, and the Service's
 * answer queues what follows. (1,000 new pods took 2,736 reconciles
 * before, 2,000 after.) A change by someone else still queues the pod. */
static void test_echo_of_a_write_in_flight_queues_nothing(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    f->n_queued = 0;
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    echo(f, &p.actions[0], 0);
    assert_int_equal(f->n_queued, 0);
    answer_one(f, &p.actions[0], 0);
    assert_int_equal(f->n_queued, 1);
    core_plan_free(&p);

    f->n_queued = 0;
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 2);           /* the EndpointSlice and the route */
    for (size_t i = 0; i < p.n_actions; i++)
        echo(f, &p.actions[i], i + 1);
    assert_int_equal(f->n_queued, 0);
    answer(f, &p);
    assert_int_equal(f->n_queued, 0);
    core_plan_free(&p);

    /* Nothing in flight: an edit by hand is news. */
    deliver(f, "services", "MODIFIED", "{\"metadata\":{\"name\":\"p1\","
        "\"namespace\":\"ns\",\"uid\":\"child-0\",\"resourceVersion\":\"12\","
        "\"labels\":{\"app.kubernetes.io/managed-by\":\"envoy-router\"},"
        "\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"name\":\"p1\","
        "\"uid\":\"uid-p1\",\"controller\":true}]},\"spec\":{\"clusterIP\":\"None\"}}");
    assert_int_equal(f->n_queued, 1);
}

/* Pod p1 listed, its Service planned and answered: p holds round two,
 * the EndpointSlice (first) and the HTTPRoute, in flight. */
static void round_two(struct fixture *f, struct core_plan *p)
{
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    plan(f, "ns/p1", p);
    answer(f, p);                               /* the Service */
    core_plan_free(p);
    plan(f, "ns/p1", p);
    assert_int_equal(p->n_actions, 2);
    assert_string_equal(p->actions[0].res, "endpointslices");
}

/* p1's next plan is one write of its EndpointSlice: `verb`, and the
 * field that differed when `why` is not NULL. */
static void only_slice_written(struct fixture *f, const char *verb, const char *why)
{
    struct core_plan p;
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].verb, verb);
    assert_string_equal(p.actions[0].res, "endpointslices");
    if (why != NULL)
        assert_string_equal(p.actions[0].why, why);
    core_plan_free(&p);
}

/* What action a writes as stored, then edited by hand: another version
 * (999; stored() gives 1000 or more) with the desired-hash annotation
 * changed. */
static void hand_edited(const struct core_action *a, size_t i, char *body, size_t size)
{
    stored(a, i, body, size);
    char *at = strstr(body, "\"resourceVersion\":\"");
    assert_non_null(at);
    at += strlen("\"resourceVersion\":\"");
    char *end = strchr(at, '"');
    assert_non_null(end);
    memmove(at + 3, end, strlen(end) + 1);
    memcpy(at, "999", 3);
    at = strstr(body, "\"envoy-router/desired-hash\":\"");
    assert_non_null(at);
    memcpy(at + strlen("\"envoy-router/desired-hash\":\""), "0000000000000000", 16);
}

/* The watch brings our write's echo and then someone's newer change
 * while the write is in flight: the answer (the echo's version) must not
 * put the older state back in the cache, and the pod looks again: the
 * change is repaired. */
static void test_change_after_the_echo_outlives_the_answer(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    round_two(f, &p);
    const struct core_action *slice = &p.actions[0];
    echo(f, slice, 1);
    /* A hand edit on top of it: the desired-hash annotation changed. */
    char edited[16384];
    hand_edited(slice, 1, edited, sizeof edited);
    f->n_queued = 0;
    deliver(f, "endpointslices", "MODIFIED", edited);
    answer(f, &p);
    assert_int_equal(f->n_queued, 1);
    core_plan_free(&p);
    only_slice_written(f, "apply", "metadata.annotations.envoy-router/desired-hash");
}

/* Writes cancelled in flight (leadership lost) get no answer: the watch
 * events of those children afterwards are news, not echoes. */
static void test_cancelled_write_leaves_no_echo(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    core_writes_cancelled(f->core);
    f->n_queued = 0;
    echo(f, &p.actions[0], 0);                  /* it landed before the cancel */
    assert_int_equal(f->n_queued, 1);
    core_plan_free(&p);
}

/* A relist (the watch expired) that ends while a write is in flight: the
 * list's version may be older or newer than the answer, and nothing orders
 * them. Here it is a hand edit made after the write: the answer must not
 * put the older state back (the watch resumes after the list, so no event
 * would tell again); the pod looks again and repairs the edit. */
static void test_relist_newer_than_the_answer_is_kept(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    round_two(f, &p);
    const struct core_action *slice = &p.actions[0];
    char edited[16384];
    hand_edited(slice, 0, edited, sizeof edited);
    list(f, "endpointslices", edited);
    f->n_queued = 0;
    answer(f, &p);
    assert_int_equal(f->n_queued, 1);
    core_plan_free(&p);
    only_slice_written(f, "apply", "metadata.annotations.envoy-router/desired-hash");
}

/* The same with a list that does not hold the child (deleted after the
 * write, or listed before it): the answer does not bring it back into the
 * cache; the pod writes it again (a create that finds it ours is probed). */
static void test_relist_without_the_child_is_not_undone_by_the_answer(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    round_two(f, &p);
    list(f, "endpointslices", "");
    f->n_queued = 0;
    answer(f, &p);
    assert_int_equal(f->n_queued, 1);
    core_plan_free(&p);
    only_slice_written(f, "create", NULL);
}

/* ns/p1's Service held only by foregroundDeletion (rv 20). */
static const char FOREGROUND_SERVICE[] = "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{"
    "\"name\":\"p1\",\"namespace\":\"ns\",\"uid\":\"child-0\",\"resourceVersion\":\"20\","
    "\"deletionTimestamp\":\"2026-01-01T00:00:00Z\",\"finalizers\":[\"foregroundDeletion\"],"
    "\"labels\":{\"app.kubernetes.io/managed-by\":\"envoy-router\"},"
    "\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"name\":\"p1\","
    "\"uid\":\"uid-p1\",\"controller\":true}]},\"spec\":{\"clusterIP\":\"None\"}}";

/* ns/p1 with its children, then its Service seen in foreground deletion:
 * the plan (into p) is one DELETE of it with the Background policy. */
static void plan_finishing_the_service(struct fixture *f, struct core_plan *p)
{
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    settle(f, "ns/p1");
    deliver(f, "services", "MODIFIED", FOREGROUND_SERVICE);
    plan(f, "ns/p1", p);
    assert_int_equal(p->n_actions, 1);
    assert_string_equal(p->actions[0].verb, "delete");
    assert_string_equal(p->actions[0].res, "services");
    assert_non_null(strstr(p->actions[0].body, "\"propagationPolicy\":\"Background\""));
}

/* A Service of the pod held only by foregroundDeletion (the garbage
 * collector started deleting it) is finished by the host: a DELETE with the
 * Background policy, whose answer still shows the finalizer but means
 * gone; the pod is queued and creates it afresh. */
static void test_service_in_foreground_deletion_is_finished(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    const char *gone = FOREGROUND_SERVICE;
    plan_finishing_the_service(f, &p);
    f->n_queued = 0;
    assert_int_equal(core_result(f->core, &p.actions[0], 200, gone, strlen(gone)), CORE_OK);
    assert_int_equal(f->n_queued, 1);
    core_plan_free(&p);
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].verb, "create");
    assert_string_equal(p.actions[0].res, "services");
    core_plan_free(&p);
}

/* The same, but the collector finished the deletion first: the DELETE is
 * answered 404. Gone is gone: the pod is queued all the same and creates
 * the Service afresh (the watch's DELETED finds nothing left to tell). */
static void test_service_replaced_but_already_gone_queues_the_pod(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    plan_finishing_the_service(f, &p);
    f->n_queued = 0;
    const char *nf = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
        "\"reason\":\"NotFound\",\"code\":404}";
    assert_int_equal(core_result(f->core, &p.actions[0], 404, nf, strlen(nf)), CORE_OK);
    assert_int_equal(f->n_queued, 1);
    core_plan_free(&p);
    deliver(f, "services", "DELETED", FOREGROUND_SERVICE);
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].verb, "create");
    assert_string_equal(p.actions[0].res, "services");
    core_plan_free(&p);
}

static void test_readiness_change_is_one_apply(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    char err[512], *rv;
    long code;
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    settle(f, "ns/p1");

    const char *ev = "{\"type\":\"MODIFIED\",\"object\":" POD("p1", "10.1.2.3", "False") "}";
    assert_int_equal(core_watch_event(f->core, "pods", ev, strlen(ev), &rv, &code, err, sizeof err), 0);
    assert_string_equal(rv, "5");
    assert_int_equal(code, 0);
    free(rv);
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].verb, "apply");
    assert_string_equal(p.actions[0].res, "endpointslices");
    assert_string_equal(p.actions[0].method, "PATCH");
    assert_string_equal(p.actions[0].content_type, "application/apply-patch+yaml");
    assert_string_equal(p.actions[0].path, "/apis/discovery.k8s.io/v1/namespaces/ns/"
                                           "endpointslices/p1?fieldManager=envoy-router&force=true");
    assert_non_null(strstr(p.actions[0].body, "\"ready\":false"));
    core_plan_free(&p);
}

static void test_pod_gone_deletes_children_with_uid(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    char err[512], *rv;
    long code;
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    settle(f, "ns/p1");
    const char *ev = "{\"type\":\"DELETED\",\"object\":" POD("p1", "10.1.2.3", "True") "}";
    assert_int_equal(core_watch_event(f->core, "pods", ev, strlen(ev), &rv, &code, err, sizeof err), 0);
    free(rv);
    /* The route goes first; its answer queues the pod for the rest. */
    plan(f, "ns/p1", &p);
    assert_false(p.has_pod);
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].res, "httproutes");
    f->n_queued = 0;
    answer(f, &p);
    assert_int_equal(f->n_queued, 1);
    assert_string_equal(f->queued[0], "ns/p1");
    core_plan_free(&p);
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(p.actions[i].verb, "delete");
        assert_string_equal(p.actions[i].method, "DELETE");
        assert_string_not_equal(p.actions[i].res, "httproutes");
        assert_non_null(strstr(p.actions[i].body, "\"preconditions\":{\"uid\":\"child-"));
        /* Takes the Service's foregroundDeletion off at once. */
        assert_non_null(strstr(p.actions[i].body, "\"propagationPolicy\":\"Background\""));
    }
    answer(f, &p);
    core_plan_free(&p);
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 0);
    core_plan_free(&p);
}

static void test_child_of_another_pod_is_a_conflict(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    list(f, "services",
         "{\"metadata\":{\"name\":\"p1\",\"namespace\":\"ns\",\"uid\":\"s1\","
         "\"labels\":{\"app.kubernetes.io/managed-by\":\"envoy-router\"},"
         "\"ownerReferences\":[{\"kind\":\"Pod\",\"name\":\"other\",\"uid\":\"u\","
         "\"controller\":true}]},\"spec\":{}}");
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_problems, 1);
    assert_string_equal(p.problems[0].reason, "NameConflict");
    assert_non_null(strstr(p.problems[0].message, "ns/other"));
    for (size_t i = 0; i < p.n_actions; i++)
        assert_string_not_equal(p.actions[i].res, "services");
    core_plan_free(&p);
}

static void test_relist_drops_missing_and_queues_owner(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    settle(f, "ns/p1");
    f->n_queued = 0;
    list(f, "services", "");       /* someone deleted the Service meanwhile */
    assert_int_equal(f->n_queued, 1);
    assert_string_equal(f->queued[0], "ns/p1");
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].verb, "create");
    assert_string_equal(p.actions[0].res, "services");
    core_plan_free(&p);
}

static void test_watch_error_and_malformed_lines(void **state)
{
    struct fixture *f = *state;
    char err[512], *rv;
    long code;
    const char *gone = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,"
                       "\"message\":\"too old resource version\"}}";
    assert_int_equal(core_watch_event(f->core, "pods", gone, strlen(gone), &rv, &code, err, sizeof err), 0);
    assert_int_equal(code, 410);
    assert_null(rv);
    assert_int_equal(core_watch_event(f->core, "pods", "{\"type\":", 8, &rv, &code, err, sizeof err), -1);
    assert_int_equal(core_watch_event(f->core, "pods", "{\"type\":\"ADDED\"}", 16, &rv, &code, err,
                                      sizeof err), -1);
    const char *bm = "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"99\"}}}";
    assert_int_equal(core_watch_event(f->core, "pods", bm, strlen(bm), &rv, &code, err, sizeof err), 0);
    assert_string_equal(rv, "99");
    free(rv);
}

static void test_conflicting_create_is_classified(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    plan(f, "ns/p1", &p);
    assert_int_equal(core_result(f->core, &p.actions[0], 409, "{}", 2), CORE_RETRY);
    assert_int_equal(core_result(f->core, &p.actions[0], 422, "{}", 2), CORE_REJECTED);
    assert_int_equal(core_result(f->core, &p.actions[0], 500, "{}", 2), CORE_RETRY);
    assert_int_equal(core_result(f->core, &p.actions[0], 0, NULL, 0), CORE_RETRY);
    core_plan_free(&p);
}

static void test_render_and_check(void **state)
{
    struct fixture *f = *state;
    char err[4096];
    const char *pod = POD("name.with.dots", "fd00::1", "True");
    char *out = core_render(f->core, pod, strlen(pod), err, sizeof err);
    if (out == NULL)
        fail_msg("render: %s", err);
    assert_non_null(strstr(out, "\"addressType\":\"IPv6\""));
    assert_non_null(strstr(out, "\"value\":\"\\/name.with.dots\"") ? out : strstr(out, "\"/name.with.dots\""));
    assert_non_null(strstr(out, "\"envoy-router\\/pod\":\"name.with.dots\"") ? out
                    : strstr(out, "\"envoy-router/pod\":\"name.with.dots\""));
    free(out);
    assert_true(core_check(f->core, err, sizeof err) >= 5);
}

/* A user's Service holds the pod's name: the pod gets none of its other
 * children (they would feed that Service) until the name is free. */
static void test_taken_name_holds_back_the_other_children(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    /* Only the Service is tried first: nothing that points at it yet. */
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].res, "services");
    assert_string_equal(p.actions[0].verb, "create");
    assert_int_equal(core_result(f->core, &p.actions[0], 409, "{}", 2), CORE_RETRY);
    core_plan_free(&p);

    /* Then the name is read, not written: someone else's Service. */
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].verb, "get");
    assert_string_equal(p.actions[0].method, "GET");
    assert_string_equal(p.actions[0].path, "/api/v1/namespaces/ns/services/p1");
    const char *theirs = "{\"metadata\":{\"name\":\"p1\",\"namespace\":\"ns\",\"uid\":\"s9\"},"
                         "\"spec\":{\"ports\":[{\"port\":9}]}}";
    assert_int_equal(core_result(f->core, &p.actions[0], 200, theirs, strlen(theirs)),
                     CORE_CONFLICT);
    core_plan_free(&p);
    f->n_queued = 0;

    /* The user deletes theirs: the probe finds the name free, the pod is
     * queued, the Service is created, then the rest. */
    plan(f, "ns/p1", &p);
    assert_string_equal(p.actions[0].verb, "get");
    assert_int_equal(core_result(f->core, &p.actions[0], 404, "{}", 2), CORE_OK);
    assert_int_equal(f->n_queued, 1);
    assert_string_equal(f->queued[0], "ns/p1");
    core_plan_free(&p);
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].verb, "create");
    answer_one(f, &p.actions[0], 0);
    core_plan_free(&p);

    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(p.actions[i].verb, "create");
        assert_string_not_equal(p.actions[i].res, "services");
    }
    core_plan_free(&p);
}

/* Our own Service with our label taken off by hand drops out of the watch;
 * the create meets it (409), the probe reads it, sees our controller
 * reference to this pod, and the label is put back with an apply. */
static void test_own_child_without_label_is_adopted(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    plan(f, "ns/p1", &p);
    assert_int_equal(core_result(f->core, &p.actions[0], 409, "{}", 2), CORE_RETRY);
    core_plan_free(&p);
    plan(f, "ns/p1", &p);
    assert_string_equal(p.actions[0].verb, "get");
    const char *ours = "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"p1\","
                       "\"namespace\":\"ns\",\"uid\":\"s1\",\"labels\":{\"envoy-router/pod\":\"p1\"},"
                       "\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"name\":\"p1\","
                       "\"uid\":\"uid-p1\",\"controller\":true,\"blockOwnerDeletion\":false}]},"
                       "\"spec\":{\"clusterIP\":\"None\",\"ports\":[{\"name\":\"http\",\"port\":80,"
                       "\"targetPort\":8080,\"protocol\":\"TCP\"}]}}";
    assert_int_equal(core_result(f->core, &p.actions[0], 200, ours, strlen(ours)), CORE_OK);
    core_plan_free(&p);
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_problems, 0);
    int applies = 0;
    for (size_t i = 0; i < p.n_actions; i++) {
        if (strcmp(p.actions[i].res, "services") == 0) {
            assert_string_equal(p.actions[i].verb, "apply");
            assert_non_null(strstr(p.actions[i].why, "desired-hash"));
            assert_non_null(strstr(p.actions[i].body, "\"uid\":\"s1\""));
            applies++;
        } else {
            /* The rest follows at once, the route owned by the adopted
             * Service too. */
            assert_string_equal(p.actions[i].verb, "create");
            if (strcmp(p.actions[i].res, "httproutes") == 0)
                assert_non_null(strstr(p.actions[i].body, "\"uid\":\"s1\""));
        }
    }
    assert_int_equal(applies, 1);
    assert_int_equal(p.n_actions, 3);
    core_plan_free(&p);
}

/* A hand edit can leave a list entry another manager owns jointly with us
 * (a Service port whose number was changed by hand: two ports of one name),
 * which no apply removes: the repair is refused with 422. Such a child is
 * ours and broken, so it is replaced: deleted (uid precondition), then
 * created afresh. A refused apply of a changed desired object is the
 * template's fault instead: reported, the child left alone. */
static void test_refused_repair_replaces_the_child(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    char err[512], *rv, ev[8192];
    long code;
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    settle(f, "ns/p1");
    /* The Service's desired hash, read off an apply the settled state
     * would get if its annotation were lost. */
    char h[17] = "0000000000000000";

    snprintf(ev, sizeof ev,
             "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"p1\",\"namespace\":\"ns\","
             "\"uid\":\"child-0\",\"resourceVersion\":\"12\",\"annotations\":{\"envoy-router/desired-hash\":"
             "\"%s\"},\"labels\":{\"app.kubernetes.io/managed-by\":\"envoy-router\"},"
             "\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"name\":\"p1\","
             "\"uid\":\"uid-p1\",\"controller\":true}],\"managedFields\":[{\"manager\":"
             "\"envoy-router\",\"operation\":\"Apply\",\"fieldsV1\":{\"f:spec\":{\"f:ports\":"
             "{\"k:{\\\"port\\\":81,\\\"protocol\\\":\\\"TCP\\\"}\":{\"f:name\":{}}}}}}]},"
             "\"spec\":{\"clusterIP\":\"None\",\"ports\":[{\"name\":\"http\",\"port\":81,"
             "\"targetPort\":8080,\"protocol\":\"TCP\"}]}}}", h);
    assert_int_equal(core_watch_event(f->core, "services", ev, strlen(ev), &rv, &code, err, sizeof err), 0);
    free(rv);
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    const char *hash = strstr(p.actions[0].body, "desired-hash\":\"");
    assert_non_null(hash);
    memcpy(h, hash + strlen("desired-hash\":\""), 16);
    core_plan_free(&p);
    char *at = strstr(ev, "0000000000000000");
    assert_non_null(at);
    memcpy(at, h, 16);
    at = strstr(ev, "\"resourceVersion\":\"12\"");   /* a new version */
    assert_non_null(at);
    at[strlen("\"resourceVersion\":\"1")] = '3';
    assert_int_equal(core_watch_event(f->core, "services", ev, strlen(ev), &rv, &code, err, sizeof err), 0);
    free(rv);
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].verb, "apply");
    assert_string_equal(p.actions[0].why, "fields envoy-router owns");
    assert_int_equal(core_result(f->core, &p.actions[0], 422, "{}", 2), CORE_RETRY);
    core_plan_free(&p);

    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].verb, "delete");
    assert_non_null(strstr(p.actions[0].body, "\"uid\":\"child-0\""));
    f->n_queued = 0;
    assert_int_equal(core_result(f->core, &p.actions[0], 200, "{}", 2), CORE_OK);
    assert_int_equal(f->n_queued, 1);
    assert_string_equal(f->queued[0], "ns/p1");
    core_plan_free(&p);

    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].verb, "create");
    assert_string_equal(p.actions[0].res, "services");
    core_plan_free(&p);
}

/* A route held by a finalizer is not gone when its DELETE answers: the
 * Service and EndpointSlice wait for its watch DELETED. */
static void test_route_with_finalizer_is_waited_for(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    char err[512], *rv;
    long code;
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    settle(f, "ns/p1");
    const char *ev = "{\"type\":\"DELETED\",\"object\":" POD("p1", "10.1.2.3", "True") "}";
    assert_int_equal(core_watch_event(f->core, "pods", ev, strlen(ev), &rv, &code, err, sizeof err), 0);
    free(rv);
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].res, "httproutes");
    const char *held = "{\"apiVersion\":\"gateway.networking.k8s.io/v1\",\"kind\":\"HTTPRoute\","
                       "\"metadata\":{\"name\":\"p1\",\"namespace\":\"ns\",\"uid\":\"child-0\","
                       "\"deletionTimestamp\":\"2026-01-01T00:00:00Z\",\"finalizers\":[\"x/y\"],"
                       "\"ownerReferences\":[{\"kind\":\"Pod\",\"name\":\"p1\",\"uid\":\"uid-p1\","
                       "\"controller\":true}]},\"spec\":{}}";
    assert_int_equal(core_result(f->core, &p.actions[0], 200, held, strlen(held)), CORE_OK);
    core_plan_free(&p);
    /* Nothing to do while it is on its way out: no second DELETE. */
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 0);
    core_plan_free(&p);
    f->n_queued = 0;
    char line[2048];
    snprintf(line, sizeof line, "{\"type\":\"DELETED\",\"object\":%s}", held);
    assert_int_equal(core_watch_event(f->core, "httproutes", line, strlen(line), &rv, &code, err,
                                      sizeof err), 0);
    free(rv);
    assert_int_equal(f->n_queued, 1);
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 2);
    for (size_t i = 0; i < p.n_actions; i++)
        assert_string_not_equal(p.actions[i].res, "httproutes");
    core_plan_free(&p);
}

/* An HTTPRoute of pod p1 (generation 2) with one status.parents entry for
 * Gateway ns/gw carrying the given Accepted and ResolvedRefs conditions. */
static void route_status(struct fixture *f, const char *type, const char *accepted,
                         const char *reason, const char *resolved, const char *resolved_reason,
                         int observed)
{
    /* Every status write is a new version of the route. */
    static int version = 20;
    char line[4096], err[512], *rv;
    long code;
    snprintf(line, sizeof line,
             "{\"type\":\"%s\",\"object\":{\"apiVersion\":\"gateway.networking.k8s.io/v1\","
             "\"kind\":\"HTTPRoute\",\"metadata\":{\"name\":\"p1\",\"namespace\":\"ns\","
             "\"uid\":\"r1\",\"generation\":2,\"resourceVersion\":\"%d\",\"labels\":"
             "{\"app.kubernetes.io/managed-by\":\"envoy-router\"},\"ownerReferences\":"
             "[{\"kind\":\"Pod\",\"name\":\"p1\",\"uid\":\"uid-p1\",\"controller\":true}]},"
             "\"spec\":{\"parentRefs\":[{\"name\":\"gw\"}]},\"status\":{\"parents\":[{"
             "\"parentRef\":{\"group\":\"gateway.networking.k8s.io\",\"kind\":\"Gateway\","
             "\"name\":\"gw\"},\"controllerName\":\"gateway.envoyproxy.io/gatewayclass-controller\","
             "\"conditions\":[{\"type\":\"Accepted\",\"status\":\"%s\",\"reason\":\"%s\","
             "\"message\":\"said %s\",\"observedGeneration\":%d},{\"type\":\"ResolvedRefs\","
             "\"status\":\"%s\",\"reason\":\"%s\",\"message\":\"refs\",\"observedGeneration\":%d}]"
             "}]}}}",
             type, version++, accepted, reason, reason, observed, resolved, resolved_reason,
             observed);
    assert_int_equal(core_watch_event(f->core, "httproutes", line, strlen(line), &rv, &code, err,
                                      sizeof err), 0);
    free(rv);
}

static void assert_states(struct fixture *f, size_t a, size_t na, size_t u, size_t pe)
{
    size_t accepted, not_accepted, unresolved, pending;
    core_route_states(f->core, f->now_ms, &accepted, &not_accepted, &unresolved, &pending);
    assert_int_equal(accepted, a);
    assert_int_equal(not_accepted, na);
    assert_int_equal(unresolved, u);
    assert_int_equal(pending, pe);
}

/* Problems in p: how many, and the reason of the first. */
static size_t notices(struct fixture *f, struct core_plan *p)
{
    plan(f, "ns/p1", p);
    for (size_t i = 0; i < p->n_problems; i++)
        assert_true(p->problems[i].notice);
    return p->n_problems;
}

/* The Gateway controller's answer on a route: one report per change of
 * state, not per status write; the states are counted from the cache. */
static void test_route_health_is_reported_once_per_change(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    list(f, "httproutes", "");
    assert_states(f, 0, 0, 0, 0);
    route_status(f, "ADDED", "False", "NoMatchingParent", "True", "ResolvedRefs", 2);
    assert_states(f, 0, 1, 0, 0);
    assert_int_equal(notices(f, &p), 1);
    assert_string_equal(p.problems[0].reason, "RouteNotAccepted");
    assert_non_null(strstr(p.problems[0].message, "HTTPRoute ns/p1"));
    assert_non_null(strstr(p.problems[0].message, "Gateway ns/gw"));
    assert_non_null(strstr(p.problems[0].message, "gateway.envoyproxy.io/gatewayclass-controller"));
    assert_non_null(strstr(p.problems[0].message, "NoMatchingParent: said NoMatchingParent"));
    core_plan_free(&p);
    /* The same answer written again: nothing new to say. */
    route_status(f, "MODIFIED", "False", "NoMatchingParent", "True", "ResolvedRefs", 2);
    assert_int_equal(notices(f, &p), 0);
    core_plan_free(&p);
    /* Another reason is news. */
    route_status(f, "MODIFIED", "False", "NotAllowedByListeners", "True", "ResolvedRefs", 2);
    assert_int_equal(notices(f, &p), 1);
    assert_non_null(strstr(p.problems[0].message, "NotAllowedByListeners"));
    core_plan_free(&p);
    /* Accepted: counted, nothing reported; no ready endpoint is not a
     * broken route. */
    route_status(f, "MODIFIED", "True", "Accepted", "False", "EndpointsNotFound", 2);
    assert_states(f, 1, 0, 0, 0);
    assert_int_equal(notices(f, &p), 0);
    core_plan_free(&p);
    /* A backend the controller cannot resolve. */
    route_status(f, "MODIFIED", "True", "Accepted", "False", "BackendNotFound", 2);
    assert_states(f, 0, 0, 1, 0);
    assert_int_equal(notices(f, &p), 1);
    assert_string_equal(p.problems[0].reason, "RouteRefsUnresolved");
    core_plan_free(&p);
    /* An answer about an older generation of the spec is no answer. */
    route_status(f, "MODIFIED", "False", "NoMatchingParent", "True", "ResolvedRefs", 1);
    assert_states(f, 0, 0, 0, 1);
    assert_int_equal(notices(f, &p), 0);
    core_plan_free(&p);
    /* Not accepted again after a change: reported again. */
    route_status(f, "MODIFIED", "False", "NoMatchingParent", "True", "ResolvedRefs", 2);
    assert_int_equal(notices(f, &p), 1);
    core_plan_free(&p);
    /* A state that clears before the plan is not reported. */
    route_status(f, "MODIFIED", "True", "Accepted", "True", "ResolvedRefs", 2);
    route_status(f, "MODIFIED", "False", "NoMatchingParent", "True", "ResolvedRefs", 2);
    route_status(f, "MODIFIED", "True", "Accepted", "True", "ResolvedRefs", 2);
    assert_int_equal(notices(f, &p), 0);
    core_plan_free(&p);
    assert_states(f, 1, 0, 0, 0);
}

/* A route no Gateway controller answers (Envoy Gateway writes nothing on a
 * route whose Gateway does not exist): its pod hears of it once, 30 s after
 * it was first counted pending. */
static void test_route_without_answer_is_reported_after_a_while(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    char err[512], *rv;
    long code;
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    const char *ev = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"p1\","
                     "\"namespace\":\"ns\",\"uid\":\"r1\",\"generation\":1,\"labels\":"
                     "{\"app.kubernetes.io/managed-by\":\"envoy-router\"},\"ownerReferences\":"
                     "[{\"kind\":\"Pod\",\"name\":\"p1\",\"uid\":\"uid-p1\",\"controller\":true}]},"
                     "\"spec\":{\"parentRefs\":[{\"name\":\"gw\"}]}}}";
    assert_int_equal(core_watch_event(f->core, "httproutes", ev, strlen(ev), &rv, &code, err,
                                      sizeof err), 0);
    free(rv);
    f->now_ms = 1000;
    assert_states(f, 0, 0, 0, 1);
    assert_int_equal(notices(f, &p), 0);
    core_plan_free(&p);
    f->n_queued = 0;
    f->now_ms = 30999;
    assert_states(f, 0, 0, 0, 1);
    assert_int_equal(f->n_queued, 0);
    /* The same silent route written again does not restart the wait. */
    assert_int_equal(core_watch_event(f->core, "httproutes", ev, strlen(ev), &rv, &code, err,
                                      sizeof err), 0);
    free(rv);
    f->n_queued = 0;
    f->now_ms = 31000;
    assert_states(f, 0, 0, 0, 1);
    assert_int_equal(f->n_queued, 1);
    assert_string_equal(f->queued[0], "ns/p1");
    assert_int_equal(notices(f, &p), 1);
    assert_string_equal(p.problems[0].reason, "RouteNotAnswered");
    assert_non_null(strstr(p.problems[0].message, "Gateway ns/gw"));
    assert_non_null(strstr(p.problems[0].message, "30 s"));
    core_plan_free(&p);
    /* Once per wait. */
    f->now_ms = 90000;
    assert_states(f, 0, 0, 0, 1);
    assert_int_equal(notices(f, &p), 0);
    core_plan_free(&p);
}

/* What the Go operator (chart 0.1.3) leaves behind: its finalizer on the
 * pod, and children with our label, the pod's name and no controller. The
 * finalizer goes with a JSON patch that touches nothing else; the children
 * are adopted by apply. A child with a controller that is not ours, or
 * without our label, stays someone else's. */
static void test_go_operator_leftovers(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    list(f, "pods",
         "{\"metadata\":{\"name\":\"p1\",\"namespace\":\"ns\",\"uid\":\"uid-p1\","
         "\"labels\":{\"envoy-router/enabled\":\"true\"},"
         "\"finalizers\":[\"example.com/keep\",\"envoy-router.comet.ml/finalizer\"]},"
         "\"spec\":{\"nodeName\":\"n1\"},\"status\":{\"podIP\":\"10.1.2.3\","
         "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}");
    list(f, "services",
         "{\"metadata\":{\"name\":\"p1\",\"namespace\":\"ns\",\"uid\":\"s1\","
         "\"labels\":{\"app.kubernetes.io/managed-by\":\"envoy-router\"}},"
         "\"spec\":{\"ports\":[{\"port\":80}]}}");
    list(f, "endpointslices",
         "{\"metadata\":{\"name\":\"p1\",\"namespace\":\"ns\",\"uid\":\"e1\","
         "\"labels\":{\"app.kubernetes.io/managed-by\":\"envoy-router\"},"
         "\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\","
         "\"name\":\"rs\",\"uid\":\"r1\",\"controller\":true}]}}");
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_problems, 1);
    assert_string_equal(p.problems[0].reason, "NameConflict");
    assert_non_null(strstr(p.problems[0].message, "EndpointSlice"));
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].verb, "unfinalize");
    assert_string_equal(p.actions[0].method, "PATCH");
    assert_string_equal(p.actions[0].path, "/api/v1/namespaces/ns/pods/p1");
    assert_string_equal(p.actions[0].content_type, "application/json-patch+json");
    assert_non_null(strstr(p.actions[0].body, "\"op\":\"remove\""));
    assert_non_null(strstr(p.actions[0].body, "\"path\":\"/metadata/finalizers/1\"")
                    ? p.actions[0].body : strstr(p.actions[0].body, "finalizers\\/1"));
    assert_null(strstr(p.actions[0].body, "example.com"));
    assert_int_equal(core_result(f->core, &p.actions[0], 200, "{}", 2), CORE_OK);
    core_plan_free(&p);

    /* The EndpointSlice with someone else's controller is gone: the
     * Service without a controller is adopted (an apply with its uid). */
    list(f, "endpointslices", "");
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_problems, 0);
    int applies = 0;
    for (size_t i = 0; i < p.n_actions; i++) {
        if (strcmp(p.actions[i].res, "services") == 0) {
            assert_string_equal(p.actions[i].verb, "apply");
            assert_non_null(strstr(p.actions[i].body, "\"uid\":\"s1\""));
            assert_non_null(strstr(p.actions[i].body, "\"controller\":true"));
            applies++;
        }
    }
    assert_int_equal(applies, 1);
    core_plan_free(&p);
}

/* Kubernetes uids are UUIDs: the fixture's are shaped like them. */
#define POD_UID "00000000-0000-4000-8000-%012d"

/* The caches keep what reconcile reads, not whole objects: 1,000 pods
 * and their 3,000 children, as the API server lists them (managedFields
 * and all), cost a few KiB per pod in the core state. */
static void test_cache_per_pod_is_small(void **state)
{
    struct fixture *f = *state;
    enum { N = 1000 };
    size_t cap = 4u << 20, len;
    char *items = malloc(cap), err[512], *rv, *cont;
    assert_non_null(items);
    const char *mf = "\"managedFields\":[{\"manager\":\"envoy-router\",\"operation\":\"Apply\","
        "\"apiVersion\":\"v1\",\"time\":\"2026-01-01T00:00:00Z\",\"fieldsType\":\"FieldsV1\","
        "\"fieldsV1\":{\"f:metadata\":{\"f:annotations\":{\"f:envoy-router/desired-hash\":{}},"
        "\"f:labels\":{\"f:app.kubernetes.io/managed-by\":{},\"f:envoy-router/pod\":{}},"
        "\"f:ownerReferences\":{\"k:{\\\"uid\\\":\\\"" POD_UID "\\\"}\":{}}},\"f:spec\":{\"f:ports\":"
        "{\"k:{\\\"port\\\":80,\\\"protocol\\\":\\\"TCP\\\"}\":{\".\":{},\"f:name\":{},\"f:port\":{},"
        "\"f:protocol\":{},\"f:targetPort\":{}}}}}}]";
    const char *kinds[] = {"services", "endpointslices", "httproutes"};
    size_t before = core_memory(f->core);
    for (int k = -1; k < 3; k++) {
        len = 0;
        for (int i = 0; i < N; i++) {
            char m[2048];
            snprintf(m, sizeof m, mf, i);
            if (k < 0)
                len += (size_t)snprintf(items + len, cap - len, "%s{\"metadata\":{\"name\":\"pod-%04d\","
                    "\"namespace\":\"ns\",\"uid\":\"" POD_UID "\",\"resourceVersion\":\"%d\",\"labels\":"
                    "{\"envoy-router/enabled\":\"true\",\"app\":\"notebook\"},\"annotations\":"
                    "{\"example.com/a\":\"%0200d\"},%s},\"spec\":{\"nodeName\":\"node-1\","
                    "\"containers\":[{\"name\":\"app\",\"image\":\"x\",\"ports\":[{\"containerPort\":8080}]}]},"
                    "\"status\":{\"phase\":\"Running\",\"podIP\":\"10.1.%d.%d\",\"podIPs\":[{\"ip\":"
                    "\"10.1.%d.%d\"}],\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}",
                    i ? "," : "", i, i, 1000 + i, 0, m, i / 250, i % 250, i / 250, i % 250);
            else
                len += (size_t)snprintf(items + len, cap - len, "%s{\"metadata\":{\"name\":\"pod-%04d\","
                    "\"namespace\":\"ns\",\"uid\":\"%08d-0000-4000-8000-%012d\",\"resourceVersion\":\"%d\",\"labels\":"
                    "{\"app.kubernetes.io/managed-by\":\"envoy-router\",\"envoy-router/pod\":\"pod-%04d\"},"
                    "\"annotations\":{\"envoy-router/desired-hash\":\"0123456789abcdef\"},"
                    "\"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"name\":\"pod-%04d\","
                    "\"uid\":\"" POD_UID "\",\"controller\":true,\"blockOwnerDeletion\":false}],%s},"
                    "\"spec\":{\"clusterIP\":\"None\",\"ports\":[{\"name\":\"http\",\"port\":80,"
                    "\"targetPort\":8080,\"protocol\":\"TCP\"}]}}",
                    i ? "," : "", i, k + 1, i, 5000 + i, i, i, i, m);
            assert_true(len < cap - 4096);
        }
        char *body = malloc(len + 128);
        assert_non_null(body);
        int n = snprintf(body, len + 128, "{\"metadata\":{\"resourceVersion\":\"9\"},\"items\":[%.*s]}",
                         (int)len, items);
        const char *res = k < 0 ? "pods" : kinds[k];
        assert_int_equal(core_list_begin(f->core, res), 0);
        assert_int_equal(core_list_page(f->core, res, body, (size_t)n, &rv, &cont, err, sizeof err), 0);
        assert_int_equal(core_list_end(f->core, res), 0);
        free(rv);
        free(cont);
        free(body);
    }
    free(items);
    size_t managed, pods, children;
    core_stats(f->core, &managed, &pods, &children);
    assert_int_equal(pods, N);
    assert_int_equal(children, 3 * N);
    assert_int_equal(managed, N);
    size_t per_pod = (core_memory(f->core) - before) / N;
    printf("# core state: %zu bytes per pod with its three children\n", per_pod);
    assert_true(per_pod < 1150);
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* The figures follow every change of the caches, and reading them costs
 * nothing per cached pod (the stats timer reads them every second). */
static void test_stats_follow_the_caches_at_no_cost(void **state)
{
    struct fixture *f = *state;
    size_t managed, pods, children;
    char err[512], *rv;
    long code;
    list(f, "services", "");
    list(f, "endpointslices", "");
    list(f, "httproutes", "");
    list(f, "pods", POD("p1", "10.1.2.3", "True") "," POD("p2", "10.1.2.4", "True"));
    settle(f, "ns/p1");
    core_stats(f->core, &managed, &pods, &children);
    assert_int_equal(managed, 1);
    assert_int_equal(pods, 2);
    assert_int_equal(children, 3);
    const char *gone = "{\"type\":\"DELETED\",\"object\":" POD("p1", "10.1.2.3", "True") "}";
    assert_int_equal(core_watch_event(f->core, "pods", gone, strlen(gone), &rv, &code, err,
                                      sizeof err), 0);
    free(rv);
    core_stats(f->core, &managed, &pods, &children);
    assert_int_equal(managed, 0);           /* its children wait for deletion */
    assert_int_equal(pods, 1);
    assert_int_equal(children, 3);
    const char *back = "{\"type\":\"ADDED\",\"object\":" POD("p1", "10.1.2.3", "True") "}";
    assert_int_equal(core_watch_event(f->core, "pods", back, strlen(back), &rv, &code, err,
                                      sizeof err), 0);
    free(rv);
    core_stats(f->core, &managed, &pods, &children);
    assert_int_equal(managed, 1);
    assert_int_equal(pods, 2);
    list(f, "services", "");                /* the Service went */
    core_stats(f->core, &managed, &pods, &children);
    assert_int_equal(managed, 1);
    assert_int_equal(children, 2);
    list(f, "endpointslices", "");
    list(f, "httproutes", "");
    core_stats(f->core, &managed, &pods, &children);
    assert_int_equal(managed, 0);
    assert_int_equal(children, 0);

    /* 20,000 pods: a walk over them would take about a millisecond a call. */
    enum { N = 20000 };
    size_t cap = (size_t)N * 400 + 256, len = 0;
    char *body = malloc(cap), *cont;
    assert_non_null(body);
    len += (size_t)snprintf(body + len, cap - len,
                            "{\"kind\":\"List\",\"metadata\":{\"resourceVersion\":\"10\"},\"items\":[");
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(body + len, cap - len,
                                "%s{\"metadata\":{\"name\":\"p%d\",\"namespace\":\"big\","
                                "\"uid\":\"u%d\"},\"status\":{\"podIP\":\"10.9.%d.%d\"}}",
                                i ? "," : "", i, i, i / 250, i % 250);
    len += (size_t)snprintf(body + len, cap - len, "]}");
    assert_int_equal(core_list_begin(f->core, "pods"), 0);
    assert_int_equal(core_list_page(f->core, "pods", body, len, &rv, &cont, err, sizeof err), 0);
    free(rv);
    free(cont);
    free(body);
    f->n_queued = 0;
    double t0 = now_us();
    for (int i = 0; i < 200; i++)
        core_stats(f->core, &managed, &pods, &children);
    double per_call = (now_us() - t0) / 200;
    assert_int_equal(pods, N + 2);
    print_message("# core_stats at %d pods: %.1f us a call\n", N + 2, per_call);
    assert_true(per_call < 50.0);           /* generous: about 1 us here */
}

/* A failure inside core.lua where the caller gets no error back (here a
 * read of a taken name answered with a body that is not JSON) is logged,
 * not dropped. */
static void test_core_lua_failures_are_logged(void **state)
{
    struct fixture *f = *state;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    struct core_action a = {.verb = "get", .res = "services", .key = "ns/x", .kind = "Service",
                            .method = "GET", .path = "/api/v1/namespaces/ns/services/x"};
    assert_non_null(out);
    log_set_output(out);
    assert_int_equal(core_result(f->core, &a, 200, "not json", 8), CORE_RETRY);
    log_set_output(NULL);
    fclose(out);
    assert_non_null(strstr(buf, "core: host/core.lua failed"));
    assert_non_null(strstr(buf, "function=result"));
    free(buf);
}

static int64_t fake_now;
static int64_t fake_clock(void)
{
    return fake_now;
}

/* A terminating pod's Service and EndpointSlice lose their owners (the
 * garbage collector then deletes only the route when the pod goes); once
 * the route is gone they are deleted a drain delay later, not sooner, and
 * the plan says when to look again. */
static void test_terminating_pod_drains_before_the_service_goes(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    char err[512], *rv;
    long code;
    fake_now = 1000000;
    core_set_clock(f->core, fake_clock);
    core_set_drain(f->core, 2000);
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    settle(f, "ns/p1");
    const char *term = "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"p1\","
        "\"namespace\":\"ns\",\"uid\":\"uid-p1\",\"resourceVersion\":\"6\","
        "\"deletionTimestamp\":\"2026-01-01T00:00:00Z\","
        "\"labels\":{\"envoy-router/enabled\":\"true\"}},\"spec\":{\"nodeName\":\"n1\"},"
        "\"status\":{\"podIP\":\"10.1.2.3\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}}";
    assert_int_equal(core_watch_event(f->core, "pods", term, strlen(term), &rv, &code, err,
                                      sizeof err), 0);
    free(rv);
    /* Terminating: the Service and EndpointSlice are applied without
     * owners (server-side apply prunes them); the route keeps its Service
     * owner until the Service's answer shows it released (the collector
     * may be deleting it already: the route must keep blocking it). */
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(p.actions[i].verb, "apply");
        assert_string_not_equal(p.actions[i].res, "httproutes");
        assert_null(strstr(p.actions[i].body, "ownerReferences"));
    }
    f->n_queued = 0;
    answer(f, &p);
    assert_int_equal(f->n_queued, 1);
    assert_string_equal(f->queued[0], "ns/p1");
    core_plan_free(&p);
    /* Then the route, without its Service owner: only the pod is left. */
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].verb, "apply");
    assert_string_equal(p.actions[0].res, "httproutes");
    assert_non_null(strstr(p.actions[0].body, "\"uid\":\"uid-p1\""));
    assert_null(strstr(p.actions[0].body, "\"blockOwnerDeletion\":true"));
    answer(f, &p);
    core_plan_free(&p);
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 0);
    assert_int_equal(p.requeue_ms, 0);
    core_plan_free(&p);
    /* The pod goes: the route first. */
    const char *ev = "{\"type\":\"DELETED\",\"object\":" POD("p1", "10.1.2.3", "True") "}";
    assert_int_equal(core_watch_event(f->core, "pods", ev, strlen(ev), &rv, &code, err, sizeof err), 0);
    free(rv);
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].res, "httproutes");
    answer(f, &p);
    core_plan_free(&p);
    /* Route gone: the owner-less children still belong to ns/p1 (by their
     * label) and wait for the drain delay. */
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 0);
    assert_int_equal(p.requeue_ms, 2000);
    core_plan_free(&p);
    fake_now += 1999;
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 0);
    assert_int_equal(p.requeue_ms, 1);
    core_plan_free(&p);
    fake_now += 1;
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 2);
    assert_int_equal(p.requeue_ms, 0);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(p.actions[i].verb, "delete");
        assert_non_null(strstr(p.actions[i].body, "\"preconditions\":{\"uid\":\""));
    }
    answer(f, &p);
    core_plan_free(&p);
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 0);
    assert_int_equal(p.requeue_ms, 0);
    core_plan_free(&p);
}

/* A pod deleted by force is terminating for a few ms: the collector can
 * start deleting its Service in the foreground before the release lands.
 * The answer then shows the Service being deleted, and the route keeps its
 * blocking Service owner, so the collector still deletes the route first. */
static void test_release_met_by_the_collector_keeps_the_route_blocking(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    list(f, "pods", POD("p1", "10.1.2.3", "True"));
    settle(f, "ns/p1");
    deliver(f, "pods", "MODIFIED", "{\"metadata\":{\"name\":\"p1\",\"namespace\":\"ns\","
        "\"uid\":\"uid-p1\",\"resourceVersion\":\"6\",\"deletionTimestamp\":\"2026-01-01T00:00:00Z\","
        "\"labels\":{\"envoy-router/enabled\":\"true\"}},\"spec\":{\"nodeName\":\"n1\"},"
        "\"status\":{\"podIP\":\"10.1.2.3\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}");
    plan(f, "ns/p1", &p);
    assert_int_equal(p.n_actions, 2);
    for (size_t i = 0; i < p.n_actions; i++) {
        if (strcmp(p.actions[i].res, "services") != 0) {
            answer_one(f, &p.actions[i], i);
            continue;
        }
        /* The collector was first: the Service is being deleted, still
         * waiting for the route (the apply pruned its owner meanwhile). */
        const char *deleting = "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{"
            "\"name\":\"p1\",\"namespace\":\"ns\",\"uid\":\"child-0\",\"resourceVersion\":\"30\","
            "\"deletionTimestamp\":\"2026-01-01T00:00:00Z\",\"finalizers\":[\"foregroundDeletion\"],"
            "\"labels\":{\"app.kubernetes.io/managed-by\":\"envoy-router\",\"envoy-router/pod\":\"p1\"}},"
            "\"spec\":{\"clusterIP\":\"None\"}}";
        assert_int_equal(core_result(f->core, &p.actions[i], 200, deleting, strlen(deleting)),
                         CORE_OK);
    }
    core_plan_free(&p);
    plan(f, "ns/p1", &p);
    for (size_t i = 0; i < p.n_actions; i++)
        assert_string_not_equal(p.actions[i].res, "httproutes");
    core_plan_free(&p);
}

/* A restarted host finds a released Service whose pod and route are gone:
 * it deletes it a drain delay after its first look. */
static void test_leftover_without_owners_is_deleted_after_the_delay(void **state)
{
    struct fixture *f = *state;
    struct core_plan p;
    fake_now = 5000;
    core_set_clock(f->core, fake_clock);
    core_set_drain(f->core, 2000);
    f->n_queued = 0;
    list(f, "pods", "");
    list(f, "services", "{\"metadata\":{\"name\":\"gone\",\"namespace\":\"ns\",\"uid\":\"s9\","
         "\"resourceVersion\":\"3\",\"labels\":{\"app.kubernetes.io/managed-by\":\"envoy-router\","
         "\"envoy-router/pod\":\"gone\"}},\"spec\":{}}");
    /* Someone else's owner-less Service with our pod label is not ours. */
    list(f, "endpointslices", "{\"metadata\":{\"name\":\"other\",\"namespace\":\"ns\","
         "\"uid\":\"e9\",\"resourceVersion\":\"3\",\"labels\":{\"envoy-router/pod\":\"other\"}}}");
    assert_int_equal(f->n_queued, 1);
    assert_string_equal(f->queued[0], "ns/gone");
    plan(f, "ns/gone", &p);
    assert_int_equal(p.n_actions, 0);
    assert_int_equal(p.requeue_ms, 2000);
    core_plan_free(&p);
    fake_now += 2000;
    plan(f, "ns/gone", &p);
    assert_int_equal(p.n_actions, 1);
    assert_string_equal(p.actions[0].verb, "delete");
    assert_string_equal(p.actions[0].res, "services");
    assert_non_null(strstr(p.actions[0].body, "\"uid\":\"s9\""));
    core_plan_free(&p);
    plan(f, "ns/other", &p);
    assert_int_equal(p.n_actions, 0);
    core_plan_free(&p);
}

/* Reload validation in slices: a step of budget 0 renders one pod, so the
 * main loop can serve between pods; the failure names its pod; a pod
 * deleted meanwhile is skipped. */
static void test_validation_in_slices(void **state)
{
    struct fixture *f = *state;
    char err[4096], dir[] = "/tmp/er-validate-XXXXXX", path[256];
    list(f, "pods", POD("a", "10.0.0.1", "True") "," POD("b", "10.0.0.2", "True") ","
                    POD("c", "10.0.0.3", "True") "," POD("d", "10.0.0.4", "True"));
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/router.lua", dir);
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    fputs("local base = require('builtin.router')\n"
          "return { selector = base.selector, children = function(pod, config)\n"
          "  if pod.metadata.name == 'c' then error('no c') end\n"
          "  return base.children(pod, config) end }\n", out);
    fclose(out);
    struct sandbox *cand = sandbox_new(dir, &cfg, NULL, err, sizeof err);
    assert_non_null(cand);
    assert_int_equal(core_validate_begin(f->core, err, sizeof err), 4);
    assert_int_equal(core_validate_step(f->core, cand, 0, err, sizeof err), 0);   /* a */
    assert_int_equal(core_validate_step(f->core, cand, 0, err, sizeof err), 0);   /* b */
    assert_int_equal(core_validate_step(f->core, cand, 0, err, sizeof err), -1);  /* c */
    assert_non_null(strstr(err, "pod ns/c: "));
    assert_non_null(strstr(err, "no c"));
    /* Again, with c deleted between two slices: skipped, and all pass. */
    assert_int_equal(core_validate_begin(f->core, err, sizeof err), 4);
    assert_int_equal(core_validate_step(f->core, cand, 0, err, sizeof err), 0);   /* a */
    char *rv = NULL;
    long code = 0;
    const char *ev = "{\"type\":\"DELETED\",\"object\":" POD("c", "10.0.0.3", "True") "}";
    assert_int_equal(core_watch_event(f->core, "pods", ev, strlen(ev), &rv, &code, err, sizeof err), 0);
    free(rv);
    assert_int_equal(core_validate_step(f->core, cand, 0, err, sizeof err), 0);   /* b */
    assert_int_equal(core_validate_step(f->core, cand, 0, err, sizeof err), 1);   /* d */
    /* The running scripts were never replaced by the steps. */
    struct core_plan p;
    plan(f, "ns/a", &p);
    assert_null(p.error);
    core_plan_free(&p);
    sandbox_free(cand);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_pod_gets_three_creates_then_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readiness_change_is_one_apply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pod_gone_deletes_children_with_uid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_of_another_pod_is_a_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relist_drops_missing_and_queues_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_error_and_malformed_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflicting_create_is_classified, setup, teardown),
        cmocka_unit_test_setup_teardown(test_render_and_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_taken_name_holds_back_the_other_children, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_own_child_without_label_is_adopted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_with_finalizer_is_waited_for, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_health_is_reported_once_per_change, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_route_without_answer_is_reported_after_a_while,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_repair_replaces_the_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_go_operator_leftovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_per_pod_is_small, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_follow_the_caches_at_no_cost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_lua_failures_are_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_after_the_echo_outlives_the_answer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancelled_write_leaves_no_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relist_newer_than_the_answer_is_kept, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_relist_without_the_child_is_not_undone_by_the_answer,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_echo_of_a_write_in_flight_queues_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_service_in_foreground_deletion_is_finished, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_service_replaced_but_already_gone_queues_the_pod, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_validation_in_slices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_terminating_pod_drains_before_the_service_goes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_met_by_the_collector_keeps_the_route_blocking,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_leftover_without_owners_is_deleted_after_the_delay,
                                        setup, teardown),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
