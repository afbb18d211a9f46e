/* Tests of kubeconfig.c: fixtures in host/test/data/kubeconfig/, temporary
 * files for absolute paths and the in-cluster layout. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kubeconfig.h"

static char data_dir[1024];

/* The fixtures sit beside this file, wherever the test is run from. */
static void find_data_dir(void)
{
    const char *slash = strrchr(__FILE__, '/');
    int n = slash ? (int)(slash - __FILE__) : 1;

    snprintf(data_dir, sizeof(data_dir), "%.*s/data/kubeconfig", n, slash ? __FILE__ : ".");
}

static const char *fixture(const char *name)
{
    static char path[1100];

    snprintf(path, sizeof(path), "%s/%s", data_dir, name);
    return path;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void load_ok(const char *file, const char *context, struct kube_auth *a)
{
    char err[512] = "";
    int rc = kubeconfig_load(fixture(file), context, a, err, sizeof(err));

    if (rc != 0)
        print_error("unexpected error: %s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(err, "");
}

/* Loads and expects failure with exactly `want` after "kubeconfig <path>: ". */
static void load_fails(const char *file, const char *context, const char *want)
{
    struct kube_auth a;
    char err[2048] = "", expect[2048];

    memset(&a, 0x5a, sizeof(a));
    assert_int_equal(kubeconfig_load(fixture(file), context, &a, err, sizeof(err)), -1);
    snprintf(expect, sizeof(expect), "kubeconfig %s: %s", fixture(file), want);
    assert_string_equal(err, expect);
    assert_null(strchr(err, '\n'));
    /* nothing half-filled is handed back */
    assert_null(a.server);
    assert_null(a.ca_pem);
    assert_null(a.token);
    kube_auth_free(&a);
}

static void test_inline_data_current_context(void **state)
{
    struct kube_auth a;

    (void)state;
    load_ok("inline.yaml", NULL, &a);
    assert_string_equal(a.server, "https://dev.example:6443");
    assert_non_null(a.ca_pem);
    assert_int_equal(a.ca_len, 10);
    assert_memory_equal(a.ca_pem, "inline ca\n", 10);
    assert_int_equal(a.cert_len, 12);
    assert_string_equal(a.cert_pem, "inline cert\n");
    assert_int_equal(a.key_len, 11);
    assert_string_equal(a.key_pem, "inline key\n");
    assert_false(a.insecure);
    assert_null(a.token);
    assert_null(a.token_file);
    assert_string_equal(a.namespace, "team-a");
    kube_auth_free(&a);
    assert_null(a.server);
    kube_auth_free(&a);   /* twice is fine: the struct was zeroed */
}

static void test_named_context_token_ipv6(void **state)
{
    struct kube_auth a;

    (void)state;
    load_ok("inline.yaml", "prod", &a);
    assert_string_equal(a.server, "https://[fd00::1]:443");
    assert_true(a.insecure);
    assert_null(a.ca_pem);
    assert_int_equal(a.ca_len, 0);
    assert_null(a.cert_pem);
    assert_null(a.key_pem);
    assert_string_equal(a.token, "static-token-123");
    assert_null(a.token_file);
    assert_null(a.namespace);
    kube_auth_free(&a);
}

static void test_relative_file_paths(void **state)
{
    struct kube_auth a;
    const char *ca = "-----BEGIN CERTIFICATE-----\nfixture ca\n-----END CERTIFICATE-----\n";
    const char *cert = "-----BEGIN CERTIFICATE-----\nfixture client\n-----END CERTIFICATE-----\n";
    const char *key = "-----BEGIN PRIVATE KEY-----\nfixture key\n-----END PRIVATE KEY-----\n";

    (void)state;
    load_ok("files.yaml", NULL, &a);
    assert_string_equal(a.server, "http://127.0.0.1:8080");
    assert_string_equal(a.ca_pem, ca);
    assert_int_equal(a.ca_len, strlen(ca));
    assert_string_equal(a.cert_pem, cert);
    assert_int_equal(a.cert_len, strlen(cert));
    assert_string_equal(a.key_pem, key);
    assert_int_equal(a.key_len, strlen(key));
    assert_null(a.token);
    assert_null(a.token_file);
    kube_auth_free(&a);
}

static void test_token_file_resolved_not_read(void **state)
{
    struct kube_auth a;
    char want[1100];

    (void)state;
    load_ok("files.yaml", "token-file", &a);
    snprintf(want, sizeof(want), "%s/token", data_dir);
    assert_string_equal(a.token_file, want);
    assert_null(a.token);
    assert_null(a.cert_pem);
    assert_non_null(a.ca_pem);   /* the cluster's CA still comes along */
    kube_auth_free(&a);
}

static void test_context_without_user(void **state)
{
    struct kube_auth a;

    (void)state;
    load_ok("files.yaml", "anonymous", &a);
    assert_string_equal(a.server, "http://127.0.0.1:8080");
    assert_null(a.cert_pem);
    assert_null(a.key_pem);
    assert_null(a.token);
    assert_null(a.token_file);
    kube_auth_free(&a);
}

static void test_absolute_paths_and_wrapped_base64(void **state)
{
    char dir[] = "/tmp/kubeconfig-test-XXXXXX", ca[128], cfg[128], text[1024];
    struct kube_auth a;
    char err[512] = "";

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    snprintf(cfg, sizeof(cfg), "%s/config", dir);
    write_file(ca, "absolute ca\n");
    /* "a long key for a client\n" in base64, wrapped over three lines the way
     * a plain multi-line scalar folds */
    snprintf(text, sizeof(text),
             "current-context: x\n"
             "clusters:\n- name: c\n  cluster:\n    server: https://h\n"
             "    certificate-authority: %s\n"
             "contexts:\n- name: x\n  context: {cluster: c, user: u}\n"
             "users:\n- name: u\n  user:\n"
             "    client-certificate-data: aW5saW5l\n"
             "    client-key-data: YSBsb25nIGtl\n      eSBmb3IgYSBj\n      bGllbnQK\n"
             "    token: t\n    tokenFile: /run/token\n",
             ca);
    write_file(cfg, text);
    assert_int_equal(kubeconfig_load(cfg, NULL, &a, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_string_equal(a.ca_pem, "absolute ca\n");
    assert_string_equal(a.cert_pem, "inline");
    assert_string_equal(a.key_pem, "a long key for a client\n");
    assert_int_equal(a.key_len, 24);
    assert_string_equal(a.token, "t");
    assert_string_equal(a.token_file, "/run/token");
    kube_auth_free(&a);
    unlink(ca);
    unlink(cfg);
    rmdir(dir);
}

static void test_bad_yaml_reports_line(void **state)
{
    (void)state;
    load_fails("bad-yaml.yaml", NULL,
               "line 7: while parsing a block mapping did not find expected key");
}

static void test_missing_file(void **state)
{
    struct kube_auth a;
    char err[512];

    (void)state;
    assert_int_equal(kubeconfig_load("/nonexistent/kubeconfig", NULL, &a, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "kubeconfig /nonexistent/kubeconfig: No such file or directory");
    assert_null(a.server);
}

static void test_missing_and_wrong_fields(void **state)
{
    (void)state;
    load_fails("broken.yaml", NULL, "line 7: cluster no-server has no server");
    load_fails("broken.yaml", "bad-scheme",
               "line 10: cluster bad-scheme: server must start with https:// or http://: "
               "ftp://x");
    load_fails("broken.yaml", "bad-bool",
               "line 14: cluster bad-bool: insecure-skip-tls-verify is not a boolean: maybe");
    load_fails("broken.yaml", "bad-base64",
               "line 18: cluster bad-base64: certificate-authority-data is not valid base64");
    {
        char want[1400];

        snprintf(want, sizeof(want),
                 "cluster missing-ca: certificate-authority %s/missing/ca.pem: "
                 "No such file or directory", data_dir);
        load_fails("broken.yaml", "missing-ca", want);
    }
    load_fails("broken.yaml", "no-cluster", "line 38: context no-cluster names no cluster");
    load_fails("broken.yaml", "unknown-cluster", "cluster elsewhere not found in clusters");
    load_fails("broken.yaml", "unknown-user", "user nobody not found in users");
    load_fails("broken.yaml", "exec",
               "line 50: user exec-user: only client certificates and tokens are supported "
               "(not exec, auth-provider or basic auth)");
    load_fails("broken.yaml", "half-cert",
               "line 54: user half-cert: client-certificate and client-key go together");
    load_fails("broken.yaml", "nope", "context nope not found in contexts");
}

static void test_no_current_context(void **state)
{
    struct kube_auth a;

    (void)state;
    load_fails("no-current.yaml", NULL, "no current-context set and no context given");
    load_ok("no-current.yaml", "c", &a);   /* naming it works */
    assert_string_equal(a.server, "https://c");
    kube_auth_free(&a);
}

static void test_not_a_list(void **state)
{
    (void)state;
    load_fails("not-a-list.yaml", NULL, "line 3: contexts is not a list");
}

static void test_empty_file(void **state)
{
    char dir[] = "/tmp/kubeconfig-test-XXXXXX", cfg[128], err[512], want[600];
    struct kube_auth a;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(cfg, sizeof(cfg), "%s/config", dir);
    write_file(cfg, "");
    assert_int_equal(kubeconfig_load(cfg, NULL, &a, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "kubeconfig %s: the file is empty", cfg);
    assert_string_equal(err, want);
    write_file(cfg, "- a\n- b\n");
    assert_int_equal(kubeconfig_load(cfg, NULL, &a, err, sizeof(err)), -1);
    snprintf(want, sizeof(want),
             "kubeconfig %s: line 1: not a kubeconfig (the top level is not a mapping)", cfg);
    assert_string_equal(err, want);
    unlink(cfg);
    rmdir(dir);
}

/* --- in-cluster ---------------------------------------------------------- */

struct sa_root {
    char root[64];
    char dir[256];
};

static void make_sa_root(struct sa_root *s, bool with_token, const char *ns)
{
    char path[512], p[300];

    snprintf(s->root, sizeof(s->root), "/tmp/in-cluster-test-XXXXXX");
    assert_non_null(mkdtemp(s->root));
    snprintf(s->dir, sizeof(s->dir), "%s/var/run/secrets/kubernetes.io/serviceaccount",
             s->root);
    /* mkdir -p */
    for (char *c = strchr(s->dir + strlen(s->root) + 1, '/'); ; c = strchr(c + 1, '/')) {
        snprintf(p, sizeof(p), "%.*s", c ? (int)(c - s->dir) : (int)strlen(s->dir), s->dir);
        assert_true(mkdir(p, 0700) == 0 || errno == EEXIST);
        if (!c)
            break;
    }
    snprintf(path, sizeof(path), "%s/ca.crt", s->dir);
    write_file(path, "cluster ca\n");
    if (with_token) {
        snprintf(path, sizeof(path), "%s/token", s->dir);
        write_file(path, "sa-token\n");
    }
    if (ns) {
        snprintf(path, sizeof(path), "%s/namespace", s->dir);
        write_file(path, ns);
    }
}

static void remove_sa_root(struct sa_root *s)
{
    static const char *const files[] = { "ca.crt", "token", "namespace" };
    char path[512];

    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", s->dir, files[i]);
        unlink(path);
    }
    /* remove the directories from the deepest up */
    for (;;) {
        char *slash = strrchr(s->dir, '/');

        assert_int_equal(rmdir(s->dir), 0);
        if (strcmp(s->dir, s->root) == 0 || !slash)
            break;
        *slash = '\0';
    }
}

static void test_in_cluster_ipv4(void **state)
{
    struct sa_root s;
    struct kube_auth a;
    char err[512] = "", want[600];

    (void)state;
    make_sa_root(&s, true, "router-system\n");
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    assert_int_equal(kubeconfig_in_cluster(s.root, &a, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_string_equal(a.server, "https://10.96.0.1:443");
    assert_string_equal(a.ca_pem, "cluster ca\n");
    assert_int_equal(a.ca_len, 11);
    snprintf(want, sizeof(want), "%s/token", s.dir);
    assert_string_equal(a.token_file, want);
    assert_null(a.token);    /* read (and re-read) by kube.c */
    assert_string_equal(a.namespace, "router-system");
    assert_false(a.insecure);
    kube_auth_free(&a);
    remove_sa_root(&s);
}

static void test_in_cluster_ipv6_no_namespace(void **state)
{
    struct sa_root s;
    struct kube_auth a;
    char err[512] = "";

    (void)state;
    make_sa_root(&s, true, NULL);
    setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
    assert_int_equal(kubeconfig_in_cluster(s.root, &a, err, sizeof(err)), 0);
    assert_string_equal(a.server, "https://[fd00:10:96::1]:6443");
    assert_null(a.namespace);
    kube_auth_free(&a);
    remove_sa_root(&s);
}

static void test_in_cluster_errors(void **state)
{
    struct sa_root s;
    struct kube_auth a;
    char err[512] = "", want[600];

    (void)state;
    make_sa_root(&s, false, "ns");
    unsetenv("KUBERNETES_SERVICE_HOST");
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    assert_int_equal(kubeconfig_in_cluster(s.root, &a, err, sizeof(err)), -1);
    assert_string_equal(err, "in-cluster config: KUBERNETES_SERVICE_HOST and "
                        "KUBERNETES_SERVICE_PORT must be set (outside a cluster, pass "
                        "--kubeconfig)");
    assert_null(a.server);

    setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "https", 1);
    assert_int_equal(kubeconfig_in_cluster(s.root, &a, err, sizeof(err)), -1);
    assert_string_equal(err, "in-cluster config: KUBERNETES_SERVICE_PORT is not a port: https");

    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    assert_int_equal(kubeconfig_in_cluster(s.root, &a, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "in-cluster config: token %s/token: No such file or directory",
             s.dir);
    assert_string_equal(err, want);
    assert_null(a.server);
    assert_null(a.ca_pem);
    remove_sa_root(&s);

    assert_int_equal(kubeconfig_in_cluster("/nonexistent-root", &a, err, sizeof(err)), -1);
    assert_string_equal(err, "in-cluster config: CA /nonexistent-root/var/run/secrets/"
                        "kubernetes.io/serviceaccount/ca.crt: No such file or directory");
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inline_data_current_context),
        cmocka_unit_test(test_named_context_token_ipv6),
        cmocka_unit_test(test_relative_file_paths),
        cmocka_unit_test(test_token_file_resolved_not_read),
        cmocka_unit_test(test_context_without_user),
        cmocka_unit_test(test_absolute_paths_and_wrapped_base64),
        cmocka_unit_test(test_bad_yaml_reports_line),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_missing_and_wrong_fields),
        cmocka_unit_test(test_no_current_context),
        cmocka_unit_test(test_not_a_list),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_in_cluster_ipv4),
        cmocka_unit_test(test_in_cluster_ipv6_no_namespace),
        cmocka_unit_test(test_in_cluster_errors),
    };

    find_data_dir();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
