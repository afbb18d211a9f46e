/* hash: a chained hash table of intrusive nodes, and the string hash its
 * users key it with.
 *
 * The table stores each node's 64-bit hash, never a key: a lookup walks the
 * nodes of one hash and the caller compares its own keys. Chains are a power
 * of two in number and double when the table holds as many nodes as chains;
 * if doubling fails for lack of memory the chains only get longer. The
 * table owns its array of chains; nodes belong to the caller. Not
 * thread-safe. */
#ifndef ENVOY_ROUTER_HASH_H
#define ENVOY_ROUTER_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_SEED 14695981039346656037ULL   /* FNV-1a offset basis */

struct hash_node {
    struct hash_node *next;    /* in its chain */
    uint64_t hash;
};

struct hash {
    struct hash_node **chains; /* read-only for users: walk them to visit all */
    size_t nchains, n;
};

/* The struct of `type` whose member `member` is the node `n`; NULL when n
 * is NULL. */
#define hash_entry(n, type, member) \
    ((n) ? (type *)(void *)((char *)(n) - offsetof(type, member)) : (type *)NULL)

/* FNV-1a of the bytes of s, continuing from h: hash_str(HASH_SEED, s) hashes
 * one string, and feeding the result back in hashes several in a row. */
uint64_t hash_str(uint64_t h, const char *s);

/* FNV-1a of the n bytes at p (NUL bytes included), continuing from h. */
uint64_t hash_bytes(uint64_t h, const void *p, size_t n);

/* Makes h an empty table of `nchains` chains (a power of two). Returns 0 or
 * -ENOMEM. */
int hash_init(struct hash *h, size_t nchains);

/* Empties h, handing each node to `each` unless it is NULL (each may free
 * the node), and frees the chains array. h may be zeroed or released
 * already. */
void hash_release(struct hash *h, void (*each)(struct hash_node *n));

/* Adds node n (in no table) under `hash`, first of its chain. */
void hash_add(struct hash *h, struct hash_node *n, uint64_t hash);

/* Takes node n out of h, which must hold it. */
void hash_remove(struct hash *h, struct hash_node *n);

/* The first node added under `hash` that is still in h (the newest first),
 * or NULL; hash_next gives the one after. */
struct hash_node *hash_first(const struct hash *h, uint64_t hash);

/* The node after n in h with the same hash as n, or NULL. */
struct hash_node *hash_next(const struct hash_node *n);

#endif
