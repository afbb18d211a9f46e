/* A fresh directory under /tmp holding (at most) one file, for tests of code
 * that reads files. */
#ifndef ENVOY_ROUTER_TEST_TMPDIR_H
#define ENVOY_ROUTER_TEST_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct tmpdir {
    char path[64];     /* the directory */
    char file[128];    /* path/<name>, not created */
};

/* Makes /tmp/<prefix>XXXXXX and names the file `name` in it; NULL when the
 * directory cannot be made. Free with tmpdir_free. */
static inline struct tmpdir *tmpdir_new(const char *prefix, const char *name)
{
    struct tmpdir *d = calloc(1, sizeof *d);

    if (d == NULL)
        return NULL;
    snprintf(d->path, sizeof d->path, "/tmp/%sXXXXXX", prefix);
    if (mkdtemp(d->path) == NULL) {
        free(d);
        return NULL;
    }
    snprintf(d->file, sizeof d->file, "%s/%s", d->path, name);
    return d;
}

/* Removes the file (if there) and the directory, and frees d. */
static inline void tmpdir_free(struct tmpdir *d)
{
    unlink(d->file);
    rmdir(d->path);
    free(d);
}

#endif
