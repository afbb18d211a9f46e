/* main: the envoy-router binary. Parses the configuration, then runs one of
 * the commands: the operator (run), render, check, version, help.
 *
 * The operator is one thread owning everything that changes (the kube
 * client's transfers, the timers, the queue, the caches and both Lua
 * states); the metrics/health server runs on libmicrohttpd's thread and
 * reads only the metrics registry and atomics. The loop sleeps in
 * kube_wait until network activity, a signal (signalfd), a change in the
 * scripts directory (inotify) or the next deadline. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "core.h"
#include "dirwatch.h"
#include "events.h"
#include "file.h"
#include "kube.h"
#include "kubeconfig.h"
#include "leader.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "reconcile.h"
#include "sandbox.h"
#include "server.h"
#include "timers.h"
#include "watch.h"
#include "yamljson.h"

#ifndef ENVOY_ROUTER_VERSION
#define ENVOY_ROUTER_VERSION "0.1.0-dev"
#endif

#define MANAGED_SELECTOR "app.kubernetes.io/managed-by=envoy-router"
#define RELOAD_DEBOUNCE_MS 300
#define VALIDATE_SLICE_MS 20        /* validation work between two loop turns */
#define STATS_EVERY_MS 1000
#define POD_FILE_MAX ((size_t)16 << 20)  /* a pod given to `render` */
#define RELEASE_WAIT_MS 3000        /* for the API server to take the Lease back */

/* Test-only: a directory standing in for "/" when the service-account files
 * (var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace})
 * are read in in-cluster mode, so end-to-end tests can run the binary "in
 * cluster" outside a pod. Not a flag on purpose: production never needs it. */
#define IN_CLUSTER_ROOT_ENV "ENVOY_ROUTER_IN_CLUSTER_ROOT"

struct operator {
    uint64_t trimmed_writes;     /* reconciler_writes at the last core_trim */
    int64_t trimmed_ms;
    struct config *cfg;
    struct kube *kube;
    struct kube_transport io;       /* kube as the watches' and reconciler's transport */
    struct timers *timers;
    struct queue *queue;
    struct core *core;
    struct sandbox *sandbox;
    struct reconciler *rec;
    struct server *server;
    struct leader *leader;          /* NULL without --leader-elect */
    struct events *events;
    char identity[512];
    struct watch *watches[4];       /* pods first, then the child kinds */
    size_t n_watches;
    int sigfd;
    struct dirwatch *scripts_watch; /* NULL without --scripts-dir */
    bool stopping;
    bool ready;
    bool leading;                   /* may write (always, without --leader-elect) */
    bool release_started, released, exit_now;
    int64_t release_deadline;
    uint64_t reload_timer;
    struct sandbox *candidate;      /* scripts being validated, or NULL */
    uint64_t validate_timer;
    struct kube_call *probe;        /* the API server's verdict on its selector */
    const char *reload_why;         /* what triggered the reload in progress */
    int64_t reload_t0;
    const char *unready_watch;      /* the failing watch /readyz reports, or NULL */
    int64_t stop_deadline;
    struct metric *reloads, *managed, *cached_pods, *cached_children, *routes;
};

static void on_enqueue(void *arg, const char *key)
{
    struct operator *op = arg;
    if (queue_add(op->queue, key, clock_ms()) != 0)
        log_kv(LOG_ERROR, "queue: out of memory", "pod", key, NULL);
}

/* The reconciler's problems: the log line, and a Kubernetes Event on the
 * pod (written by the leader only, de-duplicated and rate-limited). */
static void on_report(void *arg, const struct core_plan *plan, const char *reason,
                      const char *message)
{
    struct operator *op = arg;
    char pod[512];
    snprintf(pod, sizeof pod, "%s/%s", plan->pod_namespace ? plan->pod_namespace : "",
             plan->pod_name ? plan->pod_name : "");
    log_kv(LOG_WARN, message, "pod", pod, "reason", reason, NULL);
    events_report(op->events, plan->pod_namespace, plan->pod_name, plan->pod_uid, reason,
                  message);
}

/* Keys are taken only when the caches are synced, this process leads and
 * it is not shutting down. */
static void update_pause(struct operator *op)
{
    reconciler_pause(op->rec, !(op->ready && op->leading && !op->stopping));
}

