/* Fuzz target: bytes from the API server into the core decoder, as the
 * watch and list paths feed them (host/lines.c framing, then core.lua's
 * decode and caches through core_watch_event / core_list_page).
 *
 * Input: byte 0 picks the resource (pods or a child kind) and whether the
 * rest is a watch stream (split into lines) or one list body. Each input
 * gets a fresh core, so a crash reproduces from its file alone. Invariants:
 * no sanitizer report, errors come back as -1 with a message, never raise.
 *
 *   make fuzz-build && build/fuzz/fuzz_watch host/fuzz/corpus/watch */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "lines.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static const char *const resources[4] = {"pods", "services", "endpointslices", "httproutes"};

struct feed {
    struct core *core;
    const char *res;
};

static void enqueue(void *arg, const char *key)
{
    (void)arg;
    if (key == NULL || strchr(key, '/') == NULL)
        abort();                        /* keys are always "namespace/name" */
}

static int on_line(void *arg, const char *line, size_t len)
{
    struct feed *f = arg;
    char *rv = NULL, err[256];
    long code = 0;
    err[0] = '\0';
    if (core_watch_event(f->core, f->res, line, len, &rv, &code, err, sizeof err) != 0 &&
        err[0] == '\0')
        abort();                        /* a failure always says why */
    free(rv);
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_output(fopen("/dev/null", "w"));   /* quiet */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char err[256];
    struct core *core = core_new(NULL, enqueue, NULL, err, sizeof err);
    if (core == NULL)
        abort();
    struct feed f = {core, resources[data[0] & 3]};
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] & 4) {
        char *rv = NULL, *cont = NULL;
        core_list_begin(core, f.res);
        if (core_list_page(core, f.res, body, len, &rv, &cont, err, sizeof err) == 0)
            core_list_end(core, f.res);
        free(rv);
        free(cont);
    } else {
        struct lines *l = lines_new(1 << 20);
        lines_feed(l, body, len, on_line, &f);
        lines_free(l);
    }
    core_enqueue_all(core);
    size_t managed, pods, children;
    core_stats(core, &managed, &pods, &children);
    if (managed > pods)
        abort();
    core_free(core);
    return 0;
}
