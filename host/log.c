/* log: one line per event, logfmt or JSON, written with a single fwrite so
 * that lines from the main loop and the HTTP thread never interleave. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The only global state: the header makes log settings process-wide. The
 * level and format are atomics because any thread may read them; the output
 * stream is guarded by the mutex that also serialises writes. */
static atomic_int log_min = LOG_INFO;
static atomic_bool log_json = false;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_out; /* NULL means stderr */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *text, enum log_level *out)
{
    static const struct { const char *name; enum log_level level; } table[] = {
        {"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"warn", LOG_WARN},
        {"warning", LOG_WARN}, {"error", LOG_ERROR},
    };
    if (text == NULL)
        return -1;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(text, table[i].name) == 0) {
            *out = table[i].level;
            return 0;
        }
    }
    return -1;
}

void log_setup(enum log_level min, bool json)
{
    atomic_store(&log_min, (int)min);
    atomic_store(&log_json, json);
}

void log_set_output(FILE *out)
{
    pthread_mutex_lock(&log_lock);
    log_out = out;
    pthread_mutex_unlock(&log_lock);
}

bool log_enabled(enum log_level level)
{
    return (int)level >= atomic_load(&log_min);
}

/* Length of the valid UTF-8 sequence starting at s (at most n bytes), or 0
 * when the bytes there are not valid UTF-8 (overlong forms and surrogates
 * included). Invalid bytes are replaced so that a JSON line stays JSON. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < need + 1)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i <= need; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return need + 1;
}

static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* True when a logfmt value must be quoted to be read back as one value. */
static bool logfmt_needs_quotes(const char *v)
{
    const unsigned char *s = (const unsigned char *)v;
    size_t n = strlen(v);

    if (n == 0)
        return true;
    for (size_t i = 0; i < n;) {
        size_t k;
        if (s[i] <= ' ' || s[i] == '=' || s[i] == '"' || s[i] == 0x7F)
            return true;
        k = utf8_seq(s + i, n - i);
        if (k == 0)
            return true;
        i += k;
    }
    return false;
}

/* Writes `v` inside double quotes with the escapes logfmt readers and JSON
 * share: \" \\ \n \r \t and \u00XX for other control bytes. */
static void put_quoted(FILE *o, const char *v)
{
    const unsigned char *s = (const unsigned char *)v;
    size_t n = strlen(v);

    fputc('"', o);
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t k;
        switch (c) {
        case '"': fputs("\\\"", o); i++; continue;
        case '\\': fputs("\\\\", o); i++; continue;
        case '\n': fputs("\\n", o); i++; continue;
        case '\r': fputs("\\r", o); i++; continue;
        case '\t': fputs("\\t", o); i++; continue;
        default: break;
        }
        if (c < 0x20 || c == 0x7F) {
            fprintf(o, "\\u%04x", c);
            i++;
            continue;
        }
        k = utf8_seq(s + i, n - i);
        if (k == 0) {
            fputs(replacement, o);
            i++;
        } else {
            fwrite(s + i, 1, k, o);
            i += k;
        }
    }
    fputc('"', o);
}

/* A logfmt key cannot be quoted, so bytes that would break the pair are
 * replaced by '_'. */
static void put_logfmt_key(FILE *o, const char *k)
{
    if (*k == '\0') {
        fputc('_', o);
        return;
    }
    for (const unsigned char *s = (const unsigned char *)k; *s; s++)
        fputc((*s <= ' ' || *s == '=' || *s == '"' || *s >= 0x7F) ? '_' : *s, o);
}

static void put_logfmt_value(FILE *o, const char *v)
{
    if (logfmt_needs_quotes(v))
        put_quoted(o, v);
    else
        fputs(v, o);
}

static void put_time(FILE *o)
{
    struct timespec ts;
    struct tm tm;
    char text[32];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(o, "%s.%03ldZ", text, ts.tv_nsec / 1000000L);
}

/* Formats the whole line into `o`. `ap` is NULL for a line without pairs. */
static void format_line(FILE *o, enum log_level level, const char *msg, va_list *ap,
                        bool json)
{
    const char *lname = level_names[level];

    if (json) {
        fputs("{\"time\":\"", o);
        put_time(o);
        fprintf(o, "\",\"level\":\"%s\",\"msg\":", lname);
        put_quoted(o, msg ? msg : "");
    } else {
        fputs("time=", o);
        put_time(o);
        fprintf(o, " level=%s msg=", lname);
        put_logfmt_value(o, msg ? msg : "");
    }
    if (ap != NULL) {
        const char *k;
        while ((k = va_arg(*ap, const char *)) != NULL) {
            const char *v = va_arg(*ap, const char *);
            if (v == NULL)
                v = "";
            if (json) {
                fputc(',', o);
                put_quoted(o, k);
                fputc(':', o);
                put_quoted(o, v);
            } else {
                fputc(' ', o);
                put_logfmt_key(o, k);
                fputc('=', o);
                put_logfmt_value(o, v);
            }
        }
    }
    fputs(json ? "}\n" : "\n", o);
}

static void emit(enum log_level level, const char *msg, va_list *ap)
{
    bool json = atomic_load(&log_json);
    char *text = NULL;
    size_t len = 0;
    FILE *mem;
    FILE *out;

    if ((unsigned)level > LOG_ERROR)
        level = LOG_ERROR;
    /* The line is built in memory and written at once; if even that memory
     * is missing, write piecewise under the lock rather than lose the line. */
    mem = open_memstream(&text, &len);
    if (mem != NULL) {
        va_list copy; /* the fallback below may need the pairs again */
        if (ap != NULL) {
            va_copy(copy, *ap);
            format_line(mem, level, msg, &copy, json);
            va_end(copy);
        } else
            format_line(mem, level, msg, NULL, json);
        if (fclose(mem) != 0) {
            free(text);
            text = NULL;
        }
    }
    pthread_mutex_lock(&log_lock);
    out = log_out ? log_out : stderr;
    if (text != NULL)
        fwrite(text, 1, len, out);
    else
        format_line(out, level, msg, ap, json);
    fflush(out);
    pthread_mutex_unlock(&log_lock);
    free(text);
}

void log_kv(enum log_level level, const char *msg, ...)
{
    va_list ap;

    if (!log_enabled(level))
        return;
    va_start(ap, msg);
    emit(level, msg, &ap);
    va_end(ap);
}

void log_printf(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    char *msg = NULL;
    int n;

    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    /* Out of memory: the unformatted text still says where we were. */
    emit(level, n < 0 ? fmt : msg, NULL);
    if (n >= 0)
        free(msg);
}
