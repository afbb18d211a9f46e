/* kubeconfig: credentials from a kubeconfig file (libyaml's document API) or
 * from the in-cluster service account (see kubeconfig.h). */
#include "kubeconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "dup.h"
#include "file.h"

#define FILE_MAX ((size_t)4 << 20)   /* a kubeconfig, a CA bundle, a key */
#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* One kubeconfig being read: where errors go and what relative paths mean. */
struct kc {
    const char *path;
    char *dir;
    yaml_document_t doc;
    char *err;
    size_t errlen;
};

static void kc_fail(struct kc *kc, const yaml_node_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void kc_fail(struct kc *kc, const yaml_node_t *at, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (at)
        snprintf(kc->err, kc->errlen, "kubeconfig %s: line %zu: %s", kc->path,
                 at->start_mark.line + 1, msg);
    else
        snprintf(kc->err, kc->errlen, "kubeconfig %s: %s", kc->path, msg);
}

static int b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

/* Decodes standard base64, ignoring whitespace (line-wrapped PEM bundles).
 * Returns a malloc'd NUL-terminated buffer, or NULL when invalid or out of
 * memory. */
static char *b64_decode(const char *in, size_t *outlen)
{
    size_t n = strlen(in), o = 0, chars = 0, pad = 0;
    unsigned acc = 0, bits = 0;
    char *out = malloc(n / 4 * 3 + 4);

    if (!out)
        return NULL;
    for (const char *p = in; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        int v;

        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
            continue;
        if (ch == '=') {
            pad++;
            continue;
        }
        v = b64_value(ch);
        if (v < 0 || pad > 0)
            goto bad;
        chars++;
        acc = ((acc << 6) | (unsigned)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (chars % 4 == 1 || pad > 2 || (pad > 0 && (chars + pad) % 4 != 0))
        goto bad;
    out[o] = '\0';
    *outlen = o;
    return out;
bad:
    free(out);
    return NULL;
}

static yaml_node_t *node_at(struct kc *kc, int id)
{
    return yaml_document_get_node(&kc->doc, id);
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* A plain empty, "~" or "null" scalar means "not set". */
static bool is_null(const yaml_node_t *n)
{
    const char *s = scalar(n);

    return s && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (!*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
            strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0);
}

/* The value under `key` in mapping `map`, or NULL. */
static yaml_node_t *map_get(struct kc *kc, const yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(node_at(kc, p->key));

        if (k && strcmp(k, key) == 0) {
            yaml_node_t *v = node_at(kc, p->value);

            return is_null(v) ? NULL : v;
        }
    }
    return NULL;
}

/* The string under `key`: 0 with *out NULL when absent, -1 when not a scalar. */
static int get_str(struct kc *kc, const yaml_node_t *map, const char *key, const char *where,
                   const char **out)
{
    yaml_node_t *v = map_get(kc, map, key);

    *out = NULL;
    if (!v)
        return 0;
    if (v->type != YAML_SCALAR_NODE) {
        kc_fail(kc, v, "%s%s%s is not a string", where, *where ? ": " : "", key);
        return -1;
    }
    *out = scalar(v);
    return 0;
}

/* Finds the entry named `name` in the list `list` ("clusters", ...) and
 * returns its `inner` mapping ("cluster", ...); NULL with the error set. */
static yaml_node_t *find_named(struct kc *kc, const yaml_node_t *root, const char *list,
                               const char *inner, const char *name)
{
    yaml_node_t *seq = map_get(kc, root, list);

    if (seq && seq->type != YAML_SEQUENCE_NODE) {
        kc_fail(kc, seq, "%s is not a list", list);
        return NULL;
    }
    for (yaml_node_item_t *it = seq ? seq->data.sequence.items.start : NULL;
         seq && it < seq->data.sequence.items.top; it++) {
        yaml_node_t *entry = node_at(kc, *it);
        const char *n = scalar(map_get(kc, entry, "name"));
        yaml_node_t *m;

        if (!n || strcmp(n, name) != 0)
            continue;
        m = map_get(kc, entry, inner);
        if (!m) {
            kc_fail(kc, entry, "%s %s has no %s", inner, name, inner);
            return NULL;
        }
        if (m->type != YAML_MAPPING_NODE) {
            kc_fail(kc, m, "%s %s: %s is not a mapping", inner, name, inner);
            return NULL;
        }
        return m;
    }
    kc_fail(kc, NULL, "%s %s not found in %s", inner, name, list);
    return NULL;
}

/* `p` as given when absolute, else relative to the kubeconfig's directory. */
static char *resolve(struct kc *kc, const char *p)
{
    size_t nd, np;
    char *r;

    if (p[0] == '/')
        return strdup(p);
    nd = strlen(kc->dir);
    np = strlen(p);
    r = malloc(nd + np + 2);
    if (r) {
        memcpy(r, kc->dir, nd);
        r[nd] = '/';
        memcpy(r + nd + 1, p, np + 1);
    }
    return r;
}

/* Fills *buf from the base64 field `data_key` or else the file named by
 * `path_key`. 0 (possibly with *buf NULL when neither is set) or -1. */
static int load_pem(struct kc *kc, const yaml_node_t *map, const char *where,
                    const char *data_key, const char *path_key, char **buf, size_t *len)
{
    const char *data, *path;
    char *full;

    *buf = NULL;
    *len = 0;
    if (get_str(kc, map, data_key, where, &data) < 0 ||
        get_str(kc, map, path_key, where, &path) < 0)
        return -1;
    if (data) {   /* the inline data wins over a file, as kubectl has it */
        *buf = b64_decode(data, len);
        if (!*buf) {
            kc_fail(kc, map_get(kc, map, data_key), "%s: %s is not valid base64", where,
                    data_key);
            return -1;
        }
        return 0;
    }
    if (!path)
        return 0;
    full = resolve(kc, path);
    if (!full) {
        kc_fail(kc, NULL, "out of memory");
        return -1;
    }
    *buf = file_read(full, FILE_MAX, len);
    if (!*buf) {
        kc_fail(kc, NULL, "%s: %s %s: %s", where, path_key, full, strerror(errno));
        free(full);
        return -1;
    }
    free(full);
    return 0;
}

static int parse_bool(struct kc *kc, const yaml_node_t *map, const char *key, const char *where,
                      bool *out)
{
    static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes", "on", "On" };
    static const char *const no[] = { "false", "False", "FALSE", "no", "No", "off", "Off" };
    const char *s;

    *out = false;
    if (get_str(kc, map, key, where, &s) < 0)
        return -1;
    if (!s)
        return 0;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, no[i]) == 0)
            return 0;
    }
    kc_fail(kc, map_get(kc, map, key), "%s: %s is not a boolean: %s", where, key, s);
    return -1;
}

