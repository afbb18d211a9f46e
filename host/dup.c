/* dup: see dup.h. */
#include "dup.h"

#include <stdlib.h>
#include <string.h>

char *dup_str(const char *s, bool *oom)
{
    char *d;

    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        *oom = true;
    return d;
}

char *dup_mem(const char *p, size_t n)
{
    char *d;

    if (p == NULL || (d = malloc(n + 1)) == NULL)
        return NULL;
    memcpy(d, p, n);
    d[n] = '\0';
    return d;
}
