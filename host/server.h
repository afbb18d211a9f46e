/* server: the metrics and health endpoints, served by libmicrohttpd on its
 * own thread.
 *
 * GET /metrics on the metrics address; GET /healthz and /readyz on the
 * health address (the two may be the same address, then one daemon serves
 * all three). /healthz answers 200 "ok" while the main loop has ticked within
 * the last `stall_seconds`; /readyz answers 200 once server_set_ready(true)
 * was called, 503 with the reason otherwise. Anything else is 404. The server
 * reads only atomics and the metrics registry. */
#ifndef ENVOY_ROUTER_SERVER_H
#define ENVOY_ROUTER_SERVER_H

#include <stdbool.h>

struct server;

/* Starts serving. Addresses are "host:port", ":port" (all interfaces) or
 * "0"/"" to disable that endpoint set; port 0 picks a free port (see
 * server_port). Returns NULL and logs one clear line on failure (bad
 * address, port in use). */
struct server *server_start(const char *metrics_addr, const char *health_addr,
                            int stall_seconds);

/* Stops the daemon(s) and frees; server_stop(NULL) does nothing. */
void server_stop(struct server *s);

/* Actual ports bound (useful with port 0); 0 when that set is disabled. */
int server_metrics_port(const struct server *s);
int server_health_port(const struct server *s);

/* Readiness and its reason when not ready (copied). Thread-safe. */
void server_set_ready(struct server *s, bool ready, const char *reason);

/* Marks the main loop alive now (call every loop iteration). Thread-safe. */
void server_heartbeat(struct server *s);

#endif
