/* log: structured, levelled log lines on stderr.
 *
 * One line per call in logfmt: time=... level=... msg="..." followed by the
 * caller's key=value pairs, or one JSON object per line with --log-format=json.
 * Thread-safe (the metrics server thread may log). */
#ifndef ENVOY_ROUTER_LOG_H
#define ENVOY_ROUTER_LOG_H

#include <stdbool.h>
#include <stdio.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Parses "debug", "info", "warn"/"warning" or "error" into *out.
 * Returns 0, or -1 (and leaves *out alone) for any other text. */
int log_level_parse(const char *text, enum log_level *out);

/* Sets the minimum level written and the format (json=false: logfmt).
 * May be called at any time; the default is info, logfmt. */
void log_setup(enum log_level min, bool json);

/* Sends lines to `out` instead of stderr (NULL: back to stderr). The stream
 * is borrowed: the caller keeps it open while it is in use. For tests. */
void log_set_output(FILE *out);

/* True when a line at `level` would be written; lets callers skip building
 * expensive arguments. */
bool log_enabled(enum log_level level);

/* Writes one line: `msg` is free text (quoted and escaped as needed), then
 * `kv` pairs given as alternating key and value strings ending with NULL:
 *   log_kv(LOG_INFO, "pod reconciled", "pod", "ns/name", "writes", "2", NULL);
 * A NULL value prints as an empty string. Never fails. */
void log_kv(enum log_level level, const char *msg, ...);

/* printf-style convenience: the formatted text becomes msg, no pairs. */
void log_printf(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_printf(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_printf(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_printf(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_printf(LOG_ERROR, __VA_ARGS__)

#endif
