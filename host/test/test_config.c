/* Command line and environment, as a user types them and as a Deployment
 * sets them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"

#define ARGV(...) ((char *[]){"envoy-router", __VA_ARGS__, NULL})
#define ARGC(v) ((int)(sizeof(v) / sizeof(v[0])) - 1)

static char *no_env[] = {NULL};

/* Parses and expects success; the error stream must stay empty. */
static void parse_ok(struct config *c, int argc, char **argv, char **envp)
{
    char *err = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&err, &len);
    int rc = config_parse(c, argc, argv, envp, f);

    fclose(f);
    if (rc != 0 || len != 0)
        fail_msg("config_parse failed (%d): %s", rc, err);
    free(err);
}

/* Parses, expects failure with exactly `want` (plus newline) written. */
static void parse_err(int argc, char **argv, char **envp, const char *want)
{
    struct config c;
    char *err = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&err, &len);
    int rc = config_parse(&c, argc, argv, envp, f);
    char line[512];

    fclose(f);
    snprintf(line, sizeof line, "%s\n", want);
    assert_int_equal(rc, -1);
    assert_string_equal(err, line);
    /* Freed on error: nothing left to leak or to use by mistake. */
    assert_null(c.gateway_name);
    assert_null(c.hostnames);
    assert_null(c.extra);
    free(err);
}

static void test_defaults(void **state)
{
    struct config c;
    char *argv[] = {"envoy-router", NULL};
    (void)state;

    parse_ok(&c, 1, argv, no_env);
    assert_int_equal(c.command, CMD_RUN);
    assert_string_equal(c.metrics_addr, ":8080");
    assert_string_equal(c.health_addr, ":8081");
    assert_string_equal(c.gateway_name, "envoy-router");
    assert_string_equal(c.gateway_namespace, "");
    assert_int_equal(c.service_port, 80);
    assert_int_equal(c.pod_port, 8080);
    assert_non_null(c.hostnames);
    assert_null(c.hostnames[0]);
    assert_false(c.rewrite_prefix);
    assert_true(c.headless);
    assert_null(c.extra);
    assert_int_equal(c.n_extra, 0);
    assert_string_equal(c.watch_namespace, "");
    assert_string_equal(c.kubeconfig, "");
    assert_string_equal(c.scripts_dir, "");
    assert_string_equal(c.pod_file, "");
    assert_false(c.leader_elect);
    assert_string_equal(c.leader_election_id, "envoy-router");
    assert_string_equal(c.leader_election_namespace, "");
    assert_string_equal(c.identity, "");
    assert_int_equal(c.max_concurrent_writes, 16);
    assert_true(c.kube_api_qps == 0);
    assert_int_equal(c.kube_api_burst, 100);
    assert_int_equal(c.resync_seconds, 600);
    assert_int_equal(c.shutdown_grace_seconds, 10);
    assert_int_equal(c.log_level, LOG_INFO);
    assert_false(c.log_json);
    config_free(&c);
    config_free(&c); /* twice is harmless */
}