static bool valid_server(const char *s)
{
    return strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0;
}

static int fill(struct kc *kc, const char *context, struct kube_auth *a)
{
    yaml_node_t *root = yaml_document_get_root_node(&kc->doc);
    yaml_node_t *ctx, *cluster, *user = NULL;
    const char *name, *cluster_name, *user_name, *ns, *server, *token, *token_file;
    char where[300];
    bool oom = false;
    size_t n;

    if (!root) {
        kc_fail(kc, NULL, "the file is empty");
        return -1;
    }
    if (root->type != YAML_MAPPING_NODE) {
        kc_fail(kc, root, "not a kubeconfig (the top level is not a mapping)");
        return -1;
    }
    name = context;
    if (!name && get_str(kc, root, "current-context", "", &name) < 0)
        return -1;
    if (!name || !*name) {
        kc_fail(kc, NULL, "no current-context set and no context given");
        return -1;
    }
    ctx = find_named(kc, root, "contexts", "context", name);
    if (!ctx)
        return -1;
    snprintf(where, sizeof(where), "context %s", name);
    if (get_str(kc, ctx, "cluster", where, &cluster_name) < 0 ||
        get_str(kc, ctx, "user", where, &user_name) < 0 ||
        get_str(kc, ctx, "namespace", where, &ns) < 0)
        return -1;
    if (!cluster_name || !*cluster_name) {
        kc_fail(kc, ctx, "context %s names no cluster", name);
        return -1;
    }
    cluster = find_named(kc, root, "clusters", "cluster", cluster_name);
    if (!cluster)
        return -1;
    if (user_name && *user_name) {
        user = find_named(kc, root, "users", "user", user_name);
        if (!user)
            return -1;
    }

    snprintf(where, sizeof(where), "cluster %s", cluster_name);
    if (get_str(kc, cluster, "server", where, &server) < 0)
        return -1;
    if (!server || !*server) {
        kc_fail(kc, cluster, "cluster %s has no server", cluster_name);
        return -1;
    }
    if (!valid_server(server)) {
        kc_fail(kc, map_get(kc, cluster, "server"),
                "cluster %s: server must start with https:// or http://: %s", cluster_name,
                server);
        return -1;
    }
    a->server = dup_str(server, &oom);
    a->namespace = ns && *ns ? dup_str(ns, &oom) : NULL;
    if (oom)
        goto nomem;
    n = strlen(a->server);
    while (n > 0 && a->server[n - 1] == '/')
        a->server[--n] = '\0';
    if (load_pem(kc, cluster, where, "certificate-authority-data", "certificate-authority",
                 &a->ca_pem, &a->ca_len) < 0 ||
        parse_bool(kc, cluster, "insecure-skip-tls-verify", where, &a->insecure) < 0)
        return -1;
    if (!user)
        return 0;

    snprintf(where, sizeof(where), "user %s", user_name);
    if (load_pem(kc, user, where, "client-certificate-data", "client-certificate",
                 &a->cert_pem, &a->cert_len) < 0 ||
        load_pem(kc, user, where, "client-key-data", "client-key", &a->key_pem,
                 &a->key_len) < 0 ||
        get_str(kc, user, "token", where, &token) < 0 ||
        get_str(kc, user, "tokenFile", where, &token_file) < 0)
        return -1;
    if ((a->cert_pem != NULL) != (a->key_pem != NULL)) {
        kc_fail(kc, user, "user %s: client-certificate and client-key go together",
                user_name);
        return -1;
    }
    a->token = token && *token ? dup_str(token, &oom) : NULL;
    if (token_file && *token_file && !(a->token_file = resolve(kc, token_file)))
        oom = true;
    if (oom)
        goto nomem;
    if (!a->cert_pem && !a->token && !a->token_file &&
        (map_get(kc, user, "exec") || map_get(kc, user, "auth-provider") ||
         map_get(kc, user, "username"))) {
        kc_fail(kc, user, "user %s: only client certificates and tokens are supported "
                "(not exec, auth-provider or basic auth)", user_name);
        return -1;
    }
    return 0;
nomem:
    kc_fail(kc, NULL, "out of memory");
    return -1;
}

