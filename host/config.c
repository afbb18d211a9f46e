/* config: every flag is one row of a table (name, type, field, default as
 * text, help); the environment variable is derived from the name, defaults
 * go through the same parser as user values, and the usage text is printed
 * from the same rows, so the three can never disagree. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "names.h"

#define PROG "envoy-router"
#define ENV_PREFIX "ENVOY_ROUTER_"

enum type {
    T_STRING,   /* char * */
    T_INT,      /* int within [min, max] */
    T_SECONDS,  /* int seconds: "600", "600s", "10m", "1h" */
    T_DOUBLE,   /* double >= 0 */
    T_BOOL,     /* bool */
    T_LEVEL,    /* enum log_level */
    T_FORMAT,   /* bool log_json: "logfmt" or "json" */
    T_LIST,     /* char ** NULL-terminated, repeatable */
    T_EXTRA,    /* struct config_extra *, repeatable KEY=VALUE */
};

struct flag {
    const char *name;
    enum type type;
    size_t field;       /* offsetof(struct config, ...) */
    const char *def;    /* default, as a user would write it; NULL: none */
    long min, max;      /* T_INT, T_SECONDS */
    const char *arg;    /* placeholder in the usage text */
    const char *help;
};

#define F(f) offsetof(struct config, f)

static const struct flag flags[] = {
    {"metrics-bind-address", T_STRING, F(metrics_addr), ":8080", 0, 0, "ADDR",
     "address of /metrics: \"host:port\" or \":port\"; \"0\" disables"},
    {"health-probe-bind-address", T_STRING, F(health_addr), ":8081", 0, 0, "ADDR",
     "address of /healthz and /readyz; \"0\" disables"},
    {"gateway-name", T_STRING, F(gateway_name), "envoy-router", 0, 0, "NAME",
     "Gateway the HTTPRoutes attach to"},
    {"gateway-namespace", T_STRING, F(gateway_namespace), "", 0, 0, "NS",
     "namespace of that Gateway; empty: the pod's namespace"},
    {"service-port", T_INT, F(service_port), "80", 1, 65535, "PORT",
     "port of the Services created for pods"},
    {"pod-port", T_INT, F(pod_port), "8080", 1, 65535, "PORT",
     "port the pods listen on"},
    {"hostname", T_LIST, F(hostnames), NULL, 0, 0, "HOST",
     "hostname the HTTPRoutes match (repeatable; comma-separated in the environment)"},
    {"rewrite-prefix", T_BOOL, F(rewrite_prefix), "false", 0, 0, "BOOL",
     "strip the /<pod-name> prefix before the request reaches the pod"},
    {"headless-services", T_BOOL, F(headless), "true", 0, 0, "BOOL",
     "create Services without a cluster IP (clusterIP: None)"},
    {"extra", T_EXTRA, F(extra), NULL, 0, 0, "KEY=VALUE",
     "hand config.extra[KEY] = VALUE to the scripts (repeatable; comma-separated in "
     "the environment)"},
    {"watch-namespace", T_STRING, F(watch_namespace), "", 0, 0, "NS",
     "watch pods of this namespace only; empty: all namespaces"},
    {"kubeconfig", T_STRING, F(kubeconfig), "", 0, 0, "FILE",
     "kubeconfig file; empty: $KUBECONFIG, else the in-cluster service account"},
    {"scripts-dir", T_STRING, F(scripts_dir), "", 0, 0, "DIR",
     "directory holding router.lua and templates/; empty: the built-in scripts"},
    {"pod", T_STRING, F(pod_file), "", 0, 0, "FILE",
     "pod manifest (YAML or JSON) for the render command"},
    {"leader-elect", T_BOOL, F(leader_elect), "false", 0, 0, "BOOL",
     "elect a leader through a Lease so that one replica writes at a time"},
    {"leader-election-id", T_STRING, F(leader_election_id), "envoy-router", 0, 0, "NAME",
     "name of the Lease"},
    {"leader-election-namespace", T_STRING, F(leader_election_namespace), "", 0, 0, "NS",
     "namespace of the Lease; empty: the operator's own namespace"},
    {"identity", T_STRING, F(identity), "", 0, 0, "ID",
     "holder identity in the Lease; empty: hostname plus a random suffix"},
    {"max-concurrent-writes", T_INT, F(max_concurrent_writes), "16", 1, 10000, "N",
     "API writes in flight at once"},
    {"kube-api-qps", T_DOUBLE, F(kube_api_qps), "0", 0, 0, "QPS",
     "client-side limit of API requests per second; 0: no limit"},
    {"kube-api-burst", T_INT, F(kube_api_burst), "100", 1, 1000000, "N",
     "requests allowed at once above the QPS limit"},
    {"resync-period", T_SECONDS, F(resync_seconds), "600", 0, INT_MAX, "DURATION",
     "requeue every pod this often (seconds, or with s/m/h); 0 disables"},
    {"route-drain-delay", T_SECONDS, F(route_drain_seconds), "2", 0, 300, "DURATION",
     "delete a pod's Service and EndpointSlice this long after its HTTPRoutes are gone"},
    {"shutdown-grace-period", T_SECONDS, F(shutdown_grace_seconds), "10", 0, 3600,
     "DURATION", "time to finish API writes after SIGTERM"},
    {"log-level", T_LEVEL, F(log_level), "info", 0, 0, "LEVEL",
     "debug, info, warn or error"},
    {"log-format", T_FORMAT, F(log_json), "logfmt", 0, 0, "FORMAT", "logfmt or json"},
};

