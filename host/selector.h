/* selector: Kubernetes label selector syntax, checked in the host so a
 * reload whose selector the API server would refuse (400 on every LIST and
 * WATCH) never replaces the running scripts. */
#ifndef ENVOY_ROUTER_SELECTOR_H
#define ENVOY_ROUTER_SELECTOR_H

#include <stddef.h>

/* Checks `sel` against the label selector grammar the API server parses
 * (labels.Parse): comma-separated requirements `key`, `!key`, `key=v`,
 * `key==v`, `key!=v`, `key in (v1,v2)`, `key notin (v1,v2)`, `key>N`,
 * `key<N`, with qualified label keys, label values and unsigned integers
 * where due (as kube-apiserver 1.36 refuses "n<-2"); blanks between
 * tokens; "" selects everything. Returns 0, or -1 with
 * what is wrong (and where) in err. */
int selector_check(const char *sel, char *err, size_t errlen);

#endif
