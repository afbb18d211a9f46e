/* events: see events.h.
 *
 * Remembered Events live in a hash table (by pod uid, reason and message)
 * and on a list ordered by when they were last seen, so the stale ones are
 * found at its head and the table stays bounded. */
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dup.h"
#include "hash.h"
#include "jsonbuf.h"
#include "list.h"
#include "log.h"
#include "metrics.h"

#define MESSAGE_MAX 1024            /* bytes of message sent (client-go's limit) */
#define NAME_MAX_LEN 253            /* a DNS subdomain */

struct entry {
    struct events *e;
    struct hash_node hn;            /* in the table by uid, reason, message */
    struct list_node lru;           /* by last_seen_ms, oldest first */
    char *uid, *reason, *message, *ns, *pod;
    char name[NAME_MAX_LEN + 1];    /* of the Event */
    unsigned seen;                  /* occurrences so far */
    unsigned written;               /* count the API server has */
    unsigned sending;               /* count of the write in flight */
    double first_wall, last_wall;
    int64_t last_seen_ms, last_write_ms;
    bool created;
    struct kube_call *call;
    uint64_t timer;                 /* deferred count update */
};

struct events {
    struct timers *timers;
    struct kube_transport tr;        /* the client, or a test's fake */
    double (*wall)(void);
    char *component, *instance;
    int64_t window_ms, update_ms;
    size_t max_entries;
    bool enabled;
    uint64_t seq;
    struct events_bucket bucket;
    struct hash table;
    struct list lru;                /* entries, oldest at the head */
    struct metric *m_dropped, *m_total;
};

/* --- the token bucket ---------------------------------------------------------- */

void events_bucket_init(struct events_bucket *b, double rate, double burst, int64_t now_ms)
{
    b->rate = rate;
    b->burst = burst;
    b->tokens = burst;
    b->last_ms = now_ms;
}

bool events_bucket_take(struct events_bucket *b, int64_t now_ms)
{
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * b->rate / 1000.0;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ms = now_ms;
    }
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

/* --- JSON text ----------------------------------------------------------------- */

/* A JSON string of at most `max` bytes of s, cut on a UTF-8 boundary. */
static void put_str(struct jsonbuf *b, const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    jsonbuf_string(b, s, n);
}

static void put_kv(struct jsonbuf *b, const char *key, const char *value, bool comma)
{
    if (comma)
        jsonbuf_put(b, ",", 1);
    put_str(b, key, SIZE_MAX);
    jsonbuf_put(b, ":", 1);
    put_str(b, value, MESSAGE_MAX);
}

