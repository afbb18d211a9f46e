/* file: see file.h. */
#include "file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define CHUNK 4096

char *file_read(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int err = 0;

    if (f == NULL)
        return NULL;
    for (;;) {
        /* Room for one byte past max, so a file just over it shows. */
        if (cap - n <= CHUNK && cap < max + 2) {
            size_t want = cap ? cap * 2 : CHUNK * 2;
            if (want > max + 2)
                want = max + 2;
            char *p = realloc(buf, want);
            if (p == NULL) {
                err = ENOMEM;
                break;
            }
            buf = p;
            cap = want;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n > max) {
            err = EFBIG;
            break;
        }
        if (got == 0)
            break;
    }
    if (err == 0 && ferror(f))
        err = EIO;
    fclose(f);
    if (err != 0) {
        free(buf);
        errno = err;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}
