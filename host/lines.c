/* lines: newline framing without copying in the common case. Complete lines
 * inside a chunk are handed out straight from the caller's bytes; only the
 * incomplete tail (and, after a callback stops, the unread rest) is kept. */
#include "lines.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct lines {
    char *buf;       /* held bytes: [0, len) */
    size_t len;
    size_t cap;
    size_t max_line;
    /* After a callback stopped, buf may hold complete lines that were not
     * read yet; otherwise it holds at most one incomplete line. */
    bool held;
};

struct lines *lines_new(size_t max_line)
{
    struct lines *l = calloc(1, sizeof *l);

    if (l == NULL)
        return NULL;
    l->max_line = max_line;
    return l;
}

void lines_free(struct lines *l)
{
    if (l == NULL)
        return;
    free(l->buf);
    free(l);
}

size_t lines_pending(const struct lines *l)
{
    return l->len;
}

void lines_reset(struct lines *l)
{
    l->len = 0;
    l->held = false;
}

static int reserve(struct lines *l, size_t extra)
{
    size_t want = l->len + extra;
    size_t cap = l->cap ? l->cap : 256;
    char *p;

    if (want <= l->cap)
        return 0;
    while (cap < want)
        cap *= 2;
    p = realloc(l->buf, cap);
    if (p == NULL)
        return -ENOMEM;
    l->buf = p;
    l->cap = cap;
    return 0;
}

static int append(struct lines *l, const char *data, size_t n)
{
    if (n == 0)
        return 0;
    if (reserve(l, n) != 0)
        return -ENOMEM;
    memcpy(l->buf + l->len, data, n);
    l->len += n;
    return 0;
}

/* The limit applies to the line as delivered, so one byte more is allowed
 * while that byte may still turn out to be the '\r' of a "\r\n". */
static bool too_long(const struct lines *l, const char *line, size_t n)
{
    if (n <= l->max_line)
        return false;
    return n > l->max_line + 1 || line[n - 1] != '\r';
}

/* Delivers one complete line of n bytes (its '\n' excluded). */
static int deliver(const char *line, size_t n, lines_fn fn, void *arg)
{
    if (n > 0 && line[n - 1] == '\r')
        n--;
    if (n == 0)
        return 0;
    return fn(arg, line, n);
}

/* Reads the complete lines held after an earlier stop. On another stop,
 * the unread rest stays at the front of the buffer. */
static int drain_held(struct lines *l, lines_fn fn, void *arg)
{
    size_t pos = 0;
    int rc = 0;

    while (pos < l->len) {
        char *nl = memchr(l->buf + pos, '\n', l->len - pos);
        size_t n;
        if (nl == NULL)
            break;
        n = (size_t)(nl - (l->buf + pos));
        if (too_long(l, l->buf + pos, n)) {
            lines_reset(l);
            return -E2BIG;
        }
        rc = deliver(l->buf + pos, n, fn, arg);
        pos += n + 1;
        if (rc != 0)
            break;
    }
    memmove(l->buf, l->buf + pos, l->len - pos);
    l->len -= pos;
    if (rc != 0)
        return rc;
    l->held = false;
    /* What remains is one incomplete line; it must obey the limit too. */
    if (l->len > 0 && too_long(l, l->buf, l->len)) {
        lines_reset(l);
        return -E2BIG;
    }
    return 0;
}

int lines_feed(struct lines *l, const char *data, size_t len, lines_fn fn, void *arg)
{
    const char *p;
    const char *end;
    int rc;

    if (l->held) {
        rc = drain_held(l, fn, arg);
        if (rc == -E2BIG)
            return rc;
        if (rc != 0) {
            /* Still stopped: everything new is unread as well. */
            if (append(l, data, len) != 0)
                return -ENOMEM;
            return rc;
        }
    }
    if (len == 0)
        return 0;
    p = data;
    end = data + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line;
        size_t n;

        if (nl == NULL) {
            /* Incomplete tail: keep it, unless it already breaks the limit
             * (checked before copying so memory stays bounded). */
            size_t tail = (size_t)(end - p);
            if (l->len + tail > l->max_line + 1 ||
                (l->len + tail > l->max_line && end[-1] != '\r')) {
                lines_reset(l);
                return -E2BIG;
            }
            return append(l, p, tail);
        }
        n = (size_t)(nl - p);
        if (l->len > 0) {
            if (l->len + n > l->max_line + 1) {
                lines_reset(l);
                return -E2BIG;
            }
            if (append(l, p, n) != 0)
                return -ENOMEM;
            line = l->buf;
            n = l->len;
        } else
            line = p;
        if (too_long(l, line, n)) {
            lines_reset(l);
            return -E2BIG;
        }
        rc = deliver(line, n, fn, arg);
        l->len = 0;
        p = nl + 1;
        if (rc != 0) {
            if (append(l, p, (size_t)(end - p)) != 0)
                return -ENOMEM;
            l->held = l->len > 0;
            return rc;
        }
    }
    return 0;
}
