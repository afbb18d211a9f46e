/* yamljson: see yamljson.h. */
#include "yamljson.h"

#include <ctype.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct buf {
    char *data;
    size_t len, cap;
    bool oom;
};

static void put(struct buf *b, const char *s, size_t n)
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

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_string(struct buf *b, const char *s, size_t n)
{
    put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(b, esc, 6);
        } else {
            put(b, (const char *)&s[i], 1);
        }
    }
    put(b, "\"", 1);
}

static bool matches(const char *pattern, const char *s)
{
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
        return false;
    bool ok = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

/* A plain scalar under the YAML 1.2 core schema. */
static void put_plain(struct buf *b, const char *s, size_t n)
{
    if (n == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
        strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0) {
        puts_(b, "null");
    } else if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0) {
        puts_(b, "true");
    } else if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 ||
               strcmp(s, "FALSE") == 0) {
        puts_(b, "false");
    } else if (matches("^[-+]?[0-9]+$", s)) {
        put(b, s[0] == '+' ? s + 1 : s, s[0] == '+' ? n - 1 : n);
    } else if (matches("^[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?$", s)) {
        char num[64];
        double v = strtod(s, NULL);
        snprintf(num, sizeof num, "%.17g", v);
        puts_(b, num);
    } else {
        put_string(b, s, n);
    }
}

char *yamljson_convert(const char *text, size_t len, size_t *out_len, char *err, size_t errlen)
{
    size_t i = 0;
    while (i < len && isspace((unsigned char)text[i]))
        i++;
    if (i < len && (text[i] == '{' || text[i] == '[')) {
        char *copy = malloc(len + 1);
        if (copy == NULL) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        memcpy(copy, text, len);
        copy[len] = '\0';
        *out_len = len;
        return copy;
    }

    yaml_parser_t parser;
    yaml_event_t ev;
    struct buf b = {0};
    /* Per nesting level: 'm' mapping, 's' sequence; whether an item was
     * written; in a mapping, whether the next scalar is a key. */
    char kind[256];
    bool first[256], want_key[256];
    int depth = 0;
    bool done = false, failed = false;

    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (!done && !failed) {
        if (!yaml_parser_parse(&parser, &ev)) {
            snprintf(err, errlen, "line %zu: %s", parser.problem_mark.line + 1,
                     parser.problem ? parser.problem : "YAML error");
            failed = true;
            break;
        }
        /* Separator before a value or key inside a container. */
        bool is_value = ev.type == YAML_SCALAR_EVENT || ev.type == YAML_MAPPING_START_EVENT ||
                        ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_ALIAS_EVENT;
        if (is_value && depth > 0) {
            int d = depth - 1;
            if (kind[d] == 's' || want_key[d]) {
                if (!first[d])
                    puts_(&b, ",");
                first[d] = false;
            }
        }
        switch (ev.type) {
        case YAML_ALIAS_EVENT:
            snprintf(err, errlen, "line %zu: YAML aliases are not supported",
                     ev.start_mark.line + 1);
            failed = true;
            break;
        case YAML_SCALAR_EVENT: {
            const char *s = (const char *)ev.data.scalar.value;
            size_t n = ev.data.scalar.length;
            bool key = depth > 0 && kind[depth - 1] == 'm' && want_key[depth - 1];
            if (key || ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
                put_string(&b, s, n);
            else
                put_plain(&b, s, n);
            if (depth > 0 && kind[depth - 1] == 'm') {
                if (key)
                    puts_(&b, ":");
                want_key[depth - 1] = !key;
            }
            break;
        }
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT:
            if (depth > 0 && kind[depth - 1] == 'm' && want_key[depth - 1]) {
                snprintf(err, errlen, "line %zu: complex mapping keys are not supported",
                         ev.start_mark.line + 1);
                failed = true;
                break;
            }
            if (depth >= (int)sizeof kind) {
                snprintf(err, errlen, "line %zu: nested too deeply", ev.start_mark.line + 1);
                failed = true;
                break;
            }
            if (depth > 0 && kind[depth - 1] == 'm')
                want_key[depth - 1] = true;
            kind[depth] = ev.type == YAML_MAPPING_START_EVENT ? 'm' : 's';
            first[depth] = true;
            want_key[depth] = true;
            depth++;
            puts_(&b, ev.type == YAML_MAPPING_START_EVENT ? "{" : "[");
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            depth--;
            puts_(&b, kind[depth] == 'm' ? "}" : "]");
            break;
        case YAML_DOCUMENT_END_EVENT:
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    if (!failed && b.len == 0) {
        snprintf(err, errlen, "the file holds no YAML document");
        failed = true;
    }
    if (!failed && b.oom) {
        snprintf(err, errlen, "out of memory");
        failed = true;
    }
    if (failed) {
        free(b.data);
        return NULL;
    }
    *out_len = b.len;
    return b.data;
}