static void on_leader(void *arg, bool leading)
{
    struct operator *op = arg;
    op->leading = leading;
    size_t ev = events_set_enabled(op->events, leading);
    update_pause(op);
    if (!leading) {
        /* Another replica may be writing now: nothing of ours may land
         * after it, so writes queued, in flight or backing off go, the
         * Events' too (events_set_enabled above). */
        size_t n = reconciler_cancel(op->rec);
        core_writes_cancelled(op->core);
        if (n + ev > 0) {
            char c[32], e[32];
            snprintf(c, sizeof c, "%zu", n);
            snprintf(e, sizeof e, "%zu", ev);
            log_kv(LOG_WARN, "not leading: writes in flight cancelled", "cancelled", c,
                   "events_cancelled", e, NULL);
        }
    }
    if (leading && op->ready && !op->stopping) {
        /* The previous leader may have stopped half-way: look at every pod
         * (unchanged children cost no write). */
        char n[32];
        snprintf(n, sizeof n, "%zu", core_enqueue_all(op->core));
        log_kv(LOG_INFO, "leading: reconciling every pod", "requeued", n, NULL);
    }
}

/* The API server answers again after an outage: keys backing off from the
 * failures it caused go now (unchanged children cost no write), and their
 * failure counts go too, so that a key failing once more while the server
 * warms up retries after the base backoff, not after what the outage grew. */
static void on_recovered(void *arg)
{
    struct operator *op = arg;
    char n[32];
    queue_forget_all(op->queue);
    snprintf(n, sizeof n, "%zu", core_enqueue_all(op->core));
    log_kv(LOG_INFO, "kube: the API server answers again; looking at every pod", "queued", n,
           NULL);
}

static void on_released(void *arg)
{
    struct operator *op = arg;
    op->released = true;
}

static void reload_failed(struct operator *op, const char *err)
{
    metrics_add(op->reloads, "error", 1);
    log_kv(LOG_ERROR, "scripts: reload failed; the running scripts stay", "trigger",
           op->reload_why, "error", err, NULL);
}

/* Validation done: swap the candidate in and requeue every pod. */
static void reload_swap(struct operator *op)
{
    struct sandbox *sb = op->candidate;
    op->candidate = NULL;
    bool reproject = sandbox_wants_annotations(sb) != sandbox_wants_annotations(op->sandbox);
    core_set_sandbox(op->core, sb);
    sandbox_free(op->sandbox);
    op->sandbox = sb;
    metrics_add(op->reloads, "success", 1);
    if (op->n_watches > 0)
        watch_set_selector(op->watches[0], sandbox_selector(sb));
    /* The pod cache keeps annotations only for scripts that read them. */
    if (op->n_watches > 0 && reproject)
        watch_relist(op->watches[0], "pod-annotations");
    size_t n = core_enqueue_all(op->core);
    char ms[32], pods[32];
    snprintf(ms, sizeof ms, "%lld", (long long)(clock_ms() - op->reload_t0));
    snprintf(pods, sizeof pods, "%zu", n);
    log_kv(LOG_INFO, "scripts: reloaded", "trigger", op->reload_why, "origin",
           sandbox_origin(sb), "validate_ms", ms, "requeued", pods, NULL);
}

static void drop_candidate(struct operator *op)
{
    timers_cancel(op->timers, op->validate_timer);
    op->validate_timer = 0;
    kube_cancel(op->kube, op->probe);
    op->probe = NULL;
    sandbox_free(op->candidate);
    op->candidate = NULL;
}

/* The API server parses selectors itself (selector.c follows its grammar,
 * not every detail of its lexer and validation): a 400 to a LIST with the
 * candidate's selector means the pod watch would fail for ever with it. Any
 * other answer (an outage, 403) is no verdict on the selector. */
static void on_probe(void *arg, const struct kube_response *r)
{
    struct operator *op = arg;
    op->probe = NULL;
    if (r->status == 400) {
        char err[1024];
        snprintf(err, sizeof err, "the API server refuses the selector \"%s\": %.*s",
                 sandbox_selector(op->candidate), (int)(r->len < 800 ? r->len : 800),
                 r->body ? r->body : "");
        drop_candidate(op);
        reload_failed(op, err);
        return;
    }
    if (r->status != 200) {
        char st[32];
        snprintf(st, sizeof st, "%ld", r->status);
        log_kv(LOG_WARN, "scripts: selector probe got no verdict; swapping in", "status", st,
               "error", r->error ? r->error : "", NULL);
    }
    reload_swap(op);
}

