/* queue: one record per key, found through a chained hash table; ready keys
 * form a FIFO list, delayed keys a binary min-heap ordered by due time (ties
 * by insertion), so every operation is O(1) or O(log n).
 *
 * A record exists while its key is ready, delayed or in processing, or while
 * it has failures to remember for the backoff. */
#include "queue.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "heap.h"
#include "metrics.h"

enum state { IDLE, READY, DELAYED, PROCESSING };

#define ITEM(n) hash_entry(n, struct item, hn_key)

struct item {
    struct hash_node hn_key; /* in the table by key */
    struct item *fnext;  /* ready FIFO */
    struct heap_node hn; /* DELAYED: keyed by when it becomes ready */
    int64_t since;       /* READY: when it became ready; PROCESSING: popped */
    int64_t again;       /* PROCESSING: when to come back after done, or
                            INT64_MAX when it was not added meanwhile */
    unsigned failures;
    enum state state;
    char key[];
};

struct queue {
    char *name;
    int64_t base_ms;
    int64_t max_ms;

    struct hash items;       /* by key */

    struct item *head, *tail; /* ready FIFO */
    size_t nready;

    struct heap delayed;

    size_t nprocessing;

    struct metric *m_depth, *m_adds, *m_retries, *m_wait, *m_work;
};

struct queue *queue_new(const char *name, int64_t base_ms, int64_t max_ms)
{
    struct queue *q = calloc(1, sizeof *q);

    if (q == NULL)
        return NULL;
    q->name = strdup(name ? name : "");
    if (q->name == NULL || hash_init(&q->items, 64) != 0)
        goto fail;
    q->base_ms = base_ms > 0 ? base_ms : 0;
    q->max_ms = max_ms > q->base_ms ? max_ms : q->base_ms;

    q->m_depth = metrics_gauge("workqueue_depth", "Keys ready to be handed out, per queue.",
                               "name");
    q->m_adds = metrics_counter("workqueue_adds_total",
                                "Times a key became ready, per queue.", "name");
    q->m_retries = metrics_counter("workqueue_retries_total",
                                   "Retries scheduled after a failure, per queue.", "name");
    q->m_wait = metrics_histogram("workqueue_queue_duration_seconds",
                                  "Seconds a key waited from ready to handed out.", "name",
                                  NULL, 0);
    q->m_work = metrics_histogram("workqueue_work_duration_seconds",
                                  "Seconds a key spent in processing, from hand-out to done.",
                                  "name", NULL, 0);
    /* Series exist from the start so a scrape shows the queue at rest. */
    metrics_set(q->m_depth, q->name, 0);
    metrics_add(q->m_adds, q->name, 0);
    metrics_add(q->m_retries, q->name, 0);
    return q;

fail:
    queue_free(q);
    return NULL;
}

static void free_item(struct hash_node *n)
{
    free(ITEM(n));
}

void queue_free(struct queue *q)
{
    if (q == NULL)
        return;
    hash_release(&q->items, free_item);
    heap_release(&q->delayed);
    free(q->name);
    free(q);
}

/* --- hash table ----------------------------------------------------------- */

static struct item *find(const struct queue *q, const char *key)
{
    uint64_t h = hash_str(HASH_SEED, key);

    for (struct hash_node *n = hash_first(&q->items, h); n; n = hash_next(n))
        if (strcmp(ITEM(n)->key, key) == 0)
            return ITEM(n);
    return NULL;
}

static struct item *find_or_create(struct queue *q, const char *key)
{
    struct item *it = find(q, key);
    size_t len;

    if (it != NULL)
        return it;
    len = strlen(key);
    it = calloc(1, sizeof *it + len + 1);
    if (it == NULL)
        return NULL;
    memcpy(it->key, key, len + 1);
    it->state = IDLE;
    it->again = INT64_MAX;
    hash_add(&q->items, &it->hn_key, hash_str(HASH_SEED, key));
    return it;
}

/* Frees the record once nothing about the key is left to remember. */
static void release_if_idle(struct queue *q, struct item *it)
{
    if (it->state != IDLE || it->failures > 0)
        return;
    hash_remove(&q->items, &it->hn_key);
    free(it);
}

/* --- ready FIFO ------------------------------------------------------------ */

static void publish_depth(struct queue *q)
{
    metrics_set(q->m_depth, q->name, (double)q->nready);
}

static void make_ready(struct queue *q, struct item *it, int64_t since)
{
    it->state = READY;
    it->since = since;
    it->fnext = NULL;
    if (q->tail != NULL)
        q->tail->fnext = it;
    else
        q->head = it;
    q->tail = it;
    q->nready++;
    metrics_add(q->m_adds, q->name, 1);
    publish_depth(q);
}

/* Moves delayed keys that are due to the ready FIFO, earliest first. Every
 * call that knows the time does this first, so the FIFO stays ordered by the
 * time keys became ready. */
static void promote(struct queue *q, int64_t now)
{
    struct item *it;

    while ((it = heap_entry(heap_top(&q->delayed), struct item, hn)) != NULL &&
           it->hn.key <= now) {
        heap_remove(&q->delayed, &it->hn);
        make_ready(q, it, it->hn.key);
    }
}

