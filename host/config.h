/* config: command line and environment of the envoy-router binary.
 *
 * envoy-router [run] [flags]          the operator (default command)
 * envoy-router render --pod FILE [flags]
 * envoy-router check [flags]
 * envoy-router version | help
 *
 * Every flag --some-flag has the environment equivalent
 * ENVOY_ROUTER_SOME_FLAG; a flag given on the command line wins over the
 * environment, which wins over the default. Flags take "--flag value" or
 * "--flag=value"; booleans also accept a bare "--flag" and
 * true/false/1/0/yes/no. KUBECONFIG is honoured when --kubeconfig and
 * ENVOY_ROUTER_KUBECONFIG are unset. */
#ifndef ENVOY_ROUTER_CONFIG_H
#define ENVOY_ROUTER_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "log.h"

enum config_command { CMD_RUN, CMD_RENDER, CMD_CHECK, CMD_VERSION, CMD_HELP };

/* One --extra KEY=VALUE pair (repeatable), handed to scripts as
 * config.extra[KEY] = VALUE (strings). */
struct config_extra {
    char *key;
    char *value;
};

struct config {
    enum config_command command;

    /* serving */
    char *metrics_addr;          /* --metrics-bind-address ":8080"; "0" disables */
    char *health_addr;           /* --health-probe-bind-address ":8081" */

    /* what the scripts get (config table) */
    char *gateway_name;          /* --gateway-name "envoy-router" */
    char *gateway_namespace;     /* --gateway-namespace "" = the pod's namespace */
    int service_port;            /* --service-port 80 (1..65535) */
    int pod_port;                /* --pod-port 8080 (1..65535) */
    char **hostnames;            /* --hostname H (repeatable), NULL-terminated */
    bool rewrite_prefix;         /* --rewrite-prefix: strip /<pod> before the pod */
    bool headless;               /* --headless-services true: clusterIP None */
    struct config_extra *extra;  /* --extra KEY=VALUE (repeatable) */
    int n_extra;

    /* scope and sources */
    char *watch_namespace;       /* --watch-namespace "" = all namespaces */
    char *kubeconfig;            /* --kubeconfig, else $KUBECONFIG, else in-cluster */
    char *scripts_dir;           /* --scripts-dir "" = the built-in scripts */
    char *pod_file;              /* --pod FILE (render) */

    /* leader election */
    bool leader_elect;           /* --leader-elect false */
    char *leader_election_id;    /* --leader-election-id "envoy-router" */
    char *leader_election_namespace; /* --leader-election-namespace "" = own ns */
    char *identity;              /* --identity "" = hostname + "_" + random */

    /* pace */
    int max_concurrent_writes;   /* --max-concurrent-writes 16 (>= 1) */
    double kube_api_qps;         /* --kube-api-qps 0 = no client-side limit */
    int kube_api_burst;          /* --kube-api-burst 100 */
    int resync_seconds;          /* --resync-period 600 (0 disables) */
    int route_drain_seconds;     /* --route-drain-delay 2 */
    int shutdown_grace_seconds;  /* --shutdown-grace-period 10 */

    /* logs */
    enum log_level log_level;    /* --log-level info */
    bool log_json;               /* --log-format logfmt|json */
};

/* Fills *c from argv and the environment (envp as from main, or NULL for the
 * process environment). On error returns -1 and writes one line naming the
 * flag and the problem to `err` (unknown flag, missing value, bad number, port
 * out of range, unknown command); *c is then freed. Returns 0 on success. */
int config_parse(struct config *c, int argc, char **argv, char **envp, FILE *err);

/* Frees what config_parse allocated; safe on a zeroed struct. */
void config_free(struct config *c);

/* Prints the usage text: every command, flag, its environment variable and
 * default. */
void config_usage(FILE *out);

#endif
