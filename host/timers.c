/* timers: a binary min-heap on (time, id) for "what is next", and a small
 * chained hash on the id so cancel is O(log n) too. Ids only grow, so an old
 * id never names a new timer. */
#include "timers.h"

#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct timer {
    struct timer *hnext;
    uint64_t id;
    int64_t at;
    size_t pos;      /* index in the heap */
    timer_fn fn;
    void *arg;
};

struct timers {
    struct timer **heap;
    size_t n, cap;
    struct timer **buckets; /* power-of-two count */
    size_t nbuckets;
    uint64_t next_id;
};

int64_t clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double clock_wall(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct timers *timers_new(void)
{
    struct timers *t = calloc(1, sizeof *t);

    if (t == NULL)
        return NULL;
    t->nbuckets = 16;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (t->buckets == NULL) {
        free(t);
        return NULL;
    }
    t->next_id = 1;
    return t;
}

void timers_free(struct timers *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->heap[i]);
    free(t->heap);
    free(t->buckets);
    free(t);
}

static bool earlier(const struct timer *a, const struct timer *b)
{
    return a->at < b->at || (a->at == b->at && a->id < b->id);
}

static void place(struct timers *t, size_t i, struct timer *tm)
{
    t->heap[i] = tm;
    tm->pos = i;
}

static void sift_up(struct timers *t, size_t i)
{
    struct timer *tm = t->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!earlier(tm, t->heap[parent]))
            break;
        place(t, i, t->heap[parent]);
        i = parent;
    }
    place(t, i, tm);
}

static void sift_down(struct timers *t, size_t i)
{
    struct timer *tm = t->heap[i];

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= t->n)
            break;
        if (c + 1 < t->n && earlier(t->heap[c + 1], t->heap[c]))
            c++;
        if (!earlier(t->heap[c], tm))
            break;
        place(t, i, t->heap[c]);
        i = c;
    }
    place(t, i, tm);
}

static size_t slot(const struct timers *t, uint64_t id)
{
    return (size_t)(id * 0x9E3779B97F4A7C15ULL >> 32) & (t->nbuckets - 1);
}

/* Doubles the id table; if that fails the old one keeps working. */
static void grow_buckets(struct timers *t)
{
    struct timer **old = t->buckets;
    size_t oldn = t->nbuckets;
    struct timer **b = calloc(oldn * 2, sizeof *b);

    if (b == NULL)
        return;
    t->buckets = b;
    t->nbuckets = oldn * 2;
    for (size_t i = 0; i < oldn; i++) {
        struct timer *tm = old[i];
        while (tm != NULL) {
            struct timer *next = tm->hnext;
            size_t s = slot(t, tm->id);
            tm->hnext = b[s];
            b[s] = tm;
            tm = next;
        }
    }
    free(old);
}

static void unlink_id(struct timers *t, struct timer *tm)
{
    for (struct timer **pp = &t->buckets[slot(t, tm->id)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == tm) {
            *pp = tm->hnext;
            return;
        }
    }
}

/* Takes tm out of the heap and the id table; the caller frees it. */
static void detach(struct timers *t, struct timer *tm)
{
    size_t i = tm->pos;
    struct timer *last = t->heap[--t->n];

    unlink_id(t, tm);
    if (last == tm)
        return;
    place(t, i, last);
    sift_up(t, i);
    sift_down(t, last->pos);
}

uint64_t timers_add(struct timers *t, int64_t at_ms, timer_fn fn, void *arg)
{
    struct timer *tm;
    size_t s;

    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct timer **h = realloc(t->heap, cap * sizeof *h);
        if (h == NULL)
            return 0;
        t->heap = h;
        t->cap = cap;
    }
    tm = calloc(1, sizeof *tm);
    if (tm == NULL)
        return 0;
    tm->id = t->next_id++;
    tm->at = at_ms;
    tm->fn = fn;
    tm->arg = arg;
    if (t->n >= t->nbuckets)
        grow_buckets(t);
    s = slot(t, tm->id);
    tm->hnext = t->buckets[s];
    t->buckets[s] = tm;
    place(t, t->n++, tm);
    sift_up(t, tm->pos);
    return tm->id;
}

void timers_cancel(struct timers *t, uint64_t id)
{
    if (id == 0)
        return;
    for (struct timer *tm = t->buckets[slot(t, id)]; tm; tm = tm->hnext) {
        if (tm->id == id) {
            detach(t, tm);
            free(tm);
            return;
        }
    }
}

int64_t timers_next(const struct timers *t)
{
    return t->n > 0 ? t->heap[0]->at : INT64_MAX;
}

int timers_run(struct timers *t, int64_t now_ms)
{
    int ran = 0;

    /* The timer leaves the set before its callback runs, so the callback
     * may add or cancel freely (cancelling itself is then a no-op). */
    while (t->n > 0 && t->heap[0]->at <= now_ms) {
        struct timer *tm = t->heap[0];
        timer_fn fn = tm->fn;
        void *arg = tm->arg;

        detach(t, tm);
        free(tm);
        fn(arg);
        ran++;
    }
    return ran;
}
