/* sandbox: the Lua VM that runs users' scripts (router.lua and templates).
 *
 * Each sandbox is its own lua_State with a capped allocator, an instruction
 * budget per call, and only base/string/table/math/utf8 functions from an
 * allow-list: no io, os, debug, package, load, dofile, print. No finalizers
 * (setmetatable refuses __gc: a finalizer would run unbudgeted at lua_close).
 * The C functions that loop without the hook seeing them are bounded:
 * pattern matching refuses patterns whose backtracking could exceed a step
 * cap on the subject given, string.rep and the table functions charge their
 * loop counts to the instruction budget, and the hook also stops a call past
 * its CPU-time limit. Output is copied out with a cap on nodes and bytes.
 * `require`
 * resolves modules among the scripts only: "<dir>/a/b.lua", then the flat
 * "<dir>/a.b.lua" (a ConfigMap cannot hold directories), then the built-in
 * scripts; text chunks only. A reload builds a new sandbox; the old one stays
 * in use until the new one has proven itself. Main loop only. */
#ifndef ENVOY_ROUTER_SANDBOX_H
#define ENVOY_ROUTER_SANDBOX_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct sandbox;

struct sandbox_limits {
    size_t memory_bytes;    /* cap on the VM's heap; 0: 64 MiB */
    uint64_t instructions;  /* budget per call (load included); 0: 20 million */
    unsigned cpu_ms;        /* CPU time per call (load included); 0: 2000 ms */
};

/* Caps on one call's output (children) as copied into the host's state. */
#define SANDBOX_MAX_OUTPUT_NODES 100000u
#define SANDBOX_MAX_OUTPUT_BYTES (16u << 20)

/* Loads router.lua from `dir` (NULL or "": the built-in scripts), checks that
 * it returns a table with a string `selector` and a function `children`, and
 * keeps `cfg` to build the config table of every call (`cfg` must outlive the
 * sandbox). Returns NULL with the error (file:line and traceback when the
 * script raised) in err. Free with sandbox_free. */
struct sandbox *sandbox_new(const char *dir, const struct config *cfg,
                            const struct sandbox_limits *lim, char *err, size_t errlen);

/* Closes the VM; sandbox_free(NULL) does nothing. */
void sandbox_free(struct sandbox *s);

/* The label selector router.lua asked for. Valid while s lives. */
const char *sandbox_selector(const struct sandbox *s);

/* The config the sandbox was made with (scripts see it as `config`). */
const struct config *sandbox_config(const struct sandbox *s);

/* Where the scripts came from: the directory, or "built-in". */
const char *sandbox_origin(const struct sandbox *s);

/* Runs router.children(pod, config) with a copy of the pod table at L[pod_idx]
 * (L is another state: the host's core). Returns 1 with the list of children
 * copied onto L's stack; 0 with nil pushed onto L and the script's reason in
 * msg ("not for us"); -1 with nothing pushed and the error in msg (error with
 * traceback, instruction budget, memory cap, a result that is not a list).
 * Never raises into L except on memory errors of L itself. */
int sandbox_children(struct sandbox *s, lua_State *L, int pod_idx, char *msg, size_t msglen);

/* The modules loaded so far, one line each: "name<TAB>dir<TAB>path" for a
 * file of the scripts directory, "name<TAB>built-in<TAB>path" for a
 * built-in one. Valid until the next call into s. */
const char *sandbox_modules(const struct sandbox *s);

/* Whether router.lua sets pod_annotations = true: only then are pod
 * annotations kept in the host's cache and passed to children(); without
 * it, a script reading pod.metadata.annotations fails with an error that
 * says so. */
bool sandbox_wants_annotations(const struct sandbox *s);

/* Bytes the sandbox VM holds now (for metrics and tests). */
size_t sandbox_memory(const struct sandbox *s);

#endif
