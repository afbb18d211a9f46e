/* names: the Kubernetes name rules the host enforces on what scripts return. */
#ifndef ENVOY_ROUTER_NAMES_H
#define ENVOY_ROUTER_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* RFC 1035 label as Kubernetes checks Service names: 1..63 chars of
 * [a-z0-9-], starting with a letter, ending with a letter or digit. */
bool names_dns1035_label(const char *s);

/* RFC 1123 label (namespaces, label-ish names): 1..63 chars of [a-z0-9-],
 * starting and ending with a letter or digit. */
bool names_dns1123_label(const char *s);

/* RFC 1123 subdomain (most object names: pods, EndpointSlices, HTTPRoutes):
 * 1..253 chars, dot-separated parts of [a-z0-9-] each starting and ending
 * with a letter or digit. As in Kubernetes' own check, a part may be longer
 * than 63 chars: only the total is bounded. */
bool names_dns1123_subdomain(const char *s);

/* A label value: empty, or 1..63 chars of [A-Za-z0-9-_.] starting and ending
 * with an alphanumeric. */
bool names_label_value(const char *s);

/* A qualified label key: optional "<dns1123 subdomain>/" prefix then a name
 * of 1..63 chars [A-Za-z0-9-_.] starting and ending alphanumeric. */
bool names_label_key(const char *s);

#endif
