/* reconcile: see reconcile.h. */
#include "reconcile.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "log.h"
#include "metrics.h"
#include "timers.h"

struct job;

struct op {
    struct job *job;
    size_t index;                 /* into job->plan.actions */
    struct kube_call *call;
};

struct job {
    struct reconciler *r;
    struct list_node node;       /* in the reconciler's jobs */
    char *key;
    struct core_plan plan;
    struct op *ops;
    size_t pending;
    bool failed;
    int64_t started_ms;
};

struct reconciler {
    struct queue *queue;
    struct core *core;
    struct kube_transport io;    /* the client, or a test's script */
    unsigned max_active;
    bool paused;
    size_t active;
    uint64_t writes;
    struct list jobs;             /* in flight, newest first */
    reconcile_report_fn report;
    void *report_arg;
    struct metric *total, *errors, *seconds, *workers, *script_errors;
};

static void log_report(void *arg, const struct core_plan *plan, const char *reason,
                       const char *message)
{
    (void)arg;
    char pod[512];
    snprintf(pod, sizeof pod, "%s/%s", plan->pod_namespace ? plan->pod_namespace : "",
             plan->pod_name ? plan->pod_name : "");
    log_kv(LOG_WARN, message, "pod", pod, "reason", reason, NULL);
}

unsigned reconciler_jobs_for(unsigned max_writes)
{
    if (max_writes < 1)
        return 1;
    return max_writes > UINT_MAX / 2 ? UINT_MAX : 2 * max_writes;
}

struct reconciler *reconciler_new(struct queue *q, struct core *core,
                                  const struct kube_transport *io,
                                  unsigned max_active)
{
    struct reconciler *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->queue = q;
    r->core = core;
    r->io = *io;
    r->max_active = max_active ? max_active : 1;
    r->paused = true;
    r->report = log_report;
    r->total = metrics_counter("controller_runtime_reconcile_total",
                               "Reconciliations per controller and result.", "controller,result");
    r->errors = metrics_counter("controller_runtime_reconcile_errors_total",
                                "Reconciliations that ended in an error.", "controller");
    r->seconds = metrics_histogram("controller_runtime_reconcile_time_seconds",
                                   "Time from taking a pod key to the last answer of its writes.",
                                   "controller", NULL, 0);
    r->workers = metrics_gauge("controller_runtime_active_workers",
                               "Pods being reconciled now.", "controller");
    r->script_errors = metrics_counter("envoy_router_script_errors_total",
                                       "Script failures and invalid children while rendering a pod.",
                                       NULL);
    metrics_set(r->workers, "pod", 0);
    metrics_add(r->total, "pod,success", 0);
    metrics_add(r->total, "pod,error", 0);
    metrics_add(r->errors, "pod", 0);
    metrics_add(r->script_errors, NULL, 0);
    return r;
}

static void job_free(struct job *j)
{
    core_plan_free(&j->plan);
    free(j->ops);
    free(j->key);
    free(j);
}

void reconciler_free(struct reconciler *r)
{
    if (r == NULL)
        return;
    while (!list_empty(&r->jobs)) {
        struct job *j = list_entry(r->jobs.head, struct job, node);
        list_unlink(&r->jobs, &j->node);
        job_free(j);
    }
    free(r);
}

void reconciler_set_reporter(struct reconciler *r, reconcile_report_fn fn, void *arg)
{
    r->report = fn ? fn : log_report;
    r->report_arg = arg;
}

void reconciler_pause(struct reconciler *r, bool paused)
{
    r->paused = paused;
}

bool reconciler_can_take(const struct reconciler *r)
{
    return !r->paused && r->active < r->max_active;
}

size_t reconciler_cancel(struct reconciler *r)
{
    size_t n = 0;
    int64_t now = transport_now(&r->io);
    while (!list_empty(&r->jobs)) {
        struct job *j = list_entry(r->jobs.head, struct job, node);
        list_unlink(&r->jobs, &j->node);
        for (size_t i = 0; j->ops && i < j->plan.n_actions; i++) {
            if (j->ops[i].call) {
                r->io.cancel(r->io.arg, j->ops[i].call);
                n++;
            }
        }
        queue_done(r->queue, j->key, now);
        job_free(j);
    }
    r->active = 0;
    metrics_set(r->workers, "pod", 0);
    return n;
}

size_t reconciler_active(const struct reconciler *r)
{
    return r->active;
}

uint64_t reconciler_writes(const struct reconciler *r)
{
    return r->writes;
}

/* The job's last answer came (or it had nothing to write). */
static void finish(struct job *j)
{
    struct reconciler *r = j->r;
    int64_t now = transport_now(&r->io);
    bool failed = j->failed || j->plan.error != NULL;
    metrics_add(r->total, failed ? "pod,error" : "pod,success", 1);
    if (failed)
        metrics_add(r->errors, "pod", 1);
    metrics_observe(r->seconds, "pod", (double)(now - j->started_ms) / 1000.0);
    if (failed)
        queue_retry(r->queue, j->key, now);
    else
        queue_forget(r->queue, j->key);
    queue_done(r->queue, j->key, now);
    if (!failed && j->plan.requeue_ms > 0)   /* the drain delay of its Service */
        queue_add_after(r->queue, j->key, j->plan.requeue_ms, now);
    list_unlink(&r->jobs, &j->node);
    r->active--;
    metrics_set(r->workers, "pod", (double)r->active);
    job_free(j);
}