static void test_every_flag(void **state)
{
    struct config c;
    char *argv[] = {"envoy-router", "--metrics-bind-address", ":9090",
                    "--health-probe-bind-address=127.0.0.1:9091",
                    "--gateway-name", "gw", "--gateway-namespace=infra",
                    "--service-port", "81", "--pod-port=9000",
                    "--hostname", "a.example.com", "--hostname=b.example.com",
                    "--rewrite-prefix", "--headless-services=false",
                    "--extra", "team=data", "--extra=query=a=b",
                    "--watch-namespace", "ns1", "--kubeconfig", "/k/config",
                    "--scripts-dir", "/etc/scripts", "--leader-elect",
                    "--leader-election-id", "lease", "--leader-election-namespace", "lns",
                    "--identity", "me", "--max-concurrent-writes", "4",
                    "--kube-api-qps", "12.5", "--kube-api-burst", "30",
                    "--resync-period", "10m", "--shutdown-grace-period=30s",
                    "--log-level", "debug", "--log-format", "json", NULL};
    (void)state;

    parse_ok(&c, ARGC(argv), argv, no_env);
    assert_string_equal(c.metrics_addr, ":9090");
    assert_string_equal(c.health_addr, "127.0.0.1:9091");
    assert_string_equal(c.gateway_name, "gw");
    assert_string_equal(c.gateway_namespace, "infra");
    assert_int_equal(c.service_port, 81);
    assert_int_equal(c.pod_port, 9000);
    assert_string_equal(c.hostnames[0], "a.example.com");
    assert_string_equal(c.hostnames[1], "b.example.com");
    assert_null(c.hostnames[2]);
    assert_true(c.rewrite_prefix);
    assert_false(c.headless);
    assert_int_equal(c.n_extra, 2);
    assert_string_equal(c.extra[0].key, "team");
    assert_string_equal(c.extra[0].value, "data");
    assert_string_equal(c.extra[1].key, "query");
    assert_string_equal(c.extra[1].value, "a=b");
    assert_string_equal(c.watch_namespace, "ns1");
    assert_string_equal(c.kubeconfig, "/k/config");
    assert_string_equal(c.scripts_dir, "/etc/scripts");
    assert_true(c.leader_elect);
    assert_string_equal(c.leader_election_id, "lease");
    assert_string_equal(c.leader_election_namespace, "lns");
    assert_string_equal(c.identity, "me");
    assert_int_equal(c.max_concurrent_writes, 4);
    assert_true(c.kube_api_qps == 12.5);
    assert_int_equal(c.kube_api_burst, 30);
    assert_int_equal(c.resync_seconds, 600);
    assert_int_equal(c.shutdown_grace_seconds, 30);
    assert_int_equal(c.log_level, LOG_DEBUG);
    assert_true(c.log_json);
    config_free(&c);
}

static void test_booleans(void **state)
{
    struct config c;
    (void)state;

    /* A following boolean word is the value ... */
    parse_ok(&c, 3, ARGV("--leader-elect", "no"), no_env);
    assert_false(c.leader_elect);
    config_free(&c);
    parse_ok(&c, 2, ARGV("--headless-services=0"), no_env);
    assert_false(c.headless);
    config_free(&c);
    parse_ok(&c, 3, ARGV("--rewrite-prefix", "1"), no_env);
    assert_true(c.rewrite_prefix);
    config_free(&c);
    /* ... anything else is not: the flag is bare and the word is the
     * command. */
    parse_ok(&c, 3, ARGV("--leader-elect", "check"), no_env);
    assert_true(c.leader_elect);
    assert_int_equal(c.command, CMD_CHECK);
    config_free(&c);
}

static void test_commands(void **state)
{
    struct config c;
    (void)state;

    parse_ok(&c, 2, ARGV("run"), no_env);
    assert_int_equal(c.command, CMD_RUN);
    config_free(&c);
    parse_ok(&c, 4, ARGV("--log-level", "warn", "check"), no_env);
    assert_int_equal(c.command, CMD_CHECK);
    assert_int_equal(c.log_level, LOG_WARN);
    config_free(&c);
    parse_ok(&c, 4, ARGV("render", "--pod", "pod.yaml"), no_env);
    assert_int_equal(c.command, CMD_RENDER);
    assert_string_equal(c.pod_file, "pod.yaml");
    config_free(&c);
    parse_ok(&c, 2, ARGV("version"), no_env);
    assert_int_equal(c.command, CMD_VERSION);
    config_free(&c);
    parse_ok(&c, 2, ARGV("help"), no_env);
    assert_int_equal(c.command, CMD_HELP);
    config_free(&c);
    /* Help and version win over anything after them, even errors. */
    parse_ok(&c, 3, ARGV("--help", "--no-such-flag"), no_env);
    assert_int_equal(c.command, CMD_HELP);
    config_free(&c);
    parse_ok(&c, 3, ARGV("render", "-h"), no_env);
    assert_int_equal(c.command, CMD_HELP);
    config_free(&c);
    parse_ok(&c, 2, ARGV("--version"), no_env);
    assert_int_equal(c.command, CMD_VERSION);
    config_free(&c);
}

