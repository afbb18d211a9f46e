/* yamljson: see yamljson.h. */
#include "yamljson.h"

#include <ctype.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "dup.h"
#include "jsonbuf.h"

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
static void put_plain(struct jsonbuf *b, const char *s, size_t n)
{
    if (n == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
        strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0) {
        jsonbuf_puts(b, "null");
    } else if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0) {
        jsonbuf_puts(b, "true");
    } else if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 ||
               strcmp(s, "FALSE") == 0) {
        jsonbuf_puts(b, "false");
    } else if (matches("^[-+]?[0-9]+$", s)) {
        jsonbuf_put(b, s[0] == '+' ? s + 1 : s, s[0] == '+' ? n - 1 : n);
    } else if (matches("^[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?$", s)) {
        char num[64];
        double v = strtod(s, NULL);
        snprintf(num, sizeof num, "%.17g", v);
        jsonbuf_puts(b, num);
    } else {
        jsonbuf_string(b, s, n);
    }
}

char *yamljson_convert(const char *text, size_t len, size_t *out_len, char *err, size_t errlen)
{
    size_t i = 0;
    while (i < len && isspace((unsigned char)text[i]))
        i++;
    if (i < len && (text[i] == '{' || text[i] == '[')) {
        char *copy = dup_mem(text, len);
        if (copy == NULL) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        *out_len = len;
        return copy;
    }

    yaml_parser_t parser;
    yaml_event_t ev;
    struct jsonbuf b = {0};
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
                    jsonbuf_puts(&b, ",");
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
                jsonbuf_string(&b, s, n);
            else
                put_plain(&b, s, n);
            if (depth > 0 && kind[depth - 1] == 'm') {
                if (key)
                    jsonbuf_puts(&b, ":");
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
            jsonbuf_puts(&b, ev.type == YAML_MAPPING_START_EVENT ? "{" : "[");
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            depth--;
            jsonbuf_puts(&b, kind[depth] == 'm' ? "}" : "]");
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
    return jsonbuf_finish(&b, out_len);
}
