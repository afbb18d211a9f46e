/* jsonbuf: a growing text buffer for writing small JSON documents by hand
 * (Events, YAML converted to JSON), with JSON string escaping. */
#ifndef ENVOY_ROUTER_JSONBUF_H
#define ENVOY_ROUTER_JSONBUF_H

#include <stdbool.h>
#include <stddef.h>

/* Start from {0}. After an allocation failure `oom` is set and further
 * writes are ignored, so callers check once at the end. */
struct jsonbuf {
    char *data;   /* NUL-terminated once anything was written */
    size_t len, cap;
    bool oom;
};

/* Appends n bytes as they are. */
void jsonbuf_put(struct jsonbuf *b, const char *s, size_t n);

/* Appends a NUL-terminated string as it is. */
void jsonbuf_puts(struct jsonbuf *b, const char *s);

/* Appends the n bytes of s as a quoted JSON string ('"' and '\\' escaped,
 * control characters as \n, \t or \u00XX). */
void jsonbuf_string(struct jsonbuf *b, const char *s, size_t n);

/* Ends writing: returns the text (caller frees; its length in *len when
 * len is not NULL), or NULL after an allocation failure (nothing to free). */
char *jsonbuf_finish(struct jsonbuf *b, size_t *len);

#endif