static void test_environment(void **state)
{
    struct config c;
    char *env[] = {
        "PATH=/usr/bin",
        "ENVOY_ROUTER_SERVICE_PORT=99",
        "ENVOY_ROUTER_HOSTNAME=a.example.com,b.example.com",
        "ENVOY_ROUTER_EXTRA=k1=v1,k2=v2",
        "ENVOY_ROUTER_LEADER_ELECT=yes",
        "ENVOY_ROUTER_LOG_FORMAT=json",
        "ENVOY_ROUTER_RESYNC_PERIOD=1h",
        "ENVOY_ROUTER_GATEWAY_NAMESPACE=",          /* empty: unset */
        "ENVOY_ROUTER_GATEWAY_NAME_X=ignored",      /* not a flag */
        "XENVOY_ROUTER_POD_PORT=1",                 /* not the prefix */
        NULL,
    };
    (void)state;

    parse_ok(&c, 1, ARGV(NULL), env);
    assert_int_equal(c.service_port, 99);
    assert_string_equal(c.hostnames[0], "a.example.com");
    assert_string_equal(c.hostnames[1], "b.example.com");
    assert_null(c.hostnames[2]);
    assert_int_equal(c.n_extra, 2);
    assert_string_equal(c.extra[1].key, "k2");
    assert_string_equal(c.extra[1].value, "v2");
    assert_true(c.leader_elect);
    assert_true(c.log_json);
    assert_int_equal(c.resync_seconds, 3600);
    assert_string_equal(c.gateway_namespace, "");
    assert_string_equal(c.gateway_name, "envoy-router");
    assert_int_equal(c.pod_port, 8080);
    config_free(&c);
}

static void test_flags_win_over_environment(void **state)
{
    struct config c;
    char *env[] = {
        "ENVOY_ROUTER_SERVICE_PORT=99",
        "ENVOY_ROUTER_HOSTNAME=a.example.com,b.example.com",
        "ENVOY_ROUTER_LEADER_ELECT=true",
        NULL,
    };
    (void)state;

    parse_ok(&c, 6, ARGV("--service-port", "100", "--hostname", "c.example.com",
                         "--leader-elect=false"),
             env);
    assert_int_equal(c.service_port, 100);
    /* A list given on the command line replaces the environment's. */
    assert_string_equal(c.hostnames[0], "c.example.com");
    assert_null(c.hostnames[1]);
    assert_false(c.leader_elect);
    config_free(&c);

    /* Repeating a scalar flag: the last one wins. */
    parse_ok(&c, 5, ARGV("--pod-port", "1", "--pod-port", "2"), env);
    assert_int_equal(c.pod_port, 2);
    config_free(&c);
}

static void test_process_environment(void **state)
{
    struct config c;
    (void)state;

    setenv("ENVOY_ROUTER_POD_PORT", "7000", 1);
    parse_ok(&c, 1, ARGV(NULL), NULL);
    assert_int_equal(c.pod_port, 7000);
    config_free(&c);
    unsetenv("ENVOY_ROUTER_POD_PORT");
}

static void test_kubeconfig_sources(void **state)
{
    struct config c;
    char *kube_only[] = {"KUBECONFIG=/home/u/.kube/config:/other", NULL};
    char *both[] = {"KUBECONFIG=/home/u/.kube/config", "ENVOY_ROUTER_KUBECONFIG=/e/config",
                    NULL};
    (void)state;

    parse_ok(&c, 1, ARGV(NULL), kube_only);
    assert_string_equal(c.kubeconfig, "/home/u/.kube/config");
    config_free(&c);
    parse_ok(&c, 1, ARGV(NULL), both);
    assert_string_equal(c.kubeconfig, "/e/config");
    config_free(&c);
    parse_ok(&c, 3, ARGV("--kubeconfig", "/f/config"), both);
    assert_string_equal(c.kubeconfig, "/f/config");
    config_free(&c);
    /* An explicit empty flag means in-cluster, even with KUBECONFIG set. */
    parse_ok(&c, 2, ARGV("--kubeconfig="), kube_only);
    assert_string_equal(c.kubeconfig, "");
    config_free(&c);
}