static void on_write(void *arg, const struct kube_response *resp)
{
    struct op *op = arg;
    struct job *j = op->job;
    struct reconciler *r = j->r;
    const struct core_action *a = &j->plan.actions[op->index];
    op->call = NULL;
    enum core_outcome out = core_result(r->core, a, resp->status, resp->body, resp->len);
    char status[32];
    snprintf(status, sizeof status, "%ld", resp->status);
    if (out == CORE_OK) {
        log_kv(LOG_DEBUG, "reconcile: wrote", "pod", j->key, "verb", a->verb, "kind", a->kind,
               "object", a->key, "status", status, NULL);
    } else {
        j->failed = true;
        char msg[1024];
        const char *why = resp->error ? resp->error : resp->body;
        if (out == CORE_CONFLICT) {
            snprintf(msg, sizeof msg, "%s %s already exists and is not managed by "
                     "envoy-router for this pod; it is left alone", a->kind, a->key);
            r->report(r->report_arg, &j->plan, "NameConflict", msg);
        } else if (out == CORE_REJECTED) {
            snprintf(msg, sizeof msg, "the API server rejected %s %s %s (HTTP %ld): %.600s",
                     a->verb, a->kind, a->key, resp->status, why ? why : "");
            r->report(r->report_arg, &j->plan, "ChildRejected", msg);
        } else {
            log_kv(LOG_WARN, "reconcile: write failed, will retry", "pod", j->key,
                   "verb", a->verb, "kind", a->kind, "object", a->key, "status", status,
                   "error", why ? why : "", NULL);
        }
    }
    if (--j->pending == 0)
        finish(j);
}

static void start(struct reconciler *r, const char *key, int64_t now)
{
    char err[4096];
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL || (j->key = strdup(key)) == NULL) {
        free(j);
        queue_retry(r->queue, key, now);
        queue_done(r->queue, key, now);
        return;
    }
    j->r = r;
    j->started_ms = now;
    list_push_front(&r->jobs, &j->node);
    r->active++;
    metrics_set(r->workers, "pod", (double)r->active);
    if (core_reconcile(r->core, key, &j->plan, err, sizeof err) != 0) {
        log_kv(LOG_ERROR, "reconcile: planning failed", "pod", key, "error", err, NULL);
        j->failed = true;
        finish(j);
        return;
    }
    for (size_t i = 0; i < j->plan.n_problems; i++) {
        r->report(r->report_arg, &j->plan, j->plan.problems[i].reason,
                  j->plan.problems[i].message);
        if (!j->plan.problems[i].notice)
            j->failed = true;       /* a conflict may clear: look again later */
    }
    if (j->plan.error) {
        metrics_add(r->script_errors, NULL, 1);
        log_kv(LOG_ERROR, "reconcile: script error", "pod", key, "error", j->plan.error, NULL);
        r->report(r->report_arg, &j->plan, "ScriptError", j->plan.error);
        finish(j);
        return;
    }
    if (j->plan.n_actions == 0) {
        finish(j);
        return;
    }
    j->ops = calloc(j->plan.n_actions, sizeof *j->ops);
    if (j->ops == NULL) {
        j->failed = true;
        finish(j);
        return;
    }
    size_t n = j->plan.n_actions;   /* j may be freed by the last on_write */
    j->pending = n;
    for (size_t i = 0; i < n; i++) {
        const struct core_action *a = &j->plan.actions[i];
        struct op *op = &j->ops[i];
        op->job = j;
        op->index = i;
        bool read = strcmp(a->method, "GET") == 0;   /* a probe of a taken name */
        log_kv(read ? LOG_DEBUG : LOG_INFO,
               read ? "reconcile: reading a taken name" : "reconcile: writing", "pod", key,
               "verb", a->verb, "kind", a->kind, "object", a->key,
               a->why ? "differs" : NULL, a->why, NULL);
        if (!read)
            r->writes++;
        op->call = r->io.request(r->io.arg, a->method, a->path, a->content_type,
                                read ? NULL : a->body, read ? 0 : a->body_len, on_write, op);
        if (op->call == NULL) {
            struct kube_response none = {0, "", 0, "out of memory"};
            on_write(op, &none);    /* the last one finishes and frees j */
        }
    }
}

void reconciler_pump(struct reconciler *r, int64_t now_ms)
{
    while (!r->paused && r->active < r->max_active) {
        const char *key = queue_pop(r->queue, now_ms);
        if (key == NULL)
            break;
        start(r, key, now_ms);
    }
}
