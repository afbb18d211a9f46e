/* watch: see watch.h. */
#include "watch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lines.h"
#include "log.h"
#include "metrics.h"

#define PAGE_SIZE "500"
#define MAX_LINE (16u << 20)     /* one event; big objects are well below */
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
/* An API server that answers nothing (connection refused, reset, timed
 * out) is retried at least this often: a refused connection costs it
 * nothing, and a restarted server should see its watches back at once. */
#define UNREACHABLE_MAX_MS 2000

struct watch {
    struct kube_transport io;    /* the client, or a test's script */
    struct timers *timers;
    struct core *core;
    const struct kube_resource *r;
    char *res, *ns, *selector;
    bool synced;
    bool relist;                 /* the next start is a relist */
    bool relist_now;             /* ... at once (410), not after a backoff */
    char *rv;                    /* last resourceVersion seen */
    char *cont;                  /* continue token of a paged list */
    struct kube_call *call;
    struct lines *lines;
    uint64_t timer;
    int64_t backoff_ms;
    int64_t watch_started_ms;
    bool unreachable;            /* the last failure got no HTTP answer */
    bool outage;                 /* ... and nothing has answered since */
    unsigned list_failures;      /* lists refused or malformed in a row */
    char failure[160];           /* the last one, for /readyz */
};

static struct metric *failing_gauge(void)
{
    static struct metric *m;
    if (m == NULL)
        m = metrics_gauge("envoy_router_watch_failing",
                          "1 while a resource's lists keep failing (4 or more in a row: "
                          "its cache is going stale), else 0.", "resource");
    return m;
}

/* A list failed (status, or 0 for a malformed body) or succeeded (-1). */
static void note_list(struct watch *w, long status, const char *what)
{
    if (status < 0) {
        if (w->list_failures >= WATCH_FAILING_AFTER)
            log_kv(LOG_INFO, "watch: listing again", "resource", w->res, NULL);
        w->list_failures = 0;
        metrics_set(failing_gauge(), w->res, 0);
        return;
    }
    w->list_failures++;
    char why[64];
    if (status > 0)
        snprintf(why, sizeof why, "HTTP %ld", status);
    else
        snprintf(why, sizeof why, "%s", what);
    snprintf(w->failure, sizeof w->failure, "%s: list failed %u times in a row (%s)", w->res,
             w->list_failures, why);
    if (w->list_failures >= WATCH_FAILING_AFTER)
        metrics_set(failing_gauge(), w->res, 1);
}

static struct metric *restarts(void)
{
    static struct metric *m;
    if (m == NULL)
        m = metrics_counter("envoy_router_watch_restarts_total",
                            "Restarts of list/watch streams by resource and reason.",
                            "resource,reason");
    return m;
}

static void count_restart(struct watch *w, const char *reason)
{
    char values[128];
    snprintf(values, sizeof values, "%s,%s", w->res, reason);
    metrics_add(restarts(), values, 1);
}

/* How each stream came back: a relist (a complete list after the first,
 * which replaces the cache: costly, and what a compacted history forces) or a
 * resume (a watch from the last resourceVersion seen, losing nothing). */
static struct metric *relists(void)
{
    static struct metric *m;
    if (m == NULL)
        m = metrics_counter("envoy_router_watch_relists_total",
                            "Complete lists after the first, by resource.", "resource");
    return m;
}

static struct metric *resumes(void)
{
    static struct metric *m;
    if (m == NULL)
        m = metrics_counter("envoy_router_watch_resumes_total",
                            "Watches started again from the last resourceVersion, by resource.",
                            "resource");
    return m;
}

static void start_list(struct watch *w, bool fresh);
static void start_watch(struct watch *w);

static void resume(struct watch *w)
{
    metrics_add(resumes(), w->res, 1);
    start_watch(w);
}

static int64_t jitter(int64_t ms)
{
    /* 80%..120%: replicas and resources do not reconnect in lockstep. */
    return ms * (80 + rand() % 41) / 100;
}

static void on_timer(void *arg)
{
    struct watch *w = arg;
    w->timer = 0;
    if (w->rv == NULL || w->relist)
        start_list(w, true);
    else
        resume(w);
}

/* A failed call's HTTP status (0: no answer). The first answer after an
 * outage restarts the backoff: what grew while nothing answered (every
 * 2 s, up to 30 s) would otherwise keep a restarted server's first error,
 * a 503 while its CRDs' paths come up, waiting 30 s. */
static void note_failure(struct watch *w, long status)
{
    if (status != 0 && w->outage)
        w->backoff_ms = BACKOFF_MIN_MS;
    w->outage = w->unreachable = status == 0;
}

