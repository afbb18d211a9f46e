/* timers: a binary min-heap on time (ties in the order added) for "what is
 * next", and a small chained hash on the id so cancel is O(log n) too. Ids
 * only grow, so an old id never names a new timer. */
#include "timers.h"

#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "hash.h"
#include "heap.h"

#define TIMER(n) heap_entry(n, struct timer, hn)

struct timer {
    struct hash_node hn_id; /* in the table by id */
    uint64_t id;
    struct heap_node hn;    /* keyed by the time it is due */
    timer_fn fn;
    void *arg;
};

struct timers {
    struct heap heap;
    struct hash ids;
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
    if (hash_init(&t->ids, 16) != 0) {
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
    hash_release(&t->ids, NULL);
    free(t);
}

/* Takes tm out of the heap and the id table; the caller frees it. */
static void detach(struct timers *t, struct timer *tm)
{
    hash_remove(&t->ids, &tm->hn_id);
    heap_remove(&t->heap, &tm->hn);
}

uint64_t timers_add(struct timers *t, int64_t at_ms, timer_fn fn, void *arg)
{
    struct timer *tm = calloc(1, sizeof *tm);

    if (tm == NULL)
        return 0;
    if (heap_push(&t->heap, &tm->hn, at_ms) != 0) {
        free(tm);
        return 0;
    }
    tm->id = t->next_id++;
    tm->fn = fn;
    tm->arg = arg;
    hash_add(&t->ids, &tm->hn_id, tm->id);
    return tm->id;
}

void timers_cancel(struct timers *t, uint64_t id)
{
    if (id == 0)
        return;
    struct timer *tm = hash_entry(hash_first(&t->ids, id), struct timer, hn_id);

    if (tm != NULL) {
        detach(t, tm);
        free(tm);
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
