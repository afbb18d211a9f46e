/* token: the bearer token the client sends. Either fixed (a kubeconfig's
 * `token`) or read from a file that rotates (a service account's projected
 * token, renewed by the kubelet): the file is looked at again at most once
 * a second and re-read when its identity, size or mtime changed, and at
 * once when asked (after a 401). A file that cannot be read, is empty, or
 * holds control characters, keeps the previous token. Main loop only. */
#ifndef ENVOY_ROUTER_TOKEN_H
#define ENVOY_ROUTER_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOKEN_MAX (64 * 1024)     /* bytes a token file may hold */
#define TOKEN_CHECK_MS 1000       /* the file is looked at no more often */

struct token;

/* New token from `file` (wins when given: it rotates; read now) or the
 * fixed `value`; both NULL: no token. Strings are copied. Returns NULL with
 * one line in err when the file cannot be read or out of memory. */
struct token *token_new(const char *file, const char *value, int64_t now_ms,
                        char *err, size_t errlen);

/* Frees it; token_free(NULL) does nothing. */
void token_free(struct token *t);

/* Looks at the file again when `force`, or when TOKEN_CHECK_MS have passed
 * since the last look at now_ms and it changed, and takes its content
 * (trailing white space dropped). Returns 0, or -errno (the old token is
 * kept; the caller reports): -ENODATA when nothing is left, -EINVAL for
 * control characters. Nothing to do for a fixed token. */
int token_refresh(struct token *t, bool force, int64_t now_ms);

/* The current token, or NULL when there is none. Valid until the next
 * refresh or token_free. */
const char *token_value(const struct token *t);

/* One line for a token_refresh error (-errno), "empty ..." for -ENODATA. */
const char *token_strerror(int rc);

/* The token file, or NULL for a fixed token (only a file can rotate). */
const char *token_file(const struct token *t);

#endif