/* Waits a backoff, then resumes (relist when no resourceVersion). */
static void retry_later(struct watch *w, const char *reason)
{
    count_restart(w, reason);
    int64_t delay = jitter(w->unreachable && w->backoff_ms > UNREACHABLE_MAX_MS
                           ? UNREACHABLE_MAX_MS : w->backoff_ms);
    w->unreachable = false;         /* said for this failure only */
    w->backoff_ms = w->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w->backoff_ms * 2;
    w->timer = timers_add(w->timers, transport_now(&w->io) + delay, on_timer, w);
    log_kv(LOG_WARN, "watch: retrying later", "resource", w->res, "reason", reason, NULL);
}

static int set_str(char **dst, const char *src)
{
    char *copy = NULL;
    if (src != NULL && (copy = strdup(src)) == NULL)
        return -ENOMEM;
    free(*dst);
    *dst = copy;
    return 0;
}

static void on_list(void *arg, const struct kube_response *resp)
{
    struct watch *w = arg;
    char err[512], *rv = NULL, *cont = NULL;
    w->call = NULL;
    if (resp->status == 410) {
        /* The continue token expired: the list starts over. */
        log_kv(LOG_INFO, "watch: list continue expired, listing again", "resource", w->res, NULL);
        count_restart(w, "expired");
        start_list(w, true);
        return;
    }
    if (resp->status != 200) {
        char status[32];
        snprintf(status, sizeof status, "%ld", resp->status);
        log_kv(LOG_WARN, "watch: list failed", "resource", w->res, "status", status,
               "error", resp->error ? resp->error : resp->body, NULL);
        note_list(w, resp->status, "no answer");
        w->relist = true;
        note_failure(w, resp->status);
        retry_later(w, "list_error");
        return;
    }
    if (core_list_page(w->core, w->res, resp->body, resp->len, &rv, &cont, err, sizeof err) != 0) {
        log_kv(LOG_ERROR, "watch: malformed list", "resource", w->res, "error", err, NULL);
        note_list(w, 0, "malformed body");
        w->relist = true;
        retry_later(w, "malformed");
        return;
    }
    free(w->cont);
    w->cont = (cont && *cont) ? cont : NULL;
    if (w->cont == NULL)
        free(cont);
    if (w->cont != NULL) {
        free(rv);
        start_list(w, false);
        return;
    }
    free(w->rv);
    w->rv = rv;
    note_list(w, -1, NULL);
    core_list_end(w->core, w->res);
    if (!w->synced)
        log_kv(LOG_INFO, "watch: synced", "resource", w->res, "resourceVersion", w->rv, NULL);
    else
        metrics_add(relists(), w->res, 1);
    w->synced = true;
    w->relist = false;
    w->backoff_ms = BACKOFF_MIN_MS;
    start_watch(w);
}

/* Lists one page; `fresh` starts a new list generation. */
static void start_list(struct watch *w, bool fresh)
{
    char query[2048] = "", path[4096];
    if (fresh) {
        free(w->cont);
        w->cont = NULL;
        core_list_begin(w->core, w->res);
    }
    if (w->selector && *w->selector)
        kube_query_add(query, sizeof query, "labelSelector", w->selector);
    kube_query_add(query, sizeof query, "limit", PAGE_SIZE);
    if (w->cont)
        kube_query_add(query, sizeof query, "continue", w->cont);
    if (kube_path(path, sizeof path, w->r, w->ns, NULL, query) < 0) {
        log_kv(LOG_ERROR, "watch: list path too long", "resource", w->res, NULL);
        return;
    }
    w->call = w->io.request(w->io.arg, "GET", path, NULL, NULL, 0, on_list, w);
    if (w->call == NULL)
        retry_later(w, "oom");
}

static int on_line(void *arg, const char *line, size_t len)
{
    struct watch *w = arg;
    char err[512], *rv = NULL;
    long code = 0;
    if (core_watch_event(w->core, w->res, line, len, &rv, &code, err, sizeof err) != 0) {
        log_kv(LOG_ERROR, "watch: malformed event, relisting", "resource", w->res,
               "error", err, NULL);
        w->relist = true;
        count_restart(w, "malformed");
        return 1;
    }
    if (code != 0) {
        char c[32];
        snprintf(c, sizeof c, "%ld", code);
        log_kv(code == 410 ? LOG_INFO : LOG_WARN, "watch: error event", "resource", w->res,
               "code", c, "message", err, NULL);
        w->relist = true;
        w->relist_now = code == 410;
        count_restart(w, code == 410 ? "expired" : "error_event");
        free(rv);
        return 1;
    }
    if (rv != NULL) {
        free(w->rv);
        w->rv = rv;
    }
    w->backoff_ms = BACKOFF_MIN_MS;
    return 0;
}

static int on_data(void *arg, const char *data, size_t len)
{
    struct watch *w = arg;
    int rc = lines_feed(w->lines, data, len, on_line, w);
    if (rc < 0) {
        log_kv(LOG_ERROR, "watch: event too large or out of memory, relisting",
               "resource", w->res, NULL);
        w->relist = true;
        count_restart(w, "oversize");
    }
    return rc != 0;
}

