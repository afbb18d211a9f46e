/* kubepath: the Kubernetes resources the host reads and writes, and the
 * URL paths and query strings of calls on them, escaped so that a name
 * never steps out of its path segment. Pure functions, no allocation. */
#ifndef ENVOY_ROUTER_KUBEPATH_H
#define ENVOY_ROUTER_KUBEPATH_H

#include <stdbool.h>
#include <stddef.h>

/* The resources the host reads and writes. */
struct kube_resource {
    const char *api_version;  /* "v1", "discovery.k8s.io/v1", ... */
    const char *kind;         /* "Pod", "Service", ... */
    const char *plural;       /* "pods", "services", ... */
    bool namespaced;
};

/* The resource for apiVersion+kind among Pod, Service, EndpointSlice,
 * HTTPRoute, Lease, Event (core and events.k8s.io); NULL if not one of them. */
const struct kube_resource *kube_resource_find(const char *api_version, const char *kind);

/* Writes the path of resource r in namespace ns ("" or NULL: all namespaces
 * / cluster scope), object `name` (NULL: the collection), plus "?query" if
 * query is non-empty, into buf. Name and namespace are escaped. Returns the
 * length, -ENAMETOOLONG if it does not fit, or -EINVAL for no resource, a
 * name or namespace of "", "." or "..", or a namespaced name without a
 * namespace. */
int kube_path(char *buf, size_t len, const struct kube_resource *r, const char *ns,
              const char *name, const char *query);

/* Appends "key=value" (value percent-escaped) to a query string in buf,
 * with "&" when buf is not empty. Returns the new length or -ENAMETOOLONG
 * (buf then unchanged); -EINVAL when key is NULL. */
int kube_query_add(char *buf, size_t len, const char *key, const char *value);

#endif
