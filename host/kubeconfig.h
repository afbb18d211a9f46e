/* kubeconfig: where the API server is and how to authenticate to it, from a
 * kubeconfig file (read with libyaml) or from the in-cluster service account. */
#ifndef ENVOY_ROUTER_KUBECONFIG_H
#define ENVOY_ROUTER_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>

struct kube_auth {
    char *server;      /* "https://host:port", no trailing slash */
    char *ca_pem;      /* CA bundle (PEM) to verify the server; NULL = system CAs */
    size_t ca_len;
    bool insecure;     /* insecure-skip-tls-verify: true (tests only) */
    char *cert_pem;    /* client certificate (PEM) or NULL */
    size_t cert_len;
    char *key_pem;     /* client key (PEM) or NULL */
    size_t key_len;
    char *token;       /* static bearer token or NULL */
    char *token_file;  /* bearer token file, re-read as it rotates, or NULL */
    char *namespace;   /* the context's namespace / the pod's namespace, or NULL */
};

/* Reads the kubeconfig at `path`, context `context` (NULL: current-context),
 * and fills *out: server, certificate-authority(-data), client-certificate
 * (-data), client-key(-data), token, tokenFile, insecure-skip-tls-verify.
 * Relative file paths are resolved against the kubeconfig's directory; file
 * contents are read now (except tokenFile). Returns 0, or -1 with one line in
 * err (missing file, YAML error with line, unknown context, no server). */
int kubeconfig_load(const char *path, const char *context, struct kube_auth *out,
                    char *err, size_t errlen);

/* In-cluster: server from KUBERNETES_SERVICE_HOST/PORT (IPv6 hosts get
 * brackets), CA from <root>/var/run/secrets/kubernetes.io/serviceaccount/ca.crt,
 * token_file set to .../token, namespace from .../namespace. `root` is "" in
 * production and a test directory in tests. Returns 0, or -1 with err. */
int kubeconfig_in_cluster(const char *root, struct kube_auth *out, char *err, size_t errlen);

/* Frees the strings; safe on a zeroed struct. */
void kube_auth_free(struct kube_auth *a);

#endif