static void on_watch_end(void *arg, const struct kube_response *resp)
{
    struct watch *w = arg;
    w->call = NULL;
    if (w->relist) {
        /* 410 is routine (history compacted): relist at once. A malformed
         * or failed stream waits a backoff first, so a bad object cannot
         * make us hammer the server. */
        if (w->relist_now) {
            w->relist_now = false;
            start_list(w, true);
        } else {
            retry_later(w, "relist");
        }
        return;
    }
    if (resp->status == 410) {
        count_restart(w, "expired");
        w->relist = true;
        start_list(w, true);
        return;
    }
    if (resp->status == 200 && resp->error == NULL &&
        transport_now(&w->io) - w->watch_started_ms > 1000) {
        /* The server ended the watch (timeoutSeconds): resume. */
        count_restart(w, "timeout");
        resume(w);
        return;
    }
    char status[32];
    snprintf(status, sizeof status, "%ld", resp->status);
    log_kv(LOG_WARN, "watch: stream ended", "resource", w->res, "status", status,
           "error", resp->error ? resp->error : resp->body, NULL);
    note_failure(w, resp->status);
    retry_later(w, resp->status == 0 ? "disconnected" : "watch_error");
}

static void start_watch(struct watch *w)
{
    char query[2048] = "", path[4096], timeout[16];
    snprintf(timeout, sizeof timeout, "%d", 300 + rand() % 300);
    kube_query_add(query, sizeof query, "watch", "1");
    if (w->selector && *w->selector)
        kube_query_add(query, sizeof query, "labelSelector", w->selector);
    kube_query_add(query, sizeof query, "resourceVersion", w->rv ? w->rv : "");
    kube_query_add(query, sizeof query, "allowWatchBookmarks", "true");
    kube_query_add(query, sizeof query, "timeoutSeconds", timeout);
    if (kube_path(path, sizeof path, w->r, w->ns, NULL, query) < 0) {
        log_kv(LOG_ERROR, "watch: watch path too long", "resource", w->res, NULL);
        return;
    }
    lines_reset(w->lines);
    w->watch_started_ms = transport_now(&w->io);
    w->call = w->io.watch(w->io.arg, path, on_data, on_watch_end, w);
    if (w->call == NULL)
        retry_later(w, "oom");
}

struct watch *watch_new(const struct kube_transport *io, struct timers *t, struct core *core,
                        const char *res, const struct kube_resource *r,
                        const char *ns, const char *selector)
{
    struct watch *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->io = *io;
    w->timers = t;
    w->core = core;
    w->r = r;
    w->backoff_ms = BACKOFF_MIN_MS;
    if (set_str(&w->res, res) || set_str(&w->ns, ns ? ns : "") ||
        set_str(&w->selector, selector ? selector : "") ||
        (w->lines = lines_new(MAX_LINE)) == NULL) {
        watch_free(w);
        return NULL;
    }
    /* A labelled counter is exported only once it has a series: seed the
     * reasons alerts look at, so the metric exists at 0 from the start. */
    static const char *const seeded[] = {"disconnected", "expired", "timeout"};
    for (size_t i = 0; i < sizeof seeded / sizeof *seeded; i++) {
        char values[128];
        snprintf(values, sizeof values, "%s,%s", w->res, seeded[i]);
        metrics_add(restarts(), values, 0);
    }
    metrics_add(relists(), w->res, 0);
    metrics_add(resumes(), w->res, 0);
    return w;
}

static void stop(struct watch *w)
{
    if (w->call) {
        w->io.cancel(w->io.arg, w->call);
        w->call = NULL;
    }
    if (w->timer) {
        timers_cancel(w->timers, w->timer);
        w->timer = 0;
    }
}

void watch_free(struct watch *w)
{
    if (w == NULL)
        return;
    stop(w);
    lines_free(w->lines);
    free(w->res);
    free(w->ns);
    free(w->selector);
    free(w->rv);
    free(w->cont);
    free(w);
}

void watch_start(struct watch *w)
{
    stop(w);
    w->synced = false;
    start_list(w, true);
}

bool watch_synced(const struct watch *w)
{
    return w->synced;
}

int watch_set_selector(struct watch *w, const char *selector)
{
    if (strcmp(w->selector, selector) == 0)
        return 0;
    if (set_str(&w->selector, selector) != 0)
        return -ENOMEM;
    log_kv(LOG_INFO, "watch: selector changed, relisting", "resource", w->res,
           "selector", selector, NULL);
    count_restart(w, "selector");
    stop(w);
    start_list(w, true);
    return 0;
}

const char *watch_failing(const struct watch *w)
{
    return w->list_failures >= WATCH_FAILING_AFTER ? w->failure : NULL;
}

void watch_relist(struct watch *w, const char *reason)
{
    log_kv(LOG_INFO, "watch: relisting", "resource", w->res, "reason", reason, NULL);
    count_restart(w, reason);
    stop(w);
    start_list(w, true);
}

const char *watch_resource(const struct watch *w)
{
    return w->res;
}