static void test_errors(void **state)
{
    char *bad_env_port[] = {"ENVOY_ROUTER_SERVICE_PORT=eighty", NULL};
    char *bad_env_bool[] = {"ENVOY_ROUTER_LEADER_ELECT=maybe", NULL};
    char *bad_env_extra[] = {"ENVOY_ROUTER_EXTRA=a=1,b", NULL};
    (void)state;

    parse_err(2, ARGV("--no-such-flag"), no_env,
              "envoy-router: unknown flag --no-such-flag (see envoy-router help)");
    parse_err(2, ARGV("--no-such-flag=3"), no_env,
              "envoy-router: unknown flag --no-such-flag (see envoy-router help)");
    parse_err(2, ARGV("-x"), no_env, "envoy-router: unknown flag -x (see envoy-router help)");
    parse_err(2, ARGV("deploy"), no_env,
              "envoy-router: unknown command \"deploy\" (commands: run, render, check, "
              "version, help)");
    parse_err(3, ARGV("check", "extra"), no_env,
              "envoy-router: unexpected argument \"extra\"");
    parse_err(2, ARGV("--gateway-name"), no_env,
              "envoy-router: --gateway-name needs a value (NAME)");
    parse_err(3, ARGV("--gateway-name", "--pod-port"), no_env,
              "envoy-router: --gateway-name needs a value (NAME)");
    parse_err(3, ARGV("--service-port", "8o"), no_env,
              "envoy-router: --service-port: \"8o\" is not a whole number");
    parse_err(2, ARGV("--service-port="), no_env,
              "envoy-router: --service-port: \"\" is not a whole number");
    parse_err(3, ARGV("--service-port", "70000"), no_env,
              "envoy-router: --service-port: 70000 is out of range 1..65535");
    parse_err(3, ARGV("--pod-port", "0"), no_env,
              "envoy-router: --pod-port: 0 is out of range 1..65535");
    parse_err(3, ARGV("--pod-port", "99999999999999999999"), no_env,
              "envoy-router: --pod-port: 99999999999999999999 is out of range 1..65535");
    parse_err(3, ARGV("--max-concurrent-writes", "0"), no_env,
              "envoy-router: --max-concurrent-writes: 0 is out of range 1..10000");
    parse_err(3, ARGV("--kube-api-qps", "fast"), no_env,
              "envoy-router: --kube-api-qps: \"fast\" is not a number");
    parse_err(3, ARGV("--kube-api-qps", "-1"), no_env,
              "envoy-router: --kube-api-qps: -1 must not be negative");
    parse_err(3, ARGV("--kube-api-qps", "nan"), no_env,
              "envoy-router: --kube-api-qps: \"nan\" is not a number");
    parse_err(3, ARGV("--resync-period", "10d"), no_env,
              "envoy-router: --resync-period: \"10d\" is not a duration (seconds, or a "
              "number with s, m or h)");
    parse_err(3, ARGV("--shutdown-grace-period", "2h"), no_env,
              "envoy-router: --shutdown-grace-period: 2h is out of range 0..3600 seconds");
    parse_err(2, ARGV("--leader-elect=maybe"), no_env,
              "envoy-router: --leader-elect: \"maybe\" is not a boolean "
              "(true/false/1/0/yes/no)");
    parse_err(3, ARGV("--log-level", "loud"), no_env,
              "envoy-router: --log-level: \"loud\" is not one of debug, info, warn, error");
    parse_err(3, ARGV("--log-format", "xml"), no_env,
              "envoy-router: --log-format: \"xml\" is not one of logfmt, json");
    parse_err(3, ARGV("--extra", "novalue"), no_env,
              "envoy-router: --extra: \"novalue\" is not KEY=VALUE");
    parse_err(3, ARGV("--extra", "=v"), no_env,
              "envoy-router: --extra: \"=v\" is not KEY=VALUE");
    parse_err(2, ARGV("--hostname="), no_env,
              "envoy-router: --hostname: an empty value is not allowed");
    parse_err(3, ARGV("--hostname", "Example.com"), no_env,
              "envoy-router: --hostname: \"Example.com\" is not a hostname an HTTPRoute "
              "accepts (lower-case DNS name, optionally starting with \"*.\", not an IP "
              "address)");
    parse_err(3, ARGV("--hostname", "10.0.0.1"), no_env,
              "envoy-router: --hostname: \"10.0.0.1\" is not a hostname an HTTPRoute "
              "accepts (lower-case DNS name, optionally starting with \"*.\", not an IP "
              "address)");
    parse_err(3, ARGV("--hostname", "a..b"), no_env,
              "envoy-router: --hostname: \"a..b\" is not a hostname an HTTPRoute "
              "accepts (lower-case DNS name, optionally starting with \"*.\", not an IP "
              "address)");
    parse_err(3, ARGV("--extra", "my key=v"), no_env,
              "envoy-router: --extra: key \"my key\" must be 1..63 letters, digits, '_', '.' "
              "or '-', starting with a letter or '_'");
    parse_err(3, ARGV("--extra", "1team=v"), no_env,
              "envoy-router: --extra: key \"1team\" must be 1..63 letters, digits, '_', '.' "
              "or '-', starting with a letter or '_'");
    parse_err(5, ARGV("--extra", "team=a", "--extra", "team=b"), no_env,
              "envoy-router: --extra: key \"team\" is given twice");
    parse_err(2, ARGV("render"), no_env, "envoy-router: render needs --pod FILE");
    parse_err(1, ARGV(NULL), bad_env_port,
              "envoy-router: ENVOY_ROUTER_SERVICE_PORT: \"eighty\" is not a whole number");
    parse_err(1, ARGV(NULL), bad_env_bool,
              "envoy-router: ENVOY_ROUTER_LEADER_ELECT: \"maybe\" is not a boolean "
              "(true/false/1/0/yes/no)");
    parse_err(1, ARGV(NULL), bad_env_extra,
              "envoy-router: ENVOY_ROUTER_EXTRA: \"b\" is not KEY=VALUE");
    /* A bad environment value is reported even when a flag would override
     * it: the Deployment is wrong either way. */
    parse_err(3, ARGV("--service-port", "80"), bad_env_port,
              "envoy-router: ENVOY_ROUTER_SERVICE_PORT: \"eighty\" is not a whole number");
}

