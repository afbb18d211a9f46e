/* Fuzz target: a pod given as YAML or JSON into `envoy-router render`
 * (yamljson.c, then core.lua's projection, the built-in scripts in the
 * sandbox, the host's checks and stamps). Invariants: no sanitizer report;
 * a result is a JSON array; failure always says why.
 *
 *   make fuzz-build && build/fuzz/fuzz_render host/fuzz/corpus/render */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core.h"
#include "log.h"
#include "sandbox.h"
#include "yamljson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct config cfg = {
    .gateway_name = "envoy-router", .gateway_namespace = "", .service_port = 80,
    .pod_port = 8080, .headless = true,
};
static struct sandbox *sb;
static struct core *core;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[1024];
    log_set_output(fopen("/dev/null", "w"));   /* quiet */
    sb = sandbox_new(NULL, &cfg, NULL, err, sizeof err);
    core = sb ? core_new(sb, NULL, NULL, err, sizeof err) : NULL;
    if (core == NULL) {
        fprintf(stderr, "fuzz_render: %s\n", err);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[4096];
    size_t len = 0;
    err[0] = '\0';
    char *json = yamljson_convert((const char *)data, size, &len, err, sizeof err);
    if (json == NULL) {
        if (err[0] == '\0')
            abort();
        return 0;
    }
    err[0] = '\0';
    char *out = core_render(core, json, len, err, sizeof err);
    if (out != NULL) {
        if (out[0] != '[')
            abort();                    /* render prints a JSON array */
    } else if (err[0] == '\0') {
        abort();
    }
    free(out);
    free(json);
    return 0;
}