#define NFLAGS (sizeof flags / sizeof flags[0])

static const struct {
    const char *name;
    enum config_command command;
} commands[] = {
    {"run", CMD_RUN}, {"render", CMD_RENDER}, {"check", CMD_CHECK},
    {"version", CMD_VERSION}, {"help", CMD_HELP},
};

static void *field(struct config *c, const struct flag *f)
{
    return (char *)c + f->field;
}

/* "max-concurrent-writes" -> "ENVOY_ROUTER_MAX_CONCURRENT_WRITES" */
static void env_name(const struct flag *f, char *out, size_t len)
{
    size_t n = strlen(ENV_PREFIX);

    memcpy(out, ENV_PREFIX, n);
    for (const char *p = f->name; *p && n + 1 < len; p++)
        out[n++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    out[n] = '\0';
}

static const struct flag *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < NFLAGS; i++)
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
            return &flags[i];
    return NULL;
}

static const char *lookup_env(char **envp, const char *name)
{
    size_t n = strlen(name);

    for (char **e = envp; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes"}, *const no[] = {"false", "0", "no"};

    for (size_t i = 0; i < 3; i++) {
        if (strcmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* Reads a whole decimal number (optional sign). 0, -1 when it is not one,
 * -ERANGE when it does not fit a long. */
static int parse_long(const char *v, long *out, char **rest)
{
    char *end;

    if (!((*v >= '0' && *v <= '9') || ((*v == '-' || *v == '+') && v[1] >= '0' && v[1] <= '9')))
        return -1;
    errno = 0;
    *out = strtol(v, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    if (rest != NULL)
        *rest = end;
    else if (*end != '\0')
        return -1;
    return 0;
}

static int list_append(char ***list, const char *v)
{
    size_t n = 0;
    char **l;

    while (*list && (*list)[n])
        n++;
    l = realloc(*list, (n + 2) * sizeof *l);
    if (l == NULL)
        return -ENOMEM;
    *list = l;
    l[n] = strdup(v);
    l[n + 1] = NULL;
    return l[n] ? 0 : -ENOMEM;
}

static void list_clear(char ***list)
{
    for (size_t i = 0; *list && (*list)[i]; i++)
        free((*list)[i]);
    free(*list);
    *list = NULL;
}

static void extra_clear(struct config *c)
{
    for (int i = 0; i < c->n_extra; i++) {
        free(c->extra[i].key);
        free(c->extra[i].value);
    }
    free(c->extra);
    c->extra = NULL;
    c->n_extra = 0;
}

/* A Gateway API hostname: a DNS-1123 subdomain, optionally "*." first,
 * not an IP address. */
static bool valid_hostname(const char *h)
{
    const char *name = strncmp(h, "*.", 2) == 0 ? h + 2 : h;
    if (!names_dns1123_subdomain(name))
        return false;
    return strspn(name, "0123456789.") != strlen(name);
}

/* An --extra key: 1..63 of [A-Za-z0-9_.-], starting with a letter or '_'
 * (what scripts can spell as config.extra.KEY or config.extra["KEY"]). */
static bool valid_extra_key(const char *k, size_t len)
{
    if (len == 0 || len > 63 || !(isalpha((unsigned char)k[0]) || k[0] == '_'))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)k[i]) && strchr("_.-", k[i]) == NULL)
            return false;
    return true;
}

static int extra_append(struct config *c, const char *v, char *err, size_t errlen)
{
    const char *eq = strchr(v, '=');
    struct config_extra *e;

    if (eq == NULL || eq == v) {
        snprintf(err, errlen, "\"%s\" is not KEY=VALUE", v);
        return -1;
    }
    size_t klen = (size_t)(eq - v);
    if (!valid_extra_key(v, klen)) {
        snprintf(err, errlen, "key \"%.*s\" must be 1..63 letters, digits, '_', '.' or '-', "
                 "starting with a letter or '_'", (int)klen, v);
        return -1;
    }
    for (int i = 0; i < c->n_extra; i++) {
        if (strlen(c->extra[i].key) == klen && strncmp(c->extra[i].key, v, klen) == 0) {
            snprintf(err, errlen, "key \"%.*s\" is given twice", (int)klen, v);
            return -1;
        }
    }
    e = realloc(c->extra, ((size_t)c->n_extra + 1) * sizeof *e);
    if (e == NULL)
        goto oom;
    c->extra = e;
    e = &c->extra[c->n_extra];
    e->key = strndup(v, (size_t)(eq - v));
    e->value = strdup(eq + 1);
    c->n_extra++; /* counted even if half-made, so config_free frees it */
    if (e->key == NULL || e->value == NULL)
        goto oom;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* Applies one value of flag f (one item, for lists). On error returns -1
 * with the problem, without the flag name, in err. */
static int set_value(struct config *c, const struct flag *f, const char *v, char *err,
                     size_t errlen)
{
    void *p = field(c, f);
    long n;
    int rc;

    switch (f->type) {
    case T_STRING: {
        char *copy = strdup(v);
        if (copy == NULL)
            break;
        free(*(char **)p);
        *(char **)p = copy;
        return 0;
    }
    case T_INT:
    case T_SECONDS: {
        char *rest = NULL;
        long unit = 1;
        rc = parse_long(v, &n, f->type == T_SECONDS ? &rest : NULL);
        if (rc == 0 && f->type == T_SECONDS) {
            if (strcmp(rest, "") == 0 || strcmp(rest, "s") == 0)
                unit = 1;
            else if (strcmp(rest, "m") == 0)
                unit = 60;
            else if (strcmp(rest, "h") == 0)
                unit = 3600;
            else
                rc = -1;
            if (rc == 0 && (n > LONG_MAX / unit || n < LONG_MIN / unit))
                rc = -ERANGE;
            if (rc == 0)
                n *= unit;
        }
        if (rc == -1) {
            snprintf(err, errlen,
                     f->type == T_INT ? "\"%s\" is not a whole number"
                                      : "\"%s\" is not a duration (seconds, or a number "
                                        "with s, m or h)",
                     v);
            return -1;
        }
        if (rc == -ERANGE || n < f->min || n > f->max) {
            snprintf(err, errlen, "%s is out of range %ld..%ld%s", v, f->min, f->max,
                     f->type == T_SECONDS ? " seconds" : "");
            return -1;
        }
        *(int *)p = (int)n;
        return 0;
    }
    case T_DOUBLE: {
        char *end;
        double d;
        errno = 0;
        d = strtod(v, &end);
        if (end == v || *end != '\0' || *v == ' ' || errno == ERANGE || !isfinite(d)) {
            snprintf(err, errlen, "\"%s\" is not a number", v);
            return -1;
        }
        if (d < 0) {
            snprintf(err, errlen, "%s must not be negative", v);
            return -1;
        }
        *(double *)p = d;
        return 0;
    }
    case T_BOOL:
        if (parse_bool(v, (bool *)p) != 0) {
            snprintf(err, errlen, "\"%s\" is not a boolean (true/false/1/0/yes/no)", v);
            return -1;
        }
        return 0;
    case T_LEVEL:
        if (log_level_parse(v, (enum log_level *)p) != 0) {
            snprintf(err, errlen, "\"%s\" is not one of debug, info, warn, error", v);
            return -1;
        }
        return 0;
    case T_FORMAT:
        if (strcmp(v, "logfmt") == 0 || strcmp(v, "json") == 0) {
            *(bool *)p = strcmp(v, "json") == 0;
            return 0;
        }
        snprintf(err, errlen, "\"%s\" is not one of logfmt, json", v);
        return -1;
    case T_LIST:
        if (*v == '\0') {
            snprintf(err, errlen, "an empty value is not allowed");
            return -1;
        }
        if (strcmp(f->name, "hostname") == 0 && !valid_hostname(v)) {
            snprintf(err, errlen, "\"%s\" is not a hostname an HTTPRoute accepts (lower-case "
                     "DNS name, optionally starting with \"*.\", not an IP address)", v);
            return -1;
        }
        if (list_append((char ***)p, v) == 0)
            return 0;
        break;
    case T_EXTRA:
        return extra_append(c, v, err, errlen);
    }
    snprintf(err, errlen, "out of memory");
    return -1;
}

static void clear_value(struct config *c, const struct flag *f)
{
    if (f->type == T_LIST)
        list_clear((char ***)field(c, f));
    else if (f->type == T_EXTRA)
        extra_clear(c);
}

/* An environment value: lists take comma-separated items. */
static int set_from_env(struct config *c, const struct flag *f, const char *v, char *err,
                        size_t errlen)
{
    char *copy, *item, *save = NULL;
    int rc = 0;

    if (f->type != T_LIST && f->type != T_EXTRA)
        return set_value(c, f, v, err, errlen);
    copy = strdup(v);
    if (copy == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (item = strtok_r(copy, ",", &save); item && rc == 0; item = strtok_r(NULL, ",", &save))
        rc = set_value(c, f, item, err, errlen);
    free(copy);
    return rc;
}

static bool is_bool_word(const char *v)
{
    bool b;

    return parse_bool(v, &b) == 0;
}

static int fail(FILE *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(FILE *err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return -1;
    fputs(PROG ": ", err);
    va_start(ap, fmt);
    vfprintf(err, fmt, ap);
    va_end(ap);
    fputc('\n', err);
    return -1;
}

static int parse_command(struct config *c, const char *word, bool *have, FILE *err)
{
    if (*have)
        return fail(err, "unexpected argument \"%s\"", word);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(word, commands[i].name) == 0) {
            c->command = commands[i].command;
            *have = true;
            return 0;
        }
    }
    return fail(err, "unknown command \"%s\" (commands: run, render, check, version, help)",
                word);
}

/* The first path of a KUBECONFIG list ("a:b"), as the host reads one file. */
static int kubeconfig_from_env(struct config *c, char **envp)
{
    const char *v = lookup_env(envp, "KUBECONFIG");
    size_t n;
    char *copy;

    if (v == NULL)
        return 0;
    while (*v == ':')
        v++;
    n = strcspn(v, ":");
    if (n == 0)
        return 0;
    copy = strndup(v, n);
    if (copy == NULL)
        return -ENOMEM;
    free(c->kubeconfig);
    c->kubeconfig = copy;
    return 0;
}

int config_parse(struct config *c, int argc, char **argv, char **envp, FILE *err)
{
    bool seen_env[NFLAGS] = {false};
    bool seen_arg[NFLAGS] = {false};
    bool have_command = false;
    char problem[256];
    char env[80];
    size_t k;

    memset(c, 0, sizeof *c);
    c->command = CMD_RUN;
    if (envp == NULL)
        envp = environ;

    for (k = 0; k < NFLAGS; k++) {
        if (flags[k].def != NULL && set_value(c, &flags[k], flags[k].def, problem,
                                               sizeof problem) != 0) {
            fail(err, "default of --%s: %s", flags[k].name, problem);
            goto error;
        }
    }

    for (k = 0; k < NFLAGS; k++) {
        const char *v;
        env_name(&flags[k], env, sizeof env);
        v = lookup_env(envp, env);
        /* An empty variable counts as unset: charts often render "". */
        if (v == NULL || *v == '\0')
            continue;
        seen_env[k] = true;
        clear_value(c, &flags[k]);
        if (set_from_env(c, &flags[k], v, problem, sizeof problem) != 0) {
            fail(err, "%s: %s", env, problem);
            goto error;
        }
    }

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *name, *eq, *v;
        const struct flag *f;
        size_t len;

        /* Asking for help or the version wins over whatever else is there. */
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            c->command = CMD_HELP;
            break;
        }
        if (strcmp(a, "--version") == 0) {
            c->command = CMD_VERSION;
            break;
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (parse_command(c, a, &have_command, err) != 0)
                goto error;
            continue;
        }
        name = a[1] == '-' ? a + 2 : a + 1;
        eq = strchr(name, '=');
        len = eq ? (size_t)(eq - name) : strlen(name);
        f = a[1] == '-' ? find_flag(name, len) : NULL;
        if (f == NULL) {
            fail(err, "unknown flag %.*s (see " PROG " help)", (int)(name - a + (long)len), a);
            goto error;
        }
        k = (size_t)(f - flags);
        if (eq != NULL)
            v = eq + 1;
        else if (f->type == T_BOOL)
            v = i + 1 < argc && is_bool_word(argv[i + 1]) ? argv[++i] : "true";
        else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
            v = argv[++i];
        else {
            fail(err, "--%s needs a value (%s)", f->name, f->arg);
            goto error;
        }
        /* Repeated flags add up, but replace what the environment gave. */
        if (!seen_arg[k])
            clear_value(c, f);
        seen_arg[k] = true;
        if (set_value(c, f, v, problem, sizeof problem) != 0) {
            fail(err, "--%s: %s", f->name, problem);
            goto error;
        }
    }

    k = (size_t)(find_flag("kubeconfig", strlen("kubeconfig")) - flags);
    if (!seen_arg[k] && !seen_env[k] && kubeconfig_from_env(c, envp) != 0) {
        fail(err, "out of memory");
        goto error;
    }
    if (c->hostnames == NULL && list_append(&c->hostnames, "") == 0) {
        /* An empty NULL-terminated list, so readers need no NULL check. */
        free(c->hostnames[0]);
        c->hostnames[0] = NULL;
    }
    if (c->hostnames == NULL) {
        fail(err, "out of memory");
        goto error;
    }
    if (c->command == CMD_RENDER && c->pod_file[0] == '\0') {
        fail(err, "render needs --pod FILE");
        goto error;
    }
    return 0;

error:
    config_free(c);
    return -1;
}

void config_free(struct config *c)
{
    for (size_t k = 0; k < NFLAGS; k++) {
        const struct flag *f = &flags[k];
        if (f->type == T_STRING) {
            free(*(char **)field(c, f));
            *(char **)field(c, f) = NULL;
        } else
            clear_value(c, f);
    }
}

static void describe_default(const struct flag *f, char *out, size_t len)
{
    if (f->def == NULL)
        snprintf(out, len, "none");
    else if (f->type == T_STRING)
        snprintf(out, len, "\"%s\"", f->def);
    else
        snprintf(out, len, "%s", f->def);
}

void config_usage(FILE *out)
{
    char env[80], def[64];

    fputs("envoy-router keeps a Service, an EndpointSlice and an HTTPRoute for every pod\n"
          "labelled envoy-router/enabled=true, so one Envoy Gateway routes /<pod-name>.\n"
          "\n"
          "Usage:\n"
          "  " PROG " [run] [flags]             run the operator (the default)\n"
          "  " PROG " render --pod FILE [flags] print the children a pod would get\n"
          "  " PROG " check [flags]             validate the scripts directory\n"
          "  " PROG " version                   print the version\n"
          "  " PROG " help                      print this text\n"
          "\n"
          "Flags take \"--flag VALUE\" or \"--flag=VALUE\"; booleans also a bare --flag.\n"
          "Each flag can also be set by the environment variable shown; the command\n"
          "line wins over the environment, which wins over the default. An empty\n"
          "variable counts as unset.\n"
          "\n",
          out);
    for (size_t k = 0; k < NFLAGS; k++) {
        const struct flag *f = &flags[k];
        env_name(f, env, sizeof env);
        describe_default(f, def, sizeof def);
        fprintf(out, "  --%s %s\n      %s\n      env %s, default %s\n", f->name, f->arg,
                f->help, env, def);
    }
}
