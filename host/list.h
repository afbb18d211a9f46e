/* list: an intrusive doubly-linked list with a head and a tail.
 *
 * A struct that lives on a list embeds a `struct list_node`; the list never
 * allocates and never frees, so putting an element on it cannot fail and
 * taking it off is O(1) given the element. A node is on at most one list at
 * a time; its links are NULL when it is on none. Not thread-safe. */
#ifndef ENVOY_ROUTER_LIST_H
#define ENVOY_ROUTER_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list_node {
    struct list_node *prev, *next;
};

struct list {
    struct list_node *head, *tail;   /* both NULL when empty */
};

/* The struct of `type` whose member `member` is the node `n`; NULL when n
 * is NULL (so `list_entry(l->head, ...)` is NULL for an empty list). */
#define list_entry(n, type, member) \
    ((n) ? (type *)(void *)((char *)(n) - offsetof(type, member)) : (type *)NULL)

/* Appends n (on no list) at the tail of l. */
static inline void list_push(struct list *l, struct list_node *n)
{
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
}

/* Puts n (on no list) at the head of l. */
static inline void list_push_front(struct list *l, struct list_node *n)
{
    n->prev = NULL;
    n->next = l->head;
    if (l->head)
        l->head->prev = n;
    else
        l->tail = n;
    l->head = n;
}

/* Takes n off l, which must be the list it is on; its links become NULL. */
static inline void list_unlink(struct list *l, struct list_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
}

/* Whether l holds no node. */
static inline bool list_empty(const struct list *l)
{
    return l->head == NULL;
}

#endif