int kubeconfig_load(const char *path, const char *context, struct kube_auth *out,
                    char *err, size_t errlen)
{
    struct kc kc = { .path = path, .err = err, .errlen = errlen };
    struct kube_auth a = { 0 };
    yaml_parser_t parser;
    bool parser_ok = false, doc_ok = false;
    char *text = NULL, *slash;
    size_t len = 0;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    text = file_read(path, FILE_MAX, &len);
    if (!text) {
        snprintf(err, errlen, "kubeconfig %s: %s", path, strerror(errno));
        goto done;
    }
    kc.dir = strdup(path);
    if (!kc.dir) {
        kc_fail(&kc, NULL, "out of memory");
        goto done;
    }
    slash = strrchr(kc.dir, '/');
    if (!slash)
        strcpy(kc.dir, ".");
    else if (slash == kc.dir)
        slash[1] = '\0';   /* "/config": the root; "/" + "/x" still resolves */
    else
        *slash = '\0';
    if (!yaml_parser_initialize(&parser)) {
        kc_fail(&kc, NULL, "out of memory");
        goto done;
    }
    parser_ok = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &kc.doc)) {
        if (parser.problem && parser.context)
            snprintf(err, errlen, "kubeconfig %s: line %zu: %s %s", path,
                     parser.problem_mark.line + 1, parser.context, parser.problem);
        else
            snprintf(err, errlen, "kubeconfig %s: line %zu: %s", path,
                     parser.problem_mark.line + 1,
                     parser.problem ? parser.problem : "invalid YAML");
        goto done;
    }
    doc_ok = true;
    if (fill(&kc, context, &a) < 0)
        goto done;
    *out = a;
    memset(&a, 0, sizeof(a));
    rc = 0;
