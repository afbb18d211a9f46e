/* yamljson: YAML text (a pod file given to `render`) turned into JSON text
 * with libyaml, so the rest of the host reads one format. */
#ifndef ENVOY_ROUTER_YAMLJSON_H
#define ENVOY_ROUTER_YAMLJSON_H

#include <stddef.h>

/* Converts the first document of `text` (YAML or JSON) to JSON. Plain
 * scalars become null, booleans, integers or floats when they read as such
 * (YAML 1.2 core schema), quoted scalars stay strings. Aliases are refused.
 * Returns a malloc'd NUL-terminated string (its length in *out_len), or
 * NULL with "line N: problem" in err. Input starting with '{' or '[' is
 * returned as it is (copied). */
char *yamljson_convert(const char *text, size_t len, size_t *out_len, char *err, size_t errlen);

#endif
