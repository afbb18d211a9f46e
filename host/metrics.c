/* metrics: the registry is a name-sorted array of metrics; each metric keeps
 * its label series in a chained hash keyed by the comma-joined values the
 * callers pass, so an update is one hash lookup under the one mutex. */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "log.h"

enum kind { COUNTER, GAUGE, HISTOGRAM };

#define SERIES(n) hash_entry(n, struct series, hn)

struct series {
    struct hash_node hn;   /* in the metric's table */
    const char *key;       /* the values as given, for lookup */
    const char **parts;    /* one value per label name */
    double value;          /* counter/gauge value; histogram sum */
    uint64_t count;        /* histogram observations */
    uint64_t *hits;        /* histogram: per bound, not cumulative */
    /* hits, parts and the two strings live in the same allocation */
};

struct metric {
    char *name;
    char *help;
    enum kind kind;
    char **labels;
    size_t nlabels;
    double *bounds;
    size_t nbounds;
    struct hash table;     /* the series, by key */
    bool warned;           /* a malformed update was reported once */
};

/* The process-wide registry the header promises, and its one lock. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metric **reg;
static size_t reg_len, reg_cap;

static const double default_bounds[] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

static const char *const kind_names[] = {"counter", "gauge", "histogram"};

static void free_series(struct hash_node *n)
{
    free(SERIES(n));
}

static void free_metric(struct metric *m)
{
    if (m == NULL)
        return;
    hash_release(&m->table, free_series);
    for (size_t i = 0; m->labels != NULL && i < m->nlabels; i++)
        free(m->labels[i]);
    free(m->labels);
    free(m->bounds);
    free(m->help);
    free(m->name);
    free(m);
}

/* Number of comma-separated parts of s ("" has one, the empty value). */
static size_t count_parts(const char *s)
{
    size_t n = 1;

    for (; *s; s++)
        if (*s == ',')
            n++;
    return n;
}

static int split_labels(struct metric *m, const char *labels)
{
    const char *p = labels;

    if (labels == NULL || *labels == '\0')
        return 0;
    m->nlabels = count_parts(labels);
    m->labels = calloc(m->nlabels, sizeof *m->labels);
    if (m->labels == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < m->nlabels; i++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        m->labels[i] = strndup(p, len);
        if (m->labels[i] == NULL)
            return -ENOMEM;
        p += len + 1;
    }
    return 0;
}

static struct series *find_series(const struct metric *m, const char *key, uint64_t h)
{
    for (struct hash_node *n = hash_first(&m->table, h); n; n = hash_next(n))
        if (strcmp(SERIES(n)->key, key) == 0)
            return SERIES(n);
    return NULL;
}

/* The series for `values`, created on first use. NULL when the values do not
 * match the label names (reported once per metric) or out of memory. */
static struct series *get_series(struct metric *m, const char *values)
{
    const char *key = values ? values : "";
    uint64_t h = hash_str(HASH_SEED, key);
    struct series *s = find_series(m, key, h);
    size_t len, nparts, size;
    char *copy;
    char *split;

    if (s != NULL)
        return s;
    nparts = m->nlabels == 0 ? (*key == '\0' ? 0 : SIZE_MAX) : count_parts(key);
    if (nparts != m->nlabels) {
        if (!m->warned) {
            m->warned = true;
            log_kv(LOG_WARN, "metrics: label values do not match the label names",
                   "metric", m->name, "values", key, NULL);
        }
        return NULL;
    }
    len = strlen(key);
    size = sizeof *s + m->nbounds * sizeof(uint64_t) + m->nlabels * sizeof(char *) +
           2 * (len + 1);
    s = calloc(1, size);
    if (s == NULL)
        return NULL;
    s->hits = (uint64_t *)(s + 1);
    s->parts = (const char **)(s->hits + m->nbounds);
    copy = (char *)(s->parts + m->nlabels);
    split = copy + len + 1;
    memcpy(copy, key, len + 1);
    memcpy(split, key, len + 1);
    s->key = copy;
    for (size_t i = 0; i < m->nlabels; i++) {
        char *comma = strchr(split, ',');
        s->parts[i] = split;
        if (comma != NULL) {
            *comma = '\0';
            split = comma + 1;
        }
    }
    hash_add(&m->table, &s->hn, h);
    return s;
}

