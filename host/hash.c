/* hash: see hash.h. */
#include "hash.h"

#include <errno.h>
#include <stdlib.h>

#define FNV_PRIME 1099511628211ULL

uint64_t hash_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * FNV_PRIME;
    return h;
}

uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

int hash_init(struct hash *h, size_t nchains)
{
    h->chains = calloc(nchains, sizeof *h->chains);
    h->nchains = h->chains ? nchains : 0;
    h->n = 0;
    return h->chains ? 0 : -ENOMEM;
}

void hash_release(struct hash *h, void (*each)(struct hash_node *n))
{
    for (size_t i = 0; each != NULL && i < h->nchains; i++) {
        struct hash_node *x = h->chains[i];
        while (x != NULL) {
            struct hash_node *next = x->next;
            each(x);
            x = next;
        }
    }
    free(h->chains);
    h->chains = NULL;
    h->nchains = h->n = 0;
}

/* Doubles the chains; on failure the table keeps its old ones. */
static void grow(struct hash *h)
{
    size_t n = h->nchains * 2;
    struct hash_node **c = calloc(n, sizeof *c);

    if (c == NULL)
        return;
    for (size_t i = 0; i < h->nchains; i++) {
        struct hash_node *x = h->chains[i];
        while (x != NULL) {
            struct hash_node *next = x->next;
            x->next = c[x->hash & (n - 1)];
            c[x->hash & (n - 1)] = x;
            x = next;
        }
    }
    free(h->chains);
    h->chains = c;
    h->nchains = n;
}

void hash_add(struct hash *h, struct hash_node *n, uint64_t hash)
{
    if (h->n >= h->nchains)
        grow(h);
    n->hash = hash;
    n->next = h->chains[hash & (h->nchains - 1)];
    h->chains[hash & (h->nchains - 1)] = n;
    h->n++;
}

void hash_remove(struct hash *h, struct hash_node *n)
{
    struct hash_node **pp = &h->chains[n->hash & (h->nchains - 1)];

    while (*pp != n)
        pp = &(*pp)->next;
    *pp = n->next;
    n->next = NULL;
    h->n--;
}

/* The first node from x on (x included) whose hash is `hash`. */
static struct hash_node *match(struct hash_node *x, uint64_t hash)
{
    while (x != NULL && x->hash != hash)
        x = x->next;
    return x;
}

struct hash_node *hash_first(const struct hash *h, uint64_t hash)
{
    return match(h->chains[hash & (h->nchains - 1)], hash);
}

struct hash_node *hash_next(const struct hash_node *n)
{
    return match(n->next, n->hash);
}
