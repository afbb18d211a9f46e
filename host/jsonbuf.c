/* jsonbuf: see jsonbuf.h. */
#include "jsonbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jsonbuf_put(struct jsonbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL) {
            b->oom = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void jsonbuf_puts(struct jsonbuf *b, const char *s)
{
    jsonbuf_put(b, s, strlen(s));
}

void jsonbuf_string(struct jsonbuf *b, const char *s, size_t n)
{
    jsonbuf_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            jsonbuf_put(b, esc, 2);
        } else if (c == '\n') {
            jsonbuf_put(b, "\\n", 2);
        } else if (c == '\t') {
            jsonbuf_put(b, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            jsonbuf_put(b, esc, 6);
        } else {
            jsonbuf_put(b, (const char *)&s[i], 1);
        }
    }
    jsonbuf_put(b, "\"", 1);
}

char *jsonbuf_finish(struct jsonbuf *b, size_t *len)
{
    if (b->oom) {
        free(b->data);
        *b = (struct jsonbuf){0};
        return NULL;
    }
    if (b->data == NULL)
        jsonbuf_put(b, "", 0);
    if (len)
        *len = b->len;
    char *out = b->data;
    *b = (struct jsonbuf){0};
    return out;
}