/* Validation passed: swapped in now if the selector is the running one,
 * else once the API server has accepted it (a LIST of one pod). */
static void probe_selector(struct operator *op)
{
    const char *sel = sandbox_selector(op->candidate);
    char query[2048] = "", path[4096];
    if (strcmp(sel, sandbox_selector(op->sandbox)) == 0) {
        reload_swap(op);
        return;
    }
    if (kube_query_add(query, sizeof query, "labelSelector", sel) < 0 ||
        kube_query_add(query, sizeof query, "limit", "1") < 0 ||
        kube_path(path, sizeof path, kube_resource_find("v1", "Pod"), op->cfg->watch_namespace,
                  NULL, query) < 0 ||
        (op->probe = kube_request(op->kube, "GET", path, NULL, NULL, 0, on_probe, op)) == NULL) {
        drop_candidate(op);
        reload_failed(op, "selector probe: cannot start the request");
    }
}

/* One slice of the validation; the next runs after the loop has served
 * (a timer due later than now is not run in the same timers_run). */
static void on_validate(void *arg)
{
    struct operator *op = arg;
    char err[4096];
    op->validate_timer = 0;
    int rc = core_validate_step(op->core, op->candidate, VALIDATE_SLICE_MS, err, sizeof err);
    if (rc == 0) {
        op->validate_timer = timers_add(op->timers, clock_ms() + 1, on_validate, op);
        return;
    }
    if (rc == 1) {
        probe_selector(op);
        return;
    }
    sandbox_free(op->candidate);
    op->candidate = NULL;
    reload_failed(op, err);
}

/* Builds the new scripts and starts validating them on every cached pod,
 * a slice per loop turn; they are swapped in only when every pod passed.
 * A reload during a validation replaces it. Keeps the running scripts on
 * any failure. */
static void reload(struct operator *op, const char *why)
{
    char err[4096];
    if (op->candidate != NULL)
        drop_candidate(op);
    op->reload_why = why;
    op->reload_t0 = clock_ms();
    struct sandbox *sb = sandbox_new(op->cfg->scripts_dir, op->cfg, NULL, err, sizeof err);
    if (sb == NULL || core_validate_begin(op->core, err, sizeof err) < 0) {
        sandbox_free(sb);
        reload_failed(op, err);
        return;
    }
    op->candidate = sb;
    op->validate_timer = timers_add(op->timers, clock_ms(), on_validate, op);
}

static void on_reload_timer(void *arg)
{
    struct operator *op = arg;
    op->reload_timer = 0;
    reload(op, "scripts-dir changed");
}

static void on_resync(void *arg)
{
    struct operator *op = arg;
    core_enqueue_all(op->core);
    timers_add(op->timers, clock_ms() + (int64_t)op->cfg->resync_seconds * 1000, on_resync, op);
}

static void on_stats(void *arg)
{
    struct operator *op = arg;
    size_t managed, pods, children;
    core_stats(op->core, &managed, &pods, &children);
    metrics_set(op->managed, NULL, (double)managed);
    metrics_set(op->cached_pods, NULL, (double)pods);
    metrics_set(op->cached_children, NULL, (double)children);
    size_t accepted, not_accepted, unresolved, pending;
    core_route_states(op->core, clock_ms(), &accepted, &not_accepted, &unresolved, &pending);
    metrics_set(op->routes, "accepted", (double)accepted);
    metrics_set(op->routes, "not_accepted", (double)not_accepted);
    metrics_set(op->routes, "unresolved", (double)unresolved);
    metrics_set(op->routes, "pending", (double)pending);
    timers_add(op->timers, clock_ms() + STATS_EVERY_MS, on_stats, op);
}

