/* heap: a binary min-heap of intrusive nodes keyed by a 64-bit time.
 *
 * Nodes come out by key, and among equal keys in the order they were
 * pushed. Each node knows its index in the heap, so removing or re-keying a
 * node the caller holds is O(log n) with no search. The heap owns only its
 * array of pointers; nodes belong to the caller. Not thread-safe. */
#ifndef ENVOY_ROUTER_HEAP_H
#define ENVOY_ROUTER_HEAP_H

#include <stddef.h>
#include <stdint.h>

struct heap_node {
    int64_t key;        /* read it freely; change it through heap_update */
    uint64_t seq;       /* push order: breaks ties between equal keys */
    size_t pos;         /* index in the heap while on it */
};

struct heap {
    struct heap_node **v;
    size_t n, cap;
    uint64_t seq;
};
/* A zeroed struct heap is an empty heap. */

/* The struct of `type` whose member `member` is the node `n`; NULL when n
 * is NULL (so heap_entry(heap_top(h), ...) is NULL on an empty heap). */
#define heap_entry(n, type, member) \
    ((n) ? (type *)(void *)((char *)(n) - offsetof(type, member)) : (type *)NULL)

/* Frees the heap's array and empties it; the nodes are left to the caller. */
void heap_release(struct heap *h);

/* Puts node n (on no heap) in h with `key`. Returns 0, or -ENOMEM when the
 * array cannot grow (h is unchanged then). */
int heap_push(struct heap *h, struct heap_node *n, int64_t key);

/* Takes node n off h, which must be the heap it is on. */
void heap_remove(struct heap *h, struct heap_node *n);

/* Gives node n (on h) a new key, earlier or later; its place among equal
 * keys stays that of its push. */
void heap_update(struct heap *h, struct heap_node *n, int64_t key);

/* The node with the smallest key (the first pushed among equals), or NULL
 * when h is empty. It stays on the heap. */
struct heap_node *heap_top(const struct heap *h);

#endif
