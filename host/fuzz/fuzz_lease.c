/* Fuzz target: a Lease body from the API server into leader election's
 * reading and building of it (core.lua's lease_parse and lease_body through
 * core_lease_parse / core_lease_body), as host/leader.c uses them.
 *
 * Invariants: no sanitizer report; a failure always says why; a record
 * read holds no negative count; a Lease built on the body (or from
 * nothing) reads back as the record it was built with.
 *
 *   make fuzz-build && build/fuzz/fuzz_lease host/fuzz/corpus/lease */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The Lease functions keep no state in the core: one core serves all. */
static struct core *core;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[256];
    log_set_output(fopen("/dev/null", "w"));   /* quiet */
    if ((core = core_new(NULL, NULL, NULL, err, sizeof err)) == NULL) {
        fprintf(stderr, "fuzz_lease: %s\n", err);
        abort();
    }
    return 0;
}

/* Builds a Lease carrying *rec (on base, or new when base is NULL) and
 * checks that it reads back as *rec. */
static void round_trip(const char *base, size_t len, const struct core_lease *rec)
{
    struct core_lease back;
    char err[512] = "";
    size_t n = 0;
    char *body = core_lease_body(core, base, len, "ns", "lock", rec, &n, err, sizeof err);
    if (body == NULL) {
        if (err[0] == '\0')
            abort();                    /* a failure always says why */
        return;                         /* e.g. a base holding a number JSON cannot carry */
    }
    if (core_lease_parse(core, body, n, &back, err, sizeof err) != 0 ||
        strcmp(back.holder, rec->holder) != 0 || back.lease_seconds != rec->lease_seconds ||
        strcmp(back.acquire_time, rec->acquire_time) != 0 ||
        strcmp(back.renew_time, rec->renew_time) != 0 || back.transitions != rec->transitions)
        abort();                        /* what was written is what is read */
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct core_lease rec;
    char err[512] = "";
    const char *text = (const char *)data;

    if (core_lease_parse(core, text, size, &rec, err, sizeof err) != 0) {
        if (err[0] == '\0')
            abort();
        return 0;
    }
    if (rec.lease_seconds < 0 || rec.transitions < 0)
        abort();
    round_trip(text, size, &rec);
    round_trip(NULL, 0, &rec);
    return 0;
}