static void handle_signals(struct operator *op)
{
    struct signalfd_siginfo si;
    while (read(op->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            reload(op, "SIGHUP");
        } else if (!op->stopping) {
            log_kv(LOG_INFO, "shutting down: finishing writes in flight", "signal",
                   si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
            op->stopping = true;
            op->stop_deadline = clock_ms() + (int64_t)op->cfg->shutdown_grace_seconds * 1000;
            update_pause(op);
            server_set_ready(op->server, false, "shutting down");
        } else {
            log_kv(LOG_WARN, "second signal: exiting now", NULL);
            op->stop_deadline = 0;
            op->exit_now = true;
        }
    }
}

static void handle_inotify(struct operator *op)
{
    bool changed = dirwatch_changed(op->scripts_watch);
    /* A ConfigMap update is several renames and a symlink swap: wait for
     * the burst to settle before reloading once. */
    if (changed && op->reload_timer == 0)
        op->reload_timer = timers_add(op->timers, clock_ms() + RELOAD_DEBOUNCE_MS,
                                      on_reload_timer, op);
}

static int setup_fds(struct operator *op)
{
    sigset_t set;
    /* A signal ignored at exec (a background job of a non-interactive shell
     * ignores SIGINT) would never reach the signalfd: take them back. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0 ||
        (op->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
        log_error("signals: %s", strerror(errno));
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (op->cfg->scripts_dir && *op->cfg->scripts_dir) {
        char err[512];
        op->scripts_watch = dirwatch_new(op->cfg->scripts_dir, err, sizeof err);
        if (op->scripts_watch == NULL) {
            log_error("scripts: cannot watch %s: %s", op->cfg->scripts_dir, err);
            return -1;
        }
    }
    return 0;
}

static int load_auth(const struct config *cfg, struct kube_auth *auth)
{
    char err[1024];
    int rc;
    if (cfg->kubeconfig && *cfg->kubeconfig) {
        rc = kubeconfig_load(cfg->kubeconfig, NULL, auth, err, sizeof err);
    } else {
        const char *root = getenv(IN_CLUSTER_ROOT_ENV);
        rc = kubeconfig_in_cluster(root ? root : "", auth, err, sizeof err);
    }
    if (rc != 0)
        fprintf(stderr, "envoy-router: %s\n", err);
    return rc;
}

static bool all_synced(const struct operator *op)
{
    for (size_t i = 0; i < op->n_watches; i++)
        if (!watch_synced(op->watches[i]))
            return false;
    return true;
}

static int add_watch(struct operator *op, const char *res, const char *api_version,
                     const char *kind, const char *selector)
{
    const struct kube_resource *r = kube_resource_find(api_version, kind);
    struct watch *w = r ? watch_new(&op->io, op->timers, op->core, res, r,
                                    op->cfg->watch_namespace, selector) : NULL;
    if (w == NULL)
        return -1;
    op->watches[op->n_watches++] = w;
    watch_start(w);
    return 0;
}

/* /readyz turns 503 while a watch cannot list (its cache goes stale, e.g.
 * RBAC taken away, or a selector the API server refuses), and back once
 * every watch lists again. */
static void check_watches(struct operator *op)
{
    const char *why = NULL;
    for (size_t i = 0; i < op->n_watches && why == NULL; i++)
        why = watch_failing(op->watches[i]);
    if ((why == NULL) == (op->unready_watch == NULL))
        return;
    op->unready_watch = why;
    if (why != NULL) {
        char reason[256];
        snprintf(reason, sizeof reason, "watch failing: %s", why);
        server_set_ready(op->server, false, reason);
        log_kv(LOG_ERROR, "not ready: a watch cannot list", "reason", why, NULL);
    } else {
        server_set_ready(op->server, true, NULL);
        log_kv(LOG_INFO, "ready again: every watch lists", NULL);
    }
}

static void loop(struct operator *op)
{
    while (true) {
        int64_t now = clock_ms();
        server_heartbeat(op->server);
        if (!op->ready && all_synced(op)) {
            op->ready = true;
            server_set_ready(op->server, true, NULL);
            log_kv(LOG_INFO, op->leading ? "caches synced: reconciling"
                                         : "caches synced: standing by until elected", NULL);
            update_pause(op);
        }
        if (op->ready && !op->stopping)
            check_watches(op);
        reconciler_pump(op->rec, now);
        /* A burst of writes is over (nothing running, nothing ready): give
         * its garbage back now, not at the collector's next cycle. */
        if (reconciler_active(op->rec) == 0 && queue_ready(op->queue) == 0 &&
            reconciler_writes(op->rec) != op->trimmed_writes && now - op->trimmed_ms >= 1000) {
            core_trim(op->core);
            op->trimmed_writes = reconciler_writes(op->rec);
            op->trimmed_ms = now;
        }
        if (op->exit_now)
            break;
        if (op->stopping && (reconciler_active(op->rec) == 0 || now >= op->stop_deadline)) {
            /* Writes are done: hand the Lease over so a standby need not
             * wait for it to expire. */
            if (!op->release_started) {
                op->release_started = true;
                if (leader_release(op->leader, on_released, op) == 0)
                    op->release_deadline = now + RELEASE_WAIT_MS;
                else
                    op->released = true;
            }
            if (op->released || now >= op->release_deadline)
                break;
        }

        int64_t next = timers_next(op->timers);
        int64_t qd = queue_next_deadline(op->queue);
        if (qd < next)
            next = qd;
        int64_t timeout = next == INT64_MAX ? 1000 : next - now;
        /* Ready keys need the loop at once only if they can be taken: a
         * standby (paused) would otherwise spin on them forever. */
        if (queue_ready(op->queue) > 0 && reconciler_can_take(op->rec))
            timeout = 0;
        if (timeout < 0)
            timeout = 0;
        if (timeout > 1000)
            timeout = 1000;     /* keep the heartbeat fresh */
        struct pollfd fds[2] = {{.fd = op->sigfd, .events = POLLIN},
                                {.fd = op->scripts_watch ? dirwatch_fd(op->scripts_watch) : -1,
                                 .events = POLLIN}};
        kube_wait(op->kube, fds, op->scripts_watch ? 2 : 1, (int)timeout);
        kube_perform(op->kube);
        if (fds[0].revents & POLLIN)
            handle_signals(op);
        if (op->scripts_watch && (fds[1].revents & POLLIN))
            handle_inotify(op);
        timers_run(op->timers, clock_ms());
    }
}

static int run(struct config *cfg)
{
    struct operator op = {.cfg = cfg, .sigfd = -1};
    struct kube_auth auth = {0};
    char err[4096];
    int rc = 1;

    /* Memory: a fixed mmap threshold (glibc raises it after each large
     * free, which puts later list pages and response bodies on the heap,
     * where they fragment it) and two arenas (the HTTP server's and the
     * resolver's threads would otherwise get one each). */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_ARENA_MAX, 2);

    op.reloads = metrics_counter("envoy_router_script_reloads_total",
                                 "Script reloads by result.", "result");
    metrics_add(op.reloads, "success", 0);
    metrics_add(op.reloads, "error", 0);
    op.managed = metrics_gauge("envoy_router_managed_pods",
                               "Pods that have children now (derived from the caches).", NULL);
    op.cached_pods = metrics_gauge("envoy_router_cached_pods", "Selected pods in the cache.", NULL);
    op.cached_children = metrics_gauge("envoy_router_cached_children",
                                       "Children (Services, EndpointSlices, HTTPRoutes) in the cache.",
                                       NULL);
    metrics_set(op.managed, NULL, 0);
    op.routes = metrics_gauge("envoy_router_routes",
                              "HTTPRoutes by what their Gateway controller reports: accepted, "
                              "not_accepted, unresolved (accepted, backends not resolved), "
                              "pending (no answer yet); derived from the caches.", "state");
    metrics_set(op.routes, "accepted", 0);
    metrics_set(op.routes, "not_accepted", 0);
    metrics_set(op.routes, "unresolved", 0);
    metrics_set(op.routes, "pending", 0);

    if (load_auth(cfg, &auth) != 0)
        goto out;
    op.sandbox = sandbox_new(cfg->scripts_dir, cfg, NULL, err, sizeof err);
    if (op.sandbox == NULL) {
        fprintf(stderr, "envoy-router: cannot load the scripts: %s\n", err);
        goto out;
    }
    struct kube_options ko = {
        .max_in_flight = (unsigned)cfg->max_concurrent_writes,
        .qps = cfg->kube_api_qps,
        .burst = (unsigned)cfg->kube_api_burst,
        .max_attempts = 5,
        .user_agent = "envoy-router/" ENVOY_ROUTER_VERSION,
    };
    if ((op.kube = kube_new(&auth, &ko, err, sizeof err)) == NULL) {
        fprintf(stderr, "envoy-router: %s\n", err);
        goto out;
    }
    kube_set_recovered(op.kube, on_recovered, &op);
    op.io = kube_transport(op.kube);
    op.timers = timers_new();
    op.queue = queue_new("pod", 250, 60000);
    op.core = core_new(op.sandbox, on_enqueue, &op, err, sizeof err);
    if (!op.timers || !op.queue || !op.core) {
        fprintf(stderr, "envoy-router: start-up failed: %s\n", op.core ? "out of memory" : err);
        goto out;
    }
    core_set_drain(op.core, (int64_t)cfg->route_drain_seconds * 1000);
    op.rec = reconciler_new(op.queue, op.core, &op.io,
                            reconciler_jobs_for((unsigned)cfg->max_concurrent_writes));
    if (op.rec == NULL || setup_fds(&op) != 0)
        goto out;
    if (cfg->identity && *cfg->identity)
        snprintf(op.identity, sizeof op.identity, "%s", cfg->identity);
    else
        leader_default_identity(op.identity, sizeof op.identity);
    struct events_options eo = {.component = "envoy-router", .instance = op.identity};
    if ((op.events = events_new(op.kube, op.timers, &eo)) == NULL) {
        fprintf(stderr, "envoy-router: out of memory\n");
        goto out;
    }
    reconciler_set_reporter(op.rec, on_report, &op);
    if (cfg->leader_elect) {
        /* The Lease lives in the given namespace, else our own (in-cluster
         * service account, or the kubeconfig context's), else "default". */
        const char *ns = *cfg->leader_election_namespace ? cfg->leader_election_namespace
                         : auth.namespace && *auth.namespace ? auth.namespace : "default";
        struct leader_options lo = {.namespace = ns, .name = cfg->leader_election_id,
                                    .identity = op.identity};
        if ((op.leader = leader_new(op.kube, op.core, op.timers, &lo, on_leader, &op)) == NULL) {
            fprintf(stderr, "envoy-router: cannot set up leader election: Lease %s/%s, "
                    "identity %s\n", ns, cfg->leader_election_id, op.identity);
            goto out;
        }
    } else {
        metrics_set(metrics_gauge("leader_election_master_status",
                                  "1 while this process holds the leader Lease, else 0.", "name"),
                    cfg->leader_election_id, 1);
        op.leading = true;
        events_set_enabled(op.events, true);
    }
    op.server = server_start(cfg->metrics_addr, cfg->health_addr, 30);
    if (op.server == NULL)
        goto out;
    server_set_ready(op.server, false, "caches not synced");
    if (add_watch(&op, "pods", "v1", "Pod", sandbox_selector(op.sandbox)) != 0 ||
        add_watch(&op, "services", "v1", "Service", MANAGED_SELECTOR) != 0 ||
        add_watch(&op, "endpointslices", "discovery.k8s.io/v1", "EndpointSlice",
                  MANAGED_SELECTOR) != 0 ||
        add_watch(&op, "httproutes", "gateway.networking.k8s.io/v1", "HTTPRoute",
                  MANAGED_SELECTOR) != 0) {
        fprintf(stderr, "envoy-router: out of memory starting the watches\n");
        goto out;
    }
    if (cfg->resync_seconds > 0)
        timers_add(op.timers, clock_ms() + (int64_t)cfg->resync_seconds * 1000, on_resync, &op);
    timers_add(op.timers, clock_ms() + STATS_EVERY_MS, on_stats, &op);
    log_kv(LOG_INFO, "envoy-router started", "version", ENVOY_ROUTER_VERSION,
           "server", auth.server, "namespace", *cfg->watch_namespace ? cfg->watch_namespace : "(all)",
           "selector", sandbox_selector(op.sandbox), "scripts", sandbox_origin(op.sandbox),
           "identity", op.identity, "leader_elect", cfg->leader_elect ? "true" : "false", NULL);
    if (op.leader)
        leader_start(op.leader);
    loop(&op);
    {
        char writes[32];
        snprintf(writes, sizeof writes, "%llu", (unsigned long long)reconciler_writes(op.rec));
        log_kv(LOG_INFO, "envoy-router stopped", "writes", writes, NULL);
    }
    rc = 0;
out:
    for (size_t i = 0; i < op.n_watches; i++)
        watch_free(op.watches[i]);
    leader_free(op.leader);
    events_free(op.events);
    kube_free(op.kube);             /* cancels calls before their owners go */
    reconciler_free(op.rec);
    server_stop(op.server);
    core_free(op.core);
    sandbox_free(op.candidate);
    sandbox_free(op.sandbox);
    queue_free(op.queue);
    timers_free(op.timers);
    kube_auth_free(&auth);
    if (op.sigfd >= 0)
        close(op.sigfd);
    dirwatch_free(op.scripts_watch);
    return rc;
}

static int render(struct config *cfg)
{
    char err[4096];
    int rc = 1;
    size_t len = 0;
    char *text = NULL, *json = NULL, *out = NULL;
    struct sandbox *sb = NULL;
    struct core *core = NULL;
    if (cfg->pod_file == NULL || *cfg->pod_file == '\0') {
        fprintf(stderr, "envoy-router render: --pod FILE is required\n");
        return 2;
    }
    if ((text = file_read(cfg->pod_file, POD_FILE_MAX, &len)) == NULL) {
        fprintf(stderr, "envoy-router render: cannot read %s: %s\n", cfg->pod_file, strerror(errno));
        return 1;
    }
    if ((json = yamljson_convert(text, len, &len, err, sizeof err)) == NULL) {
        fprintf(stderr, "envoy-router render: %s: %s\n", cfg->pod_file, err);
        goto out;
    }
    if ((sb = sandbox_new(cfg->scripts_dir, cfg, NULL, err, sizeof err)) == NULL) {
        fprintf(stderr, "envoy-router render: cannot load the scripts: %s\n", err);
        goto out;
    }
    if ((core = core_new(sb, NULL, NULL, err, sizeof err)) == NULL ||
        (out = core_render(core, json, len, err, sizeof err)) == NULL) {
        fprintf(stderr, "envoy-router render: %s: %s\n", cfg->pod_file, err);
        goto out;
    }
    printf("%s\n", out);
    rc = 0;
out:
    free(out);
    core_free(core);
    sandbox_free(sb);
    free(json);
    free(text);
    return rc;
}

/* What `check` prints on success: each module and where it came from. */
static void print_modules(const struct sandbox *sb, const char *dir, int n)
{
    int from_dir = 0;
    char name[256], kind[16], path[4096];
    for (const char *line = sandbox_modules(sb); *line; line = strchr(line, '\n') + 1) {
        if (sscanf(line, "%255[^\t]\t%15[^\t]\t%4095[^\n]", name, kind, path) != 3)
            break;
        bool mine = strcmp(kind, "dir") == 0;
        from_dir += mine;
        printf("module %s: %s (%s)\n", name, mine ? "scripts dir" : "built-in", path);
    }
    if (dir && *dir && from_dir == 0)
        printf("note: no module came from %s; all are the built-in ones\n", dir);
    printf("ok: scripts from %s, selector %s, %d fixture pods rendered\n",
           sandbox_origin(sb), sandbox_selector(sb), n);
}

static int check(struct config *cfg)
{
    char err[4096];
    struct stat st;
    const char *dir = cfg->scripts_dir;
    int bad = 0;
    if (dir && *dir)
        bad = stat(dir, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
    if (bad) {
        fprintf(stderr, "envoy-router check: --scripts-dir %s: %s\n", dir, strerror(bad));
        return 1;
    }
    struct sandbox *sb = sandbox_new(dir, cfg, NULL, err, sizeof err);
    if (sb == NULL) {
        fprintf(stderr, "envoy-router check: cannot load the scripts: %s\n", err);
        return 1;
    }
    struct core *core = core_new(sb, NULL, NULL, err, sizeof err);
    int n = core ? core_check(core, err, sizeof err) : -1;
    if (n < 0)
        fprintf(stderr, "envoy-router check: %s\n", err);
    else
        print_modules(sb, dir, n);
    core_free(core);
    sandbox_free(sb);
    return n < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    struct config cfg = {0};
    if (config_parse(&cfg, argc, argv, NULL, stderr) != 0)
        return 2;
    log_setup(cfg.log_level, cfg.log_json);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int rc;
    switch (cfg.command) {
    case CMD_HELP:
        config_usage(stdout);
        rc = 0;
        break;
    case CMD_VERSION:
        printf("envoy-router %s\n", ENVOY_ROUTER_VERSION);
        rc = 0;
        break;
    case CMD_RENDER:
        rc = render(&cfg);
        break;
    case CMD_CHECK:
        rc = check(&cfg);
        break;
    default:
        rc = run(&cfg);
        break;
    }
    config_free(&cfg);
    return rc;
}
