/* timers: a binary min-heap on time (ties in the order added) for "what is
 * next", and a small chained hash on the id so cancel is O(log n) too. Ids
 * only grow, so an old id never names a new timer. */
#include "timers.h"

#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "heap.h"

#define TIMER(n) heap_entry(n, struct timer, hn)

struct timer {
    struct timer *hnext;
    uint64_t id;
    struct heap_node hn;    /* keyed by the time it is due */
    timer_fn fn;
    void *arg;
};

struct timers {
    struct heap heap;
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
    for (size_t i = 0; i < t->heap.n; i++)
        free(TIMER(t->heap.v[i]));
    heap_release(&t->heap);
    free(t->buckets);
    free(t);
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
    unlink_id(t, tm);
    heap_remove(&t->heap, &tm->hn);
}

uint64_t timers_add(struct timers *t, int64_t at_ms, timer_fn fn, void *arg)
{
    struct timer *tm = calloc(1, sizeof *tm);
    size_t s;

    if (tm == NULL)
        return 0;
    if (heap_push(&t->heap, &tm->hn, at_ms) != 0) {
        free(tm);
        return 0;
    }
    tm->id = t->next_id++;
    tm->fn = fn;
    tm->arg = arg;
    if (t->heap.n > t->nbuckets)
        grow_buckets(t);
    s = slot(t, tm->id);
    tm->hnext = t->buckets[s];
    t->buckets[s] = tm;
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
    const struct heap_node *top = heap_top(&t->heap);

    return top ? top->key : INT64_MAX;
}

int timers_run(struct timers *t, int64_t now_ms)
{
    struct timer *tm;
    int ran = 0;

    /* The timer leaves the set before its callback runs, so the callback
     * may add or cancel freely (cancelling itself is then a no-op). */
    while ((tm = TIMER(heap_top(&t->heap))) != NULL && tm->hn.key <= now_ms) {
        timer_fn fn = tm->fn;
        void *arg = tm->arg;

        detach(t, tm);
        free(tm);
        fn(arg);
        ran++;
    }
    return ran;
}
