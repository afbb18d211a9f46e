/* dup: copies of strings and byte runs that say when memory ran out. */
#ifndef ENVOY_ROUTER_DUP_H
#define ENVOY_ROUTER_DUP_H

#include <stdbool.h>
#include <stddef.h>

/* A new copy of s, or NULL when s is NULL. When memory runs out returns NULL
 * and sets *oom to true (it is never set back to false), so a run of copies
 * is checked once at its end. The caller frees the copy. */
char *dup_str(const char *s, bool *oom);

/* A new copy of the n bytes at p followed by a NUL (p may hold NULs), or
 * NULL when p is NULL or memory runs out. The caller frees the copy. */
char *dup_mem(const char *p, size_t n);

#endif
