/* heap: see heap.h. */
#include "heap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

static bool before(const struct heap_node *a, const struct heap_node *b)
{
    return a->key < b->key || (a->key == b->key && a->seq < b->seq);
}

static void place(struct heap *h, size_t i, struct heap_node *n)
{
    h->v[i] = n;
    n->pos = i;
}

static void sift_up(struct heap *h, size_t i)
{
    struct heap_node *n = h->v[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(n, h->v[parent]))
            break;
        place(h, i, h->v[parent]);
        i = parent;
    }
    place(h, i, n);
}

static void sift_down(struct heap *h, size_t i)
{
    struct heap_node *n = h->v[i];

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && before(h->v[c + 1], h->v[c]))
            c++;
        if (!before(h->v[c], n))
            break;
        place(h, i, h->v[c]);
        i = c;
    }
    place(h, i, n);
}

void heap_release(struct heap *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}

int heap_push(struct heap *h, struct heap_node *n, int64_t key)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        struct heap_node **v = realloc(h->v, cap * sizeof *v);
        if (v == NULL)
            return -ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    n->key = key;
    n->seq = h->seq++;
    place(h, h->n++, n);
    sift_up(h, n->pos);
    return 0;
}

void heap_remove(struct heap *h, struct heap_node *n)
{
    size_t i = n->pos;
    struct heap_node *last = h->v[--h->n];

    if (last == n)
        return;
    place(h, i, last);
    sift_up(h, i);
    sift_down(h, last->pos);
}

void heap_update(struct heap *h, struct heap_node *n, int64_t key)
{
    n->key = key;
    sift_up(h, n->pos);
    sift_down(h, n->pos);
}

struct heap_node *heap_top(const struct heap *h)
{
    return h->n > 0 ? h->v[0] : NULL;
}
