/* kubepath: the resources the host knows and their URL paths (see kubepath.h). */
#include "kubepath.h"

#include <errno.h>
#include <string.h>

static const struct kube_resource resources[] = {
    { "v1", "Pod", "pods", true },
    { "v1", "Service", "services", true },
    { "discovery.k8s.io/v1", "EndpointSlice", "endpointslices", true },
    { "gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes", true },
    { "coordination.k8s.io/v1", "Lease", "leases", true },
    { "v1", "Event", "events", true },
    { "events.k8s.io/v1", "Event", "events", true },
};

const struct kube_resource *kube_resource_find(const char *api_version, const char *kind)
{
    if (!api_version || !kind)
        return NULL;
    for (size_t i = 0; i < sizeof(resources) / sizeof(resources[0]); i++)
        if (strcmp(resources[i].api_version, api_version) == 0 &&
            strcmp(resources[i].kind, kind) == 0)
            return &resources[i];
    return NULL;
}

/* A bounded string builder: `over` sticks once anything did not fit. */
struct sb {
    char *buf;
    size_t cap, len;
    bool over;
};

static void sb_put(struct sb *b, const char *s, size_t n)
{
    if (b->over || n >= b->cap - b->len) {
        b->over = true;
        return;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void sb_str(struct sb *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* Percent-escapes everything but RFC 3986 unreserved characters. */
static void sb_escaped(struct sb *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            sb_put(b, (const char *)&ch, 1);
        } else {
            char e[3] = { '%', hex[ch >> 4], hex[ch & 15] };

            sb_put(b, e, 3);
        }
    }
}

/* "", "." and ".." would name another path once joined. */
static bool bad_segment(const char *s)
{
    return !*s || strcmp(s, ".") == 0 || strcmp(s, "..") == 0;
}

int kube_path(char *buf, size_t len, const struct kube_resource *r, const char *ns,
              const char *name, const char *query)
{
    struct sb b = { buf, len, 0, false };

    if (!buf || len == 0)
        return -ENAMETOOLONG;
    buf[0] = '\0';
    if (!r || (name && bad_segment(name)) || (ns && *ns && bad_segment(ns)))
        return -EINVAL;
    if (r->namespaced && name && !(ns && *ns))
        return -EINVAL;
    sb_str(&b, strchr(r->api_version, '/') ? "/apis/" : "/api/");
    sb_str(&b, r->api_version);
    if (r->namespaced && ns && *ns) {
        sb_str(&b, "/namespaces/");
        sb_escaped(&b, ns);
    }
    sb_str(&b, "/");
    sb_str(&b, r->plural);
    if (name) {
        sb_str(&b, "/");
        sb_escaped(&b, name);
    }
    if (query && *query) {
        sb_str(&b, "?");
        sb_str(&b, query);
    }
    if (b.over) {
        buf[0] = '\0';
        return -ENAMETOOLONG;
    }
    return (int)b.len;
}

int kube_query_add(char *buf, size_t len, const char *key, const char *value)
{
    struct sb b;
    size_t old;

    if (!key)
        return -EINVAL;
    if (!buf || len == 0)
        return -ENAMETOOLONG;
    old = strnlen(buf, len);
    if (old == len)
        return -ENAMETOOLONG;
    b = (struct sb){ buf, len, old, false };
    if (old > 0)
        sb_str(&b, "&");
    sb_escaped(&b, key);
    sb_str(&b, "=");
    sb_escaped(&b, value ? value : "");
    if (b.over) {
        buf[old] = '\0';   /* leave the query as it was */
        return -ENAMETOOLONG;
    }
    return (int)b.len;
}
