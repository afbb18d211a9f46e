/* token: see token.h. */
#include "token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "file.h"

struct token {
    char *file;
    char *value;                 /* current token or NULL */
    struct stat st;              /* of the file when last read */
    int64_t checked_ms;
};

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

int token_refresh(struct token *t, bool force, int64_t now_ms)
{
    struct stat st;
    char *v;
    size_t n = 0;

    if (!t->file)
        return 0;
    if (!force && now_ms - t->checked_ms < TOKEN_CHECK_MS)
        return 0;
    t->checked_ms = now_ms;
    if (stat(t->file, &st) != 0)
        return -errno;
    if (!force && t->value && same_file(&st, &t->st))
        return 0;
    v = file_read(t->file, TOKEN_MAX, &n);
    if (!v)
        return -errno;
    while (n > 0 && (v[n - 1] == '\n' || v[n - 1] == '\r' || v[n - 1] == ' ' ||
                     v[n - 1] == '\t'))
        v[--n] = '\0';
    if (n == 0) {                /* mid-rotation, or never written */
        free(v);
        return -ENODATA;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
            free(v);
            return -EINVAL;
        }
    }
    free(t->value);
    t->value = v;
    t->st = st;
    return 0;
}

struct token *token_new(const char *file, const char *value, int64_t now_ms,
                        char *err, size_t errlen)
{
    struct token *t = calloc(1, sizeof(*t));
    int rc;

    if (!t)
        goto nomem;
    if (file) {
        if (!(t->file = strdup(file)))
            goto nomem;
        rc = token_refresh(t, true, now_ms);
        if (rc < 0) {
            snprintf(err, errlen, "kube: token file %s: %s", file, token_strerror(rc));
            token_free(t);
            return NULL;
        }
    } else if (value && !(t->value = strdup(value))) {
        goto nomem;
    }
    return t;
nomem:
    snprintf(err, errlen, "kube: out of memory");
    token_free(t);
    return NULL;
}

void token_free(struct token *t)
{
    if (!t)
        return;
    free(t->file);
    free(t->value);
    free(t);
}

const char *token_value(const struct token *t)
{
    return t->value;
}

const char *token_strerror(int rc)
{
    return rc == -ENODATA ? "empty (no token in it)" : strerror(-rc);
}

const char *token_file(const struct token *t)
{
    return t->file;
}
