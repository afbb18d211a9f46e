/* Fuzz target: kubeconfig YAML (host/kubeconfig.c, libyaml underneath).
 * The input is written to a file (kubeconfig_load reads a path) and loaded
 * with the current context and with a named one. Invariants: no sanitizer
 * report; success means a server was found; failure always says why.
 *
 *   make fuzz-build && build/fuzz/fuzz_kubeconfig host/fuzz/corpus/kubeconfig */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kubeconfig.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_output(fopen("/dev/null", "w"));   /* quiet */
    snprintf(path, sizeof path, "/tmp/fuzz-kubeconfig-%d.yaml", (int)getpid());
    return 0;
}

static void load(const char *context)
{
    struct kube_auth a = {0};
    char err[512];
    err[0] = '\0';
    if (kubeconfig_load(path, context, &a, err, sizeof err) == 0) {
        if (a.server == NULL || a.server[0] == '\0')
            abort();
    } else if (err[0] == '\0') {
        abort();
    }
    kube_auth_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        abort();
    fwrite(data, 1, size, f);
    fclose(f);
    load(NULL);
    load("dev");
    unlink(path);
    return 0;
}
