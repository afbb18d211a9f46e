/* dirwatch: see dirwatch.h. */
#include "dirwatch.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_WATCHES 64
#define MAX_DEPTH 4

#define DIR_MASK (IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | \
                  IN_MOVED_FROM | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define PARENT_MASK (IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_ONLYDIR)

struct dirwatch {
    int fd;
    char *dir;
    char *parent;                   /* the directory holding `dir` */
    char *base;                     /* dir's name in parent */
    int parent_wd;                  /* -1 when the parent cannot be watched */
    int wds[MAX_WATCHES];           /* dir and the directories below it */
    size_t n;
};

static bool known(const struct dirwatch *w, int wd)
{
    for (size_t i = 0; i < w->n; i++)
        if (w->wds[i] == wd)
            return true;
    return false;
}

/* Watches `path` and, below MAX_DEPTH, the directories in it. */
static void add_tree(struct dirwatch *w, const char *path, int depth)
{
    if (w->n >= MAX_WATCHES)
        return;
    int wd = inotify_add_watch(w->fd, path, DIR_MASK);
    if (wd < 0 || known(w, wd))     /* the same directory by another name */
        return;
    w->wds[w->n++] = wd;
    if (depth >= MAX_DEPTH)
        return;
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char sub[4096];
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub)
            continue;
        if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            add_tree(w, sub, depth + 1);
    }
    closedir(d);
}

/* Drops every watch and sets them up again for what exists now. */
static void arm(struct dirwatch *w)
{
    for (size_t i = 0; i < w->n; i++)
        inotify_rm_watch(w->fd, w->wds[i]);
    if (w->parent_wd >= 0)
        inotify_rm_watch(w->fd, w->parent_wd);
    w->n = 0;
    w->parent_wd = inotify_add_watch(w->fd, w->parent, PARENT_MASK);
    add_tree(w, w->dir, 0);
}

struct dirwatch *dirwatch_new(const char *dir, char *err, size_t errlen)
{
    struct dirwatch *w = calloc(1, sizeof *w);
    if (w == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->parent_wd = -1;
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    w->dir = strndup(dir, n);
    if (w->fd < 0 || w->dir == NULL) {
        snprintf(err, errlen, "%s", w->fd < 0 ? strerror(errno) : "out of memory");
        goto fail;
    }
    char *slash = strrchr(w->dir, '/');
    if (slash == NULL) {
        w->parent = strdup(".");
        w->base = strdup(w->dir);
    } else {
        w->parent = slash == w->dir ? strdup("/") : strndup(w->dir, (size_t)(slash - w->dir));
        w->base = strdup(slash + 1);
    }
    if (w->parent == NULL || w->base == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    arm(w);
    if (w->n == 0) {
        snprintf(err, errlen, "cannot watch %s: %s", w->dir, strerror(errno));
        goto fail;
    }
    return w;
fail:
    dirwatch_free(w);
    return NULL;
}

void dirwatch_free(struct dirwatch *w)
{
    if (w == NULL)
        return;
    if (w->fd >= 0)
        close(w->fd);
    free(w->dir);
    free(w->parent);
    free(w->base);
    free(w);
}

int dirwatch_fd(const struct dirwatch *w)
{
    return w->fd;
}

size_t dirwatch_count(const struct dirwatch *w)
{
    return w->n + (w->parent_wd >= 0 ? 1 : 0);
}

bool dirwatch_changed(struct dirwatch *w)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool changed = false;
    ssize_t len;
    while ((len = read(w->fd, buf, sizeof buf)) > 0) {
        for (char *p = buf; p < buf + len;) {
            const struct inotify_event *ev = (const struct inotify_event *)(void *)p;
            p += sizeof *ev + ev->len;
            if (ev->wd == w->parent_wd && w->parent_wd >= 0) {
                /* Only our own name: created again, swapped, removed. */
                if (ev->len > 0 && strcmp(ev->name, w->base) == 0)
                    changed = true;
            } else if (known(w, ev->wd)) {
                changed = true;
            }
            /* Anything else is left over from watches dropped by arm(). */
        }
    }
    if (changed)
        arm(w);
    return changed;
}
