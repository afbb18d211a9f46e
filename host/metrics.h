/* metrics: a process-wide registry of Prometheus counters, gauges and
 * histograms, rendered in the text exposition format (0.0.4).
 *
 * Metrics are registered once at start-up and updated by the main loop; the
 * HTTP server thread renders them. Updates and rendering are thread-safe (one
 * mutex; updates are a hash lookup on the label values). Label values are
 * given as one string of comma-separated values in the order of the label
 * names given at registration ("reconcile,success"); values must not contain
 * commas. A metric without labels takes NULL. */
#ifndef ENVOY_ROUTER_METRICS_H
#define ENVOY_ROUTER_METRICS_H

#include <stddef.h>

struct metric;

/* Registers a counter (monotonic), gauge or histogram. `labels` is a comma-
 * separated list of label names or NULL. Registering a name twice returns the
 * first metric. Histograms take `buckets` upper bounds in increasing order
 * (+Inf is implicit); NULL/0 uses the default seconds buckets
 * 0.005..10 of the Prometheus clients. Returns NULL only when out of memory
 * (then updates on NULL are ignored, so callers need not check). */
struct metric *metrics_counter(const char *name, const char *help, const char *labels);
struct metric *metrics_gauge(const char *name, const char *help, const char *labels);
struct metric *metrics_histogram(const char *name, const char *help, const char *labels,
                                 const double *buckets, size_t nbuckets);

/* Adds `v` (>= 0 for counters) to the series with these label values. */
void metrics_add(struct metric *m, const char *values, double v);

/* Sets a gauge series. */
void metrics_set(struct metric *m, const char *values, double v);

/* Records one observation in a histogram series. */
void metrics_observe(struct metric *m, const char *values, double v);

/* Current value of a counter/gauge series (0 if it has none); the count of
 * a histogram series. For tests and the host's own reports. */
double metrics_value(struct metric *m, const char *values);

/* Renders every metric, sorted by name then series, as Prometheus text.
 * Returns a malloc'd NUL-terminated string (caller frees) and its length in
 * *len, or NULL when out of memory. */
char *metrics_render(size_t *len);

/* Forgets all metrics (tests only; not safe while another thread renders). */
void metrics_reset(void);

#endif
