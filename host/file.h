/* file: reading a small file whole (a token, a CA bundle, a kubeconfig, a
 * script, a pod given to `render`). */
#ifndef ENVOY_ROUTER_FILE_H
#define ENVOY_ROUTER_FILE_H

#include <stddef.h>

/* Reads the file at `path` into a new buffer with a NUL after the last byte,
 * and sets *len to its length (a NUL inside the file is kept). The caller
 * frees the buffer. Returns NULL with errno set when the file cannot be
 * opened (errno from fopen: ENOENT, EACCES, ...), holds more than `max`
 * bytes (EFBIG), memory runs out (ENOMEM) or reading fails (EIO); then *len
 * is left alone. Works on files whose size stat cannot tell (pipes, /proc). */
char *file_read(const char *path, size_t max, size_t *len);

#endif