/* "2006-01-02T15:04:05Z" */
static void timestamp(double wall, char *out, size_t len)
{
    time_t secs = (time_t)wall;
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static char *create_body(const struct events *e, const struct entry *x, unsigned count,
                         size_t *len)
{
    struct jsonbuf b = {0};
    char first[32], last[32], num[32];
    timestamp(x->first_wall, first, sizeof first);
    timestamp(x->last_wall, last, sizeof last);
    snprintf(num, sizeof num, "%u", count);
    jsonbuf_puts(&b, "{\"apiVersion\":\"v1\",\"kind\":\"Event\",\"metadata\":{");
    put_kv(&b, "name", x->name, false);
    put_kv(&b, "namespace", x->ns, true);
    jsonbuf_puts(&b, "},\"involvedObject\":{\"apiVersion\":\"v1\",\"kind\":\"Pod\"");
    put_kv(&b, "namespace", x->ns, true);
    put_kv(&b, "name", x->pod, true);
    put_kv(&b, "uid", x->uid, true);
    jsonbuf_puts(&b, "}");
    put_kv(&b, "reason", x->reason, true);
    put_kv(&b, "message", x->message, true);
    put_kv(&b, "type", "Warning", true);
    jsonbuf_puts(&b, ",\"source\":{");
    put_kv(&b, "component", e->component, false);
    jsonbuf_puts(&b, "}");
    put_kv(&b, "reportingComponent", e->component, true);
    put_kv(&b, "reportingInstance", e->instance, true);
    put_kv(&b, "firstTimestamp", first, true);
    put_kv(&b, "lastTimestamp", last, true);
    jsonbuf_puts(&b, ",\"count\":");
    jsonbuf_puts(&b, num);
    jsonbuf_puts(&b, "}");
    return jsonbuf_finish(&b, len);
}

static char *patch_body(const struct entry *x, unsigned count, size_t *len)
{
    struct jsonbuf b = {0};
    char last[32], num[32];
    timestamp(x->last_wall, last, sizeof last);
    snprintf(num, sizeof num, "%u", count);
    jsonbuf_puts(&b, "{\"count\":");
    jsonbuf_puts(&b, num);
    put_kv(&b, "lastTimestamp", last, true);
    jsonbuf_puts(&b, "}");
    return jsonbuf_finish(&b, len);
}

/* --- the table ------------------------------------------------------------------ */

static uint64_t hash3(const char *a, const char *b, const char *c)
{
    const char *parts[3] = {a, b, c};
    uint64_t h = HASH_SEED;
    for (int i = 0; i < 3; i++)
        h = hash_str(hash_str(h, parts[i]), "\xff");   /* a separator */
    return h;
}

static struct entry *find(struct events *e, uint64_t h, const char *uid, const char *reason,
                          const char *message)
{
    for (struct hash_node *n = hash_first(&e->table, h); n; n = hash_next(n)) {
        struct entry *x = hash_entry(n, struct entry, hn);
        if (strcmp(x->uid, uid) == 0 && strcmp(x->reason, reason) == 0 &&
            strcmp(x->message, message) == 0)
            return x;
    }
    return NULL;
}

/* The entry last seen longest ago, or NULL. */
static struct entry *oldest(const struct events *e)
{
    return list_entry(e->lru.head, struct entry, lru);
}

static void entry_free(struct entry *x)
{
    free(x->uid);
    free(x->reason);
    free(x->message);
    free(x->ns);
    free(x->pod);
    free(x);
}

/* Forgets an entry: cancels what it has going. */
static void drop(struct events *e, struct entry *x)
{
    hash_remove(&e->table, &x->hn);
    list_unlink(&e->lru, &x->lru);
    if (x->call)
        e->tr.cancel(e->tr.arg, x->call);
    if (x->timer)
        timers_cancel(e->timers, x->timer);
    entry_free(x);
}

/* Forgets what was last seen before the window, and the oldest beyond the
 * bound. */
static void expire(struct events *e, int64_t now)
{
    struct entry *x;

    while ((x = oldest(e)) && (now - x->last_seen_ms > e->window_ms || e->table.n >= e->max_entries))
        drop(e, x);
}

/* --- writes ---------------------------------------------------------------------- */

static void send_update(struct events *e, struct entry *x);

static void on_update_timer(void *arg)
{
    struct entry *x = arg;
    x->timer = 0;
    send_update(x->e, x);
}

/* Updates the count once the interval since the last write has passed. */
static void defer_update(struct events *e, struct entry *x)
{
    if (x->timer || x->call || !x->created || x->seen <= x->written)
        return;
    int64_t at = x->last_write_ms + e->update_ms;
    if (at <= transport_now(&e->tr)) {
        send_update(e, x);
        return;
    }
    x->timer = timers_add(e->timers, at, on_update_timer, x);
}

static void log_failure(const char *what, const struct entry *x, const struct kube_response *r)
{
    char status[32];
    snprintf(status, sizeof status, "%ld", r->status);
    log_kv(LOG_WARN, what, "event", x->name, "namespace", x->ns, "reason", x->reason,
           "status", status, "error", r->error ? r->error : r->body, NULL);
}

/* A write of x ended: its create (POST) while x is not created yet, else an
 * update of its count (PATCH). */
static void on_written(void *arg, const struct kube_response *r)
{
    struct entry *x = arg;
    struct events *e = x->e;
    bool creating = !x->created;
    x->call = NULL;
    if (r->status == 200 || (creating && r->status == 201)) {
        x->created = true;
        x->written = x->sending;
        metrics_add(e->m_total, creating ? "created" : "updated", 1);
        defer_update(e, x);
        return;
    }
    metrics_add(e->m_total, "failed", 1);
    log_failure(creating ? "events: creating an Event failed"
                         : "events: updating an Event failed", x, r);
    if (creating || r->status == 404) {
        drop(e, x);                 /* the next report starts afresh, creating anew */
        return;
    }
    defer_update(e, x);             /* try again after another interval */
}

/* Takes a token, or counts a drop. */
static bool admit(struct events *e, const char *what, const struct entry *x)
{
    if (events_bucket_take(&e->bucket, transport_now(&e->tr)))
        return true;
    metrics_add(e->m_dropped, NULL, 1);
    log_kv(LOG_DEBUG, "events: rate limit reached; dropped", "what", what, "pod", x->pod,
           "reason", x->reason, NULL);
    return false;
}

static void send_update(struct events *e, struct entry *x)
{
    char path[2048];
    size_t len = 0;
    const struct kube_resource *r = kube_resource_find("v1", "Event");

    if (!e->enabled || x->call || !x->created || x->seen <= x->written)
        return;
    int64_t now = transport_now(&e->tr);
    if (!admit(e, "count update", x)) {
        x->last_write_ms = now;     /* the counts stay: carry them next time */
        defer_update(e, x);
        return;
    }
    char *body = patch_body(x, x->seen, &len);
    if (body == NULL || kube_path(path, sizeof path, r, x->ns, x->name, NULL) < 0) {
        free(body);
        return;
    }
    x->sending = x->seen;
    x->last_write_ms = now;
    x->call = e->tr.request(e->tr.arg, "PATCH", path, "application/merge-patch+json", body, len,
                            on_written, x);
    free(body);
}

void events_report(struct events *e, const char *ns, const char *pod, const char *uid,
                   const char *reason, const char *message)
{
    char path[2048];
    size_t len = 0;
    bool oom = false;
    const struct kube_resource *r = kube_resource_find("v1", "Event");

    if (e == NULL || !e->enabled || !ns || !*ns || !pod || !*pod)
        return;
    if (!uid)
        uid = "";
    if (!reason)
        reason = "";
    if (!message)
        message = "";
    int64_t now = transport_now(&e->tr);
    double wall = e->wall();
    uint64_t h = hash3(uid, reason, message);
    struct entry *x = find(e, h, uid, reason, message);
    if (x && now - x->last_seen_ms <= e->window_ms) {
        /* A repetition: count it; the Event is updated at most once an interval. */
        x->seen++;
        x->last_seen_ms = now;
        x->last_wall = wall;
        list_unlink(&e->lru, &x->lru);
        list_push(&e->lru, &x->lru);
        defer_update(e, x);
        return;
    }
    if (x)
        drop(e, x);
    expire(e, now);
    if ((x = calloc(1, sizeof *x)) == NULL)
        return;
    x->e = e;
    x->uid = dup_str(uid, &oom);
    x->reason = dup_str(reason, &oom);
    x->message = dup_str(message, &oom);
    x->ns = dup_str(ns, &oom);
    x->pod = dup_str(pod, &oom);
    if (oom) {
        entry_free(x);
        return;
    }
    if (!admit(e, "new event", x)) {
        entry_free(x);
        return;
    }
    /* client-go's naming: the object's name and a unique hex suffix. */
    unsigned long long stamp = (unsigned long long)(wall * 1e9) + e->seq++;
    snprintf(x->name, sizeof x->name, "%.*s.%016llx", NAME_MAX_LEN - 17, pod, stamp);
    x->seen = 1;
    x->first_wall = x->last_wall = wall;
    x->last_seen_ms = x->last_write_ms = now;
    char *body = create_body(e, x, x->seen, &len);
    if (body == NULL || kube_path(path, sizeof path, r, ns, NULL, NULL) < 0) {
        free(body);
        entry_free(x);
        return;
    }
    hash_add(&e->table, &x->hn, h);
    list_push(&e->lru, &x->lru);
    x->sending = x->seen;
    x->call = e->tr.request(e->tr.arg, "POST", path, NULL, body, len, on_written, x);
    free(body);
    if (x->call == NULL)
        drop(e, x);
}

/* --- lifecycle -------------------------------------------------------------------- */

struct events *events_new(struct kube *k, struct timers *t, const struct events_options *o)
{
    struct events *e;

    if (!o || !o->component || !*o->component || !o->instance || !*o->instance || !t)
        return NULL;
    if ((e = calloc(1, sizeof *e)) == NULL)
        return NULL;
    e->timers = t;
    e->tr = o->transport ? *o->transport : kube_transport(k);
    e->wall = o->wall ? o->wall : clock_wall;
    e->component = strdup(o->component);
    e->instance = strdup(o->instance);
    if (!e->component || !e->instance || hash_init(&e->table, 1024) != 0) {
        events_free(e);
        return NULL;
    }
    e->window_ms = o->window_ms > 0 ? o->window_ms : EVENTS_WINDOW_MS;
    e->update_ms = o->update_ms > 0 ? o->update_ms : EVENTS_UPDATE_MS;
    e->max_entries = o->max_entries > 0 ? o->max_entries : EVENTS_MAX_ENTRIES;
    events_bucket_init(&e->bucket, o->rate > 0 ? o->rate : EVENTS_RATE,
                       o->burst > 0 ? o->burst : EVENTS_BURST, transport_now(&e->tr));
    e->m_dropped = metrics_counter("envoy_router_events_dropped_total",
                                   "Kubernetes Events not written because of the rate limit.",
                                   NULL);
    e->m_total = metrics_counter("envoy_router_events_total",
                                 "Kubernetes Event writes by result (created, updated, failed).",
                                 "result");
    metrics_add(e->m_dropped, NULL, 0);
    metrics_add(e->m_total, "created", 0);
    metrics_add(e->m_total, "updated", 0);
    metrics_add(e->m_total, "failed", 0);
    return e;
}

void events_free(struct events *e)
{
    if (e == NULL)
        return;
    while (!list_empty(&e->lru))
        drop(e, oldest(e));
    hash_release(&e->table, NULL);
    free(e->component);
    free(e->instance);
    free(e);
}

size_t events_set_enabled(struct events *e, bool enabled)
{
    size_t cancelled = 0;
    if (e == NULL)
        return 0;
    e->enabled = enabled;
    while (!enabled && !list_empty(&e->lru)) {
        struct entry *x = oldest(e);
        cancelled += x->call != NULL;
        drop(e, x);
    }
    return cancelled;
}

size_t events_tracked(const struct events *e)
{
    return e ? e->table.n : 0;
}
