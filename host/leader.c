/* leader: see leader.h.
 *
 * The Lease travels as JSON, read and built by the core state
 * (core_lease_parse, core_lease_body). The text of the Lease last read is
 * kept and each PUT is built on it, so the fields of the object this module
 * does not manage (labels, annotations, ownerReferences) go back unchanged,
 * as with client-go's Get-modify-Update. */
#include "leader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"

/* A call that has not answered in this long is abandoned and the attempt
 * made afresh: a renewal stuck behind retries must not outlast the renew
 * deadline unnoticed. */
#define STALE_CALL_FACTOR 2

enum op { OP_NONE, OP_GET, OP_WRITE, OP_RELEASE };

struct leader {
    struct kube *kube;
    struct core *core;
    struct timers *timers;
    char *ns, *name, *identity;
    char item_path[1024], coll_path[1024];
    int lease_seconds;
    int64_t renew_deadline_ms, retry_ms;

    char *lease;                    /* the Lease last read (JSON text), or NULL */

    struct leader_observation obs;

    bool started, stopped, leading;
    int64_t last_renew_ms;          /* when the last successful write was sent */
    struct kube_call *call;
    enum op op;
    int64_t call_started_ms;
    uint64_t timer;
    bool failing;                   /* log the first failure of a run only */
    bool release_retried;

    leader_change_fn on_change;
    void *arg;
    leader_released_fn released;
    void *released_arg;
    struct metric *m_status;
};

/* --- pure decisions ---------------------------------------------------------- */

bool leader_record_changed(const struct core_lease *a, const struct core_lease *b)
{
    return strcmp(a->holder, b->holder) != 0 || a->lease_seconds != b->lease_seconds ||
           strcmp(a->acquire_time, b->acquire_time) != 0 ||
           strcmp(a->renew_time, b->renew_time) != 0 || a->transitions != b->transitions;
}

void leader_observe(struct leader_observation *o, const struct core_lease *rec,
                    int64_t now_ms)
{
    if (!o->have || leader_record_changed(&o->record, rec)) {
        o->record = *rec;
        o->observed_ms = now_ms;
        o->have = true;
    }
}

bool leader_lease_expired(int64_t now_ms, int64_t observed_ms, int lease_seconds)
{
    return now_ms >= observed_ms + (int64_t)lease_seconds * 1000;
}

bool leader_should_acquire(int64_t now_ms, int64_t observed_ms, int lease_seconds,
                           const char *holder, const char *me)
{
    if (holder == NULL || *holder == '\0' || strcmp(holder, me) == 0)
        return true;
    return leader_lease_expired(now_ms, observed_ms, lease_seconds);
}

bool leader_should_step_down(int64_t now_ms, int64_t last_renew_ms, int64_t renew_deadline_ms)
{
    return now_ms - last_renew_ms >= renew_deadline_ms;
}

void leader_record_next(const struct core_lease *observed, bool have_observed,
                        const char *me, int lease_seconds, const char *now_text,
                        struct core_lease *out)
{
    bool renewal = have_observed && strcmp(observed->holder, me) == 0;

    memset(out, 0, sizeof *out);
    snprintf(out->holder, sizeof out->holder, "%s", me);
    out->lease_seconds = lease_seconds;
    snprintf(out->renew_time, sizeof out->renew_time, "%s", now_text);
    if (renewal && observed->acquire_time[0] != '\0') {
        snprintf(out->acquire_time, sizeof out->acquire_time, "%s", observed->acquire_time);
        out->transitions = observed->transitions;
    } else {
        snprintf(out->acquire_time, sizeof out->acquire_time, "%s", now_text);
        out->transitions = have_observed ? observed->transitions + (renewal ? 0 : 1) : 0;
    }
}