static struct metric *find_metric(const char *name, size_t *at)
{
    size_t lo = 0, hi = reg_len;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(reg[mid]->name, name);
        if (c == 0) {
            *at = mid;
            return reg[mid];
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *at = lo;
    return NULL;
}

static struct metric *make_metric(enum kind kind, const char *name, const char *help,
                                  const char *labels, const double *bounds, size_t nbounds)
{
    struct metric *m = calloc(1, sizeof *m);

    if (m == NULL)
        return NULL;
    m->kind = kind;
    m->name = strdup(name);
    m->help = strdup(help ? help : "");
    if (m->name == NULL || m->help == NULL || hash_init(&m->table, 8) != 0)
        goto fail;
    if (split_labels(m, labels) != 0)
        goto fail;
    if (kind == HISTOGRAM) {
        if (bounds == NULL || nbounds == 0) {
            bounds = default_bounds;
            nbounds = sizeof default_bounds / sizeof default_bounds[0];
        }
        m->bounds = malloc(nbounds * sizeof *m->bounds);
        if (m->bounds == NULL)
            goto fail;
        memcpy(m->bounds, bounds, nbounds * sizeof *m->bounds);
        m->nbounds = nbounds;
    }
    /* A metric without labels has exactly one series, shown from the start
     * (a zero is information; an absent line is not). */
    if (m->nlabels == 0 && get_series(m, NULL) == NULL)
        goto fail;
    return m;

fail:
    free_metric(m);
    return NULL;
}

static struct metric *register_metric(enum kind kind, const char *name, const char *help,
                                      const char *labels, const double *bounds,
                                      size_t nbounds)
{
    struct metric *m;
    size_t at;

    if (name == NULL)
        return NULL;
    pthread_mutex_lock(&reg_lock);
    m = find_metric(name, &at);
    if (m != NULL)
        goto out;
    if (reg_len == reg_cap) {
        size_t cap = reg_cap ? reg_cap * 2 : 32;
        struct metric **r = realloc(reg, cap * sizeof *r);
        if (r == NULL)
            goto out;
        reg = r;
        reg_cap = cap;
    }
    m = make_metric(kind, name, help, labels, bounds, nbounds);
    if (m == NULL)
        goto out;
    memmove(reg + at + 1, reg + at, (reg_len - at) * sizeof *reg);
    reg[at] = m;
    reg_len++;
out:
    pthread_mutex_unlock(&reg_lock);
    return m;
}

struct metric *metrics_counter(const char *name, const char *help, const char *labels)
{
    return register_metric(COUNTER, name, help, labels, NULL, 0);
}

struct metric *metrics_gauge(const char *name, const char *help, const char *labels)
{
    return register_metric(GAUGE, name, help, labels, NULL, 0);
}

struct metric *metrics_histogram(const char *name, const char *help, const char *labels,
                                 const double *buckets, size_t nbuckets)
{
    return register_metric(HISTOGRAM, name, help, labels, buckets, nbuckets);
}

void metrics_add(struct metric *m, const char *values, double v)
{
    struct series *s;

    if (m == NULL || m->kind == HISTOGRAM || (m->kind == COUNTER && !(v >= 0)))
        return;
    pthread_mutex_lock(&reg_lock);
    s = get_series(m, values);
    if (s != NULL)
        s->value += v;
    pthread_mutex_unlock(&reg_lock);
}

void metrics_set(struct metric *m, const char *values, double v)
{
    struct series *s;

    if (m == NULL || m->kind != GAUGE)
        return;
    pthread_mutex_lock(&reg_lock);
    s = get_series(m, values);
    if (s != NULL)
        s->value = v;
    pthread_mutex_unlock(&reg_lock);
}

void metrics_observe(struct metric *m, const char *values, double v)
{
    struct series *s;

    if (m == NULL || m->kind != HISTOGRAM)
        return;
    pthread_mutex_lock(&reg_lock);
    s = get_series(m, values);
    if (s != NULL) {
        for (size_t i = 0; i < m->nbounds; i++) {
            if (v <= m->bounds[i]) {
                s->hits[i]++;
                break;
            }
        }
        s->count++;
        s->value += v;
    }
    pthread_mutex_unlock(&reg_lock);
}

double metrics_value(struct metric *m, const char *values)
{
    const char *key = values ? values : "";
    struct series *s;
    double v = 0;

    if (m == NULL)
        return 0;
    pthread_mutex_lock(&reg_lock);
    s = find_series(m, key, hash_str(HASH_SEED, key));
    if (s != NULL)
        v = m->kind == HISTOGRAM ? (double)s->count : s->value;
    pthread_mutex_unlock(&reg_lock);
    return v;
}

/* --- rendering ------------------------------------------------------------ */

/* Shortest text that reads back as the same double, as Prometheus clients
 * print them ("1", "0.25", "+Inf"). */
static void format_number(char *out, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(out, size, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, size, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, size, "%.0f", v == 0 ? 0.0 : v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, size, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

static void put_escaped(FILE *o, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", o);
        else if (*s == '\n')
            fputs("\\n", o);
        else if (quote && *s == '"')
            fputs("\\\"", o);
        else
            fputc(*s, o);
    }
}

/* Writes {a="x",b="y"} plus an optional le="..." pair; nothing at all when
 * there is no pair. */
static void put_labels(FILE *o, const struct metric *m, const struct series *s,
                       const char *le)
{
    if (m->nlabels == 0 && le == NULL)
        return;
    fputc('{', o);
    for (size_t i = 0; i < m->nlabels; i++) {
        fprintf(o, "%s%s=\"", i ? "," : "", m->labels[i]);
        put_escaped(o, s->parts[i], true);
        fputc('"', o);
    }
    if (le != NULL)
        fprintf(o, "%sle=\"%s\"", m->nlabels ? "," : "", le);
    fputc('}', o);
}

static int compare_series(const void *a, const void *b, void *nlabels)
{
    const struct series *x = *(const struct series *const *)a;
    const struct series *y = *(const struct series *const *)b;
    size_t n = *(const size_t *)nlabels;

    for (size_t i = 0; i < n; i++) {
        int c = strcmp(x->parts[i], y->parts[i]);
        if (c != 0)
            return c;
    }
    return 0;
}

static int render_metric(FILE *o, const struct metric *m)
{
    struct series **all;
    size_t n = 0;
    char num[40];

    if (m->table.n == 0)
        return 0; /* a labelled metric nobody used yet: nothing to say */
    all = malloc(m->table.n * sizeof *all);
    if (all == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < m->table.nchains; i++)
        for (struct hash_node *x = m->table.chains[i]; x; x = x->next)
            all[n++] = SERIES(x);
    qsort_r(all, n, sizeof *all, compare_series, (void *)&m->nlabels);

    fprintf(o, "# HELP %s ", m->name);
    put_escaped(o, m->help, false);
    fprintf(o, "\n# TYPE %s %s\n", m->name, kind_names[m->kind]);
    for (size_t i = 0; i < n; i++) {
        const struct series *s = all[i];
        if (m->kind != HISTOGRAM) {
            fputs(m->name, o);
            put_labels(o, m, s, NULL);
            format_number(num, sizeof num, s->value);
            fprintf(o, " %s\n", num);
            continue;
        }
        uint64_t cumulative = 0;
        for (size_t b = 0; b < m->nbounds; b++) {
            char le[40];
            cumulative += s->hits[b];
            format_number(le, sizeof le, m->bounds[b]);
            fprintf(o, "%s_bucket", m->name);
            put_labels(o, m, s, le);
            fprintf(o, " %llu\n", (unsigned long long)cumulative);
        }
        fprintf(o, "%s_bucket", m->name);
        put_labels(o, m, s, "+Inf");
        fprintf(o, " %llu\n", (unsigned long long)s->count);
        format_number(num, sizeof num, s->value);
        fprintf(o, "%s_sum", m->name);
        put_labels(o, m, s, NULL);
        fprintf(o, " %s\n%s_count", num, m->name);
        put_labels(o, m, s, NULL);
        fprintf(o, " %llu\n", (unsigned long long)s->count);
    }
    free(all);
    return 0;
}

char *metrics_render(size_t *len)
{
    char *text = NULL;
    size_t size = 0;
    FILE *o = open_memstream(&text, &size);
    int rc = 0;

    if (o == NULL)
        return NULL;
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < reg_len && rc == 0; i++)
        rc = render_metric(o, reg[i]);
    pthread_mutex_unlock(&reg_lock);
    if (fclose(o) != 0 || rc != 0) {
        free(text);
        return NULL;
    }
    if (len != NULL)
        *len = size;
    return text;
}

void metrics_reset(void)
{
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < reg_len; i++)
        free_metric(reg[i]);
    free(reg);
    reg = NULL;
    reg_len = reg_cap = 0;
    pthread_mutex_unlock(&reg_lock);
}