static void test_usage_lists_every_flag(void **state)
{
    static const char *const lines[] = {
        "  --metrics-bind-address ADDR\n",
        "      env ENVOY_ROUTER_METRICS_BIND_ADDRESS, default \":8080\"\n",
        "      env ENVOY_ROUTER_HEALTH_PROBE_BIND_ADDRESS, default \":8081\"\n",
        "      env ENVOY_ROUTER_GATEWAY_NAME, default \"envoy-router\"\n",
        "      env ENVOY_ROUTER_GATEWAY_NAMESPACE, default \"\"\n",
        "  --service-port PORT\n      port of the Services created for pods\n"
        "      env ENVOY_ROUTER_SERVICE_PORT, default 80\n",
        "      env ENVOY_ROUTER_POD_PORT, default 8080\n",
        "      env ENVOY_ROUTER_HOSTNAME, default none\n",
        "      env ENVOY_ROUTER_REWRITE_PREFIX, default false\n",
        "      env ENVOY_ROUTER_HEADLESS_SERVICES, default true\n",
        "  --extra KEY=VALUE\n",
        "      env ENVOY_ROUTER_EXTRA, default none\n",
        "      env ENVOY_ROUTER_WATCH_NAMESPACE, default \"\"\n",
        "      env ENVOY_ROUTER_KUBECONFIG, default \"\"\n",
        "      env ENVOY_ROUTER_SCRIPTS_DIR, default \"\"\n",
        "      env ENVOY_ROUTER_POD, default \"\"\n",
        "      env ENVOY_ROUTER_LEADER_ELECT, default false\n",
        "      env ENVOY_ROUTER_LEADER_ELECTION_ID, default \"envoy-router\"\n",
        "      env ENVOY_ROUTER_LEADER_ELECTION_NAMESPACE, default \"\"\n",
        "      env ENVOY_ROUTER_IDENTITY, default \"\"\n",
        "      env ENVOY_ROUTER_MAX_CONCURRENT_WRITES, default 16\n",
        "      env ENVOY_ROUTER_KUBE_API_QPS, default 0\n",
        "      env ENVOY_ROUTER_KUBE_API_BURST, default 100\n",
        "      env ENVOY_ROUTER_RESYNC_PERIOD, default 600\n",
        "      env ENVOY_ROUTER_ROUTE_DRAIN_DELAY, default 2\n",
        "      env ENVOY_ROUTER_SHUTDOWN_GRACE_PERIOD, default 10\n",
        "      env ENVOY_ROUTER_LOG_LEVEL, default info\n",
        "      env ENVOY_ROUTER_LOG_FORMAT, default logfmt\n",
        "  envoy-router render --pod FILE [flags]",
        "  envoy-router check [flags]",
        "  envoy-router version",
        "  envoy-router help",
    };
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    int flags = 0;
    (void)state;

    config_usage(f);
    fclose(f);
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        if (strstr(text, lines[i]) == NULL)
            fail_msg("usage lacks \"%s\"", lines[i]);
    for (const char *p = text; (p = strstr(p, "\n  --")) != NULL; p++)
        flags++;
    assert_int_equal(flags, 26);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_flag),
        cmocka_unit_test(test_booleans),
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_environment),
        cmocka_unit_test(test_flags_win_over_environment),
        cmocka_unit_test(test_process_environment),
        cmocka_unit_test(test_kubeconfig_sources),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_usage_lists_every_flag),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
