/* names: the checks Kubernetes applies to names, written as small scanners
 * (no regex engine) so they are cheap enough to run on every object. */
#include "names.h"

#include <string.h>

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* n bytes of [a-z0-9-] starting and ending with [a-z0-9]; n >= 1. */
static bool dns_part(const char *s, size_t n)
{
    if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
        return false;
    for (size_t i = 1; i + 1 < n; i++)
        if (!is_lower_alnum(s[i]) && s[i] != '-')
            return false;
    return true;
}

/* n bytes of [A-Za-z0-9-_.] starting and ending alphanumeric; n in 1..63. */
static bool label_name(const char *s, size_t n)
{
    if (n == 0 || n > 63 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
        return false;
    for (size_t i = 1; i + 1 < n; i++)
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

static bool subdomain(const char *s, size_t n)
{
    size_t start = 0;

    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (!dns_part(s + start, i - start))
                return false;
            start = i + 1;
        }
    }
    return true;
}

bool names_dns1123_label(const char *s)
{
    size_t n;

    if (s == NULL)
        return false;
    n = strlen(s);
    return n <= 63 && dns_part(s, n);
}

bool names_dns1035_label(const char *s)
{
    return names_dns1123_label(s) && s[0] >= 'a' && s[0] <= 'z';
}

bool names_dns1123_subdomain(const char *s)
{
    return s != NULL && subdomain(s, strlen(s));
}

bool names_label_value(const char *s)
{
    size_t n;

    if (s == NULL)
        return false;
    n = strlen(s);
    return n == 0 || label_name(s, n);
}

bool names_label_key(const char *s)
{
    const char *slash;

    if (s == NULL)
        return false;
    slash = strchr(s, '/');
    if (slash == NULL)
        return label_name(s, strlen(s));
    /* Exactly one '/', and the prefix before it must be a non-empty DNS
     * subdomain. */
    if (strchr(slash + 1, '/') != NULL)
        return false;
    return subdomain(s, (size_t)(slash - s)) && label_name(slash + 1, strlen(slash + 1));
}