void leader_micro_time(double wall, char *buf, size_t len)
{
    time_t secs = (time_t)wall;
    long usec = (long)((wall - (double)secs) * 1e6);
    struct tm tm;

    if (usec < 0)
        usec = 0;
    if (usec > 999999)
        usec = 999999;
    gmtime_r(&secs, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
}

int leader_default_identity(char *buf, size_t len)
{
    char host[256] = "";
    unsigned char rnd[8];
    char hex[17];

    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
        snprintf(host, sizeof host, "envoy-router");
    host[sizeof host - 1] = '\0';
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        for (size_t i = 0; i < sizeof rnd; i++)
            rnd[i] = (unsigned char)rand();
    }
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    int n = snprintf(buf, len, "%s_%s", host, hex);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* --- the Lease as JSON --------------------------------------------------------- */

/* Reads a Lease body into *rec and keeps its text for the next PUT.
 * Returns 0, or -1 with the reason in err. */
static int parse(struct leader *l, const char *body, size_t len, struct core_lease *rec,
                 char *err, size_t errlen)
{
    if (core_lease_parse(l->core, body, len, rec, err, errlen) != 0)
        return -1;
    char *copy = strndup(body, len);    /* parsed JSON holds no NUL */
    if (copy == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    free(l->lease);
    l->lease = copy;
    return 0;
}

/* Sends `method` with the Lease carrying rec. Returns 0, or -1 (logged). */
static int send_lease(struct leader *l, const char *method, const struct core_lease *rec,
                      kube_done_fn done, enum op op)
{
    char err[512];
    size_t len = 0;
    char *body = core_lease_body(l->core, l->lease, l->lease ? strlen(l->lease) : 0, l->ns,
                                 l->name, rec, &len, err, sizeof err);
    if (body == NULL) {
        log_kv(LOG_ERROR, "leader: cannot encode the Lease", "lease", l->name, "error", err, NULL);
        return -1;
    }
    bool create = strcmp(method, "POST") == 0;
    l->call = kube_request_urgent(l->kube, method, create ? l->coll_path : l->item_path, NULL, body,
                           len, done, l);      /* the body is copied */
    free(body);
    if (l->call == NULL)
        return -1;
    l->op = op;
    l->call_started_ms = clock_ms();
    return 0;
}

/* --- the election ------------------------------------------------------------ */

static void on_tick(void *arg);
static void start_get(struct leader *l);

static void set_leading(struct leader *l, bool leading, const char *why)
{
    if (l->leading == leading)
        return;
    l->leading = leading;
    metrics_set(l->m_status, l->name, leading ? 1 : 0);
    log_kv(leading || l->stopped ? LOG_INFO : LOG_WARN,
           leading ? "leader: became the leader" : "leader: stepped down",
           "lease", l->name, "namespace", l->ns, "identity", l->identity, "reason", why, NULL);
    if (l->on_change)
        l->on_change(l->arg, leading);
}

/* `why`: the reason an answer could not be read ("" when it was not read). */
static void note_failure(struct leader *l, const char *what, const struct kube_response *r,
                         const char *why)
{
    char status[32];
    snprintf(status, sizeof status, "%ld", r->status);
    log_kv(l->failing ? LOG_DEBUG : LOG_WARN, "leader: Lease request failed", "request", what,
           "lease", l->name, "status", status, "error",
           *why ? why : r->error ? r->error : r->body, NULL);
    l->failing = true;
}

static void on_write(void *arg, const struct kube_response *r)
{
    struct leader *l = arg;
    struct core_lease rec;
    char err[256] = "";
    int64_t now = clock_ms();
    int64_t sent = l->call_started_ms;

    l->call = NULL;
    l->op = OP_NONE;
    if ((r->status == 200 || r->status == 201) &&
        parse(l, r->body, r->len, &rec, err, sizeof err) == 0) {
        leader_observe(&l->obs, &rec, now);
        l->last_renew_ms = sent;
        l->failing = false;
        set_leading(l, true, r->status == 201 ? "created the Lease" : "acquired the Lease");
        return;
    }
    if (r->status == 409) {
        /* Someone wrote the Lease since we read it: read it again now. */
        log_kv(LOG_DEBUG, "leader: Lease changed under us; reading it again", "lease", l->name,
               NULL);
        start_get(l);
        return;
    }
    note_failure(l, "write", r, err);
}

/* Writes ourselves into the Lease (create when it does not exist). */
static void acquire(struct leader *l, bool create)
{
    char now_text[40];
    struct core_lease rec;
    leader_micro_time(clock_wall(), now_text, sizeof now_text);
    leader_record_next(&l->obs.record, l->obs.have && !create, l->identity,
                       l->lease_seconds, now_text, &rec);
    if (create) {               /* a new Lease: built from nothing */
        free(l->lease);
        l->lease = NULL;
    }
    if (send_lease(l, create ? "POST" : "PUT", &rec, on_write, OP_WRITE) != 0)
        log_kv(LOG_ERROR, "leader: cannot start the Lease write", "lease", l->name, NULL);
}

static void on_get(void *arg, const struct kube_response *r)
{
    struct leader *l = arg;
    struct core_lease rec;
    char err[256] = "";
    int64_t now = clock_ms();

    l->call = NULL;
    l->op = OP_NONE;
    if (r->status == 404 && r->error == NULL) {
        acquire(l, true);
        return;
    }
    if (r->status != 200 || parse(l, r->body, r->len, &rec, err, sizeof err) != 0) {
        note_failure(l, "get", r, err);
        return;
    }
    leader_observe(&l->obs, &rec, now);
    int secs = l->obs.record.lease_seconds > 0 ? l->obs.record.lease_seconds : l->lease_seconds;
    if (!leader_should_acquire(now, l->obs.observed_ms, secs, l->obs.record.holder,
                               l->identity)) {
        /* Held by another and not expired (as far as our clock can tell). */
        l->failing = false;
        if (l->leading)
            set_leading(l, false, "the Lease is held by another");
        return;
    }
    acquire(l, false);
}

static void start_get(struct leader *l)
{
    l->call = kube_request_urgent(l->kube, "GET", l->item_path, NULL, NULL, 0, on_get, l);
    if (l->call == NULL) {
        log_kv(LOG_ERROR, "leader: cannot start the Lease read", "lease", l->name, NULL);
        return;
    }
    l->op = OP_GET;
    l->call_started_ms = clock_ms();
}

static void schedule(struct leader *l, int64_t now)
{
    int64_t at = now + l->retry_ms;
    if (l->leading) {
        /* Wake exactly at the renew deadline too, to step down on time. */
        int64_t deadline = l->last_renew_ms + l->renew_deadline_ms;
        if (deadline > now && deadline < at)
            at = deadline;
    } else {
        /* Candidates spread out a little (client-go jitters too). */
        at += (int64_t)((double)l->retry_ms * 0.1 * ((double)rand() / ((double)RAND_MAX + 1.0)));
    }
    l->timer = timers_add(l->timers, at, on_tick, l);
}

static void on_tick(void *arg)
{
    struct leader *l = arg;
    int64_t now = clock_ms();

    l->timer = 0;
    if (l->stopped)
        return;
    if (l->leading && leader_should_step_down(now, l->last_renew_ms, l->renew_deadline_ms))
        set_leading(l, false, "no successful renewal within the renew deadline");
    if (l->call != NULL && now - l->call_started_ms >= STALE_CALL_FACTOR * l->retry_ms) {
        log_kv(LOG_WARN, "leader: Lease request unanswered; trying again", "lease", l->name, NULL);
        kube_cancel(l->kube, l->call);
        l->call = NULL;
        l->op = OP_NONE;
    }
    if (l->call == NULL) {
        if (l->leading && l->lease != NULL)
            acquire(l, false);      /* renew straight from the object we hold */
        else
            start_get(l);
    }
    schedule(l, now);
}

struct leader *leader_new(struct kube *k, struct core *c, struct timers *t,
                          const struct leader_options *o, leader_change_fn on_change, void *arg)
{
    const struct kube_resource *r = kube_resource_find("coordination.k8s.io/v1", "Lease");
    struct leader *l;

    if (!c || !o || !o->namespace || !*o->namespace || !o->name || !*o->name || !o->identity ||
        !*o->identity || !r)
        return NULL;
    if ((l = calloc(1, sizeof *l)) == NULL)
        return NULL;
    l->kube = k;
    l->core = c;
    l->timers = t;
    l->on_change = on_change;
    l->arg = arg;
    l->lease_seconds = o->lease_seconds > 0 ? o->lease_seconds : LEADER_LEASE_SECONDS;
    l->renew_deadline_ms = o->renew_deadline_ms > 0 ? o->renew_deadline_ms
                                                    : LEADER_RENEW_DEADLINE_MS;
    l->retry_ms = o->retry_ms > 0 ? o->retry_ms : LEADER_RETRY_MS;
    l->ns = strdup(o->namespace);
    l->name = strdup(o->name);
    l->identity = strdup(o->identity);
    if (!l->ns || !l->name || !l->identity ||
        kube_path(l->item_path, sizeof l->item_path, r, l->ns, l->name, NULL) < 0 ||
        kube_path(l->coll_path, sizeof l->coll_path, r, l->ns, NULL, NULL) < 0)
        goto fail;
    l->m_status = metrics_gauge("leader_election_master_status",
                                "1 while this process holds the leader Lease, else 0.", "name");
    metrics_set(l->m_status, l->name, 0);
    return l;
fail:
    leader_free(l);
    return NULL;
}

void leader_free(struct leader *l)
{
    if (l == NULL)
        return;
    if (l->call)
        kube_cancel(l->kube, l->call);
    if (l->timer)
        timers_cancel(l->timers, l->timer);
    free(l->lease);
    free(l->ns);
    free(l->name);
    free(l->identity);
    free(l);
}

void leader_start(struct leader *l)
{
    if (l->started)
        return;
    l->started = true;
    log_kv(LOG_INFO, "leader: campaigning", "lease", l->name, "namespace", l->ns,
           "identity", l->identity, NULL);
    l->timer = timers_add(l->timers, clock_ms(), on_tick, l);
}

bool leader_is_leader(const struct leader *l)
{
    return l != NULL && l->leading;
}

static int send_release(struct leader *l);

static void release_done(struct leader *l)
{
    if (l->released)
        l->released(l->released_arg);
}

/* The release met a newer Lease (a renewal whose answer we did not wait
 * for went through): read it, and release again if it is still ours. */
static void on_release_get(void *arg, const struct kube_response *r)
{
    struct leader *l = arg;
    struct core_lease rec;
    char err[256];

    l->call = NULL;
    l->op = OP_NONE;
    if (r->status == 200 && parse(l, r->body, r->len, &rec, err, sizeof err) == 0 &&
        strcmp(rec.holder, l->identity) == 0) {
        leader_observe(&l->obs, &rec, clock_ms());
        if (send_release(l) == 0)
            return;
    }
    release_done(l);
}

static void on_release(void *arg, const struct kube_response *r)
{
    struct leader *l = arg;
    char status[32];

    l->call = NULL;
    l->op = OP_NONE;
    if (r->status == 409 && !l->release_retried) {
        l->release_retried = true;
        l->call = kube_request_urgent(l->kube, "GET", l->item_path, NULL, NULL, 0, on_release_get, l);
        if (l->call != NULL) {
            l->op = OP_RELEASE;
            return;
        }
    }
    snprintf(status, sizeof status, "%ld", r->status);
    log_kv(r->status == 200 ? LOG_INFO : LOG_WARN,
           r->status == 200 ? "leader: Lease released" : "leader: releasing the Lease failed",
           "lease", l->name, "status", status, "error", r->error ? r->error : NULL, NULL);
    release_done(l);
}

/* PUTs the released record: no holder, 1 s, transitions kept. */
static int send_release(struct leader *l)
{
    char now_text[40];
    struct core_lease rec;

    leader_micro_time(clock_wall(), now_text, sizeof now_text);
    memset(&rec, 0, sizeof rec);
    rec.lease_seconds = 1;
    snprintf(rec.acquire_time, sizeof rec.acquire_time, "%s", now_text);
    snprintf(rec.renew_time, sizeof rec.renew_time, "%s", now_text);
    rec.transitions = l->obs.record.transitions;
    return send_lease(l, "PUT", &rec, on_release, OP_RELEASE);
}

int leader_release(struct leader *l, leader_released_fn done, void *arg)
{
    if (l == NULL)
        return -1;
    l->stopped = true;
    if (l->timer) {
        timers_cancel(l->timers, l->timer);
        l->timer = 0;
    }
    if (l->call) {
        kube_cancel(l->kube, l->call);
        l->call = NULL;
        l->op = OP_NONE;
    }
    if (!l->leading || l->lease == NULL)
        return -1;
    /* Stop counting as leader first: nothing may be written after this. */
    set_leading(l, false, "shutting down");
    l->released = done;
    l->released_arg = arg;
    return send_release(l) == 0 ? 0 : -1;
}