done:
    kube_auth_free(&a);
    if (doc_ok)
        yaml_document_delete(&kc.doc);
    if (parser_ok)
        yaml_parser_delete(&parser);
    free(kc.dir);
    free(text);
    return rc;
}

/* Joins root and a path under it. */
static char *under_root(const char *root, const char *p)
{
    size_t nr = strlen(root), np = strlen(p);
    char *r = malloc(nr + np + 1);

    if (r) {
        memcpy(r, root, nr);
        memcpy(r + nr, p, np + 1);
    }
    return r;
}

int kubeconfig_in_cluster(const char *root, struct kube_auth *out, char *err, size_t errlen)
{
    struct kube_auth a = { 0 };
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    char *ca_path = NULL, *ns_path = NULL, *ns = NULL;
    size_t n = 0;
    FILE *f;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (!root)
        root = "";
    if (!host || !*host || !port || !*port) {
        snprintf(err, errlen, "in-cluster config: KUBERNETES_SERVICE_HOST and "
                 "KUBERNETES_SERVICE_PORT must be set (outside a cluster, pass --kubeconfig)");
        return -1;
    }
    if (strspn(port, "0123456789") != strlen(port)) {
        snprintf(err, errlen, "in-cluster config: KUBERNETES_SERVICE_PORT is not a port: %s",
                 port);
        return -1;
    }
    n = strlen(host) + strlen(port) + sizeof("https://[]:");
    a.server = malloc(n);
    ca_path = under_root(root, SA_DIR "/ca.crt");
    ns_path = under_root(root, SA_DIR "/namespace");
    a.token_file = under_root(root, SA_DIR "/token");
    if (!a.server || !ca_path || !ns_path || !a.token_file) {
        snprintf(err, errlen, "in-cluster config: out of memory");
        goto done;
    }
    /* An IPv6 literal needs brackets in a URL. */
    snprintf(a.server, n, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port);
    a.ca_pem = file_read(ca_path, FILE_MAX, &a.ca_len);
    if (!a.ca_pem) {
        snprintf(err, errlen, "in-cluster config: CA %s: %s", ca_path, strerror(errno));
        goto done;
    }
    /* The token is re-read by kube.c as it rotates; it must exist now. */
    f = fopen(a.token_file, "rb");
    if (!f) {
        snprintf(err, errlen, "in-cluster config: token %s: %s", a.token_file,
                 strerror(errno));
        goto done;
    }
    fclose(f);
    ns = file_read(ns_path, FILE_MAX, &n);
    if (ns) {
        while (n > 0 && (ns[n - 1] == '\n' || ns[n - 1] == '\r' || ns[n - 1] == ' '))
            ns[--n] = '\0';
        if (n > 0) {
            a.namespace = ns;
            ns = NULL;
        }
    }
    *out = a;
    memset(&a, 0, sizeof(a));
    rc = 0;
done:
    kube_auth_free(&a);
    free(ns);
    free(ca_path);
    free(ns_path);
    return rc;
}

void kube_auth_free(struct kube_auth *a)
{
    if (!a)
        return;
    free(a->server);
    free(a->ca_pem);
    free(a->cert_pem);
    free(a->key_pem);
    free(a->token);
    free(a->token_file);
    free(a->namespace);
    memset(a, 0, sizeof(*a));
}
