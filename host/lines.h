/* lines: splits a byte stream (a watch response body) into lines.
 *
 * The API server sends one JSON document per line on a watch; curl hands us
 * the body in arbitrary chunks, so a line can be split anywhere, even inside
 * a multi-byte character. */
#ifndef ENVOY_ROUTER_LINES_H
#define ENVOY_ROUTER_LINES_H

#include <stddef.h>

struct lines;

/* Called once per complete line, without its '\n' (a trailing '\r' is also
 * removed). Empty lines are skipped. `line` is valid only during the call.
 * Return 0 to go on, non-zero to stop: lines_feed then returns that value and
 * keeps the unread bytes. */
typedef int (*lines_fn)(void *arg, const char *line, size_t len);

/* New splitter whose lines may be at most `max_line` bytes. NULL when out of
 * memory. Free with lines_free. */
struct lines *lines_new(size_t max_line);

/* Frees the splitter; lines_free(NULL) does nothing. */
void lines_free(struct lines *l);

/* Appends `len` bytes and calls `fn` for every line they complete.
 * Returns 0; the callback's non-zero value if it stopped; -E2BIG when a line
 * grows beyond max_line (the buffer is then reset: the caller should restart
 * the stream); -ENOMEM when out of memory. */
int lines_feed(struct lines *l, const char *data, size_t len, lines_fn fn, void *arg);

/* Bytes held of an incomplete line. */
size_t lines_pending(const struct lines *l);

/* Drops any incomplete line (on reconnect). */
void lines_reset(struct lines *l);

#endif