/* Asks for `it` to be ready at `at` (<= now: at once), keeping the earlier
 * time when it is already waiting. */
static int schedule(struct queue *q, struct item *it, int64_t at, int64_t now)
{
    switch (it->state) {
    case PROCESSING:
        if (at < it->again)
            it->again = at;
        return 0;
    case READY:
        return 0;
    case DELAYED:
        if (at >= it->hn.key)
            return 0;
        if (at <= now) {
            heap_remove(&q->delayed, &it->hn);
            make_ready(q, it, now);
        } else {
            heap_update(&q->delayed, &it->hn, at);
        }
        return 0;
    case IDLE:
        if (at <= now) {
            make_ready(q, it, now);
            return 0;
        }
        it->state = DELAYED;
        if (heap_push(&q->delayed, &it->hn, at) != 0) {
            it->state = IDLE;
            release_if_idle(q, it);
            return -ENOMEM;
        }
        return 0;
    }
    return 0;
}

static int64_t add_clamped(int64_t now, int64_t delay)
{
    if (delay <= 0)
        return now;
    if (now > 0 && delay > INT64_MAX - now)
        return INT64_MAX - 1; /* INT64_MAX means "none" */
    return now + delay;
}

int queue_add(struct queue *q, const char *key, int64_t now_ms)
{
    return queue_add_after(q, key, 0, now_ms);
}

int queue_add_after(struct queue *q, const char *key, int64_t delay_ms, int64_t now_ms)
{
    struct item *it;

    promote(q, now_ms);
    it = find_or_create(q, key);
    if (it == NULL)
        return -ENOMEM;
    return schedule(q, it, add_clamped(now_ms, delay_ms), now_ms);
}

const char *queue_pop(struct queue *q, int64_t now_ms)
{
    struct item *it;

    promote(q, now_ms);
    it = q->head;
    if (it == NULL)
        return NULL;
    q->head = it->fnext;
    if (q->head == NULL)
        q->tail = NULL;
    it->fnext = NULL;
    q->nready--;
    metrics_observe(q->m_wait, q->name, (double)(now_ms - it->since) / 1000.0);
    publish_depth(q);
    it->state = PROCESSING;
    it->since = now_ms;
    it->again = INT64_MAX;
    q->nprocessing++;
    return it->key;
}

void queue_done(struct queue *q, const char *key, int64_t now_ms)
{
    struct item *it = find(q, key);
    int64_t again;

    if (it == NULL || it->state != PROCESSING)
        return;
    promote(q, now_ms);
    metrics_observe(q->m_work, q->name, (double)(now_ms - it->since) / 1000.0);
    q->nprocessing--;
    again = it->again;
    it->again = INT64_MAX;
    it->state = IDLE;
    /* If scheduling fails for lack of memory the key is dropped; the next
     * event or resync adds it again. */
    if (again != INT64_MAX && schedule(q, it, again, now_ms) == 0)
        return;
    release_if_idle(q, it);
}

static int64_t backoff(const struct queue *q, unsigned failures)
{
    int64_t d = q->base_ms;

    for (unsigned i = 0; i < failures && d < q->max_ms; i++)
        d = d > q->max_ms / 2 ? q->max_ms : d * 2;
    return d < q->max_ms ? d : q->max_ms;
}

int64_t queue_retry(struct queue *q, const char *key, int64_t now_ms)
{
    struct item *it;
    int64_t delay;

    promote(q, now_ms);
    it = find_or_create(q, key);
    if (it == NULL)
        return -ENOMEM;
    delay = backoff(q, it->failures);
    if (it->failures < UINT_MAX)
        it->failures++;
    metrics_add(q->m_retries, q->name, 1);
    if (schedule(q, it, add_clamped(now_ms, delay), now_ms) != 0)
        return -ENOMEM;
    return delay;
}

void queue_forget(struct queue *q, const char *key)
{
    struct item *it = find(q, key);

    if (it == NULL)
        return;
    it->failures = 0;
    release_if_idle(q, it);
}

void queue_forget_all(struct queue *q)
{
    for (size_t i = 0; i < q->items.nchains; i++) {
        struct hash_node *x = q->items.chains[i];
        while (x != NULL) {
            struct hash_node *next = x->next;
            struct item *it = ITEM(x);
            it->failures = 0;
            release_if_idle(q, it);
            x = next;
        }
    }
}

unsigned queue_failures(const struct queue *q, const char *key)
{
    const struct item *it = find(q, key);

    return it ? it->failures : 0;
}

int64_t queue_next_deadline(const struct queue *q)
{
    const struct heap_node *top = heap_top(&q->delayed);

    return top ? top->key : INT64_MAX;
}

size_t queue_ready(const struct queue *q)
{
    return q->nready;
}

size_t queue_len(const struct queue *q)
{
    return q->nready + q->delayed.n;
}

size_t queue_processing(const struct queue *q)
{
    return q->nprocessing;
}
