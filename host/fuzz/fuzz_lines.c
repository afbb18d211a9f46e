/* Fuzz target for lines.c, the first code that touches bytes from the API
 * server.
 *
 * Input layout: byte 0 picks max_line (1..256), bytes 1-2 a split point,
 * byte 3 the line after which a callback stops once; the rest is the
 * stream. The stream is framed four ways (whole, cut at the split point,
 * in 1-byte chunks, whole with a callback that stops and is resumed) and
 * each must give what a naive reference framer gives: the same lines, the
 * same -E2BIG verdict, the same held tail. Every line must also obey the
 * contract (no '\n', not empty, at most max_line bytes; only one trailing
 * '\r' is removed, so "a\r\r\n" gives "a\r").
 *
 * With libFuzzer (clang only):
 *   clang -g -O1 -std=c11 -D_GNU_SOURCE -DFUZZ_WITH_LIBFUZZER \
 *     -fsanitize=fuzzer,address,undefined -Ihost \
 *     host/fuzz/fuzz_lines.c host/lines.c -o build/fuzz_lines
 *   build/fuzz_lines host/fuzz/corpus/lines
 * Without clang, the same file builds as a driver that runs each file named
 * on its command line (a corpus replay, e.g. under ASan or valgrind), and
 * with --mutate=N also N seeded random mutations of each file, a poor man's
 * fuzzer that still finds framing bugs:
 *   cc -g -std=c11 -D_GNU_SOURCE -fsanitize=address,undefined -Ihost \
 *     host/fuzz/fuzz_lines.c host/lines.c host/file.c -o build/fuzz_lines
 *   build/fuzz_lines --mutate=20000 host/fuzz/corpus/lines/(every file)
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"
#include "lines.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Lines joined with '\n' (a line never contains one), so two runs compare
 * with one memcmp. */
struct out {
    char *buf;
    size_t len, cap;
    size_t max_line;
    int stop_after;   /* stop once after this many lines; -1 never */
    int seen;
};

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_lines: invariant broken: %s\n", what);
        abort();
    }
}

static void out_add(struct out *o, const char *line, size_t len)
{
    if (o->len + len + 1 > o->cap) {
        size_t cap = (o->len + len + 1) * 2;
        char *p = realloc(o->buf, cap);
        check(p != NULL, "out of memory in the harness");
        o->buf = p;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, line, len);
    o->len += len;
    o->buf[o->len++] = '\n';
}

static int on_line(void *arg, const char *line, size_t len)
{
    struct out *o = arg;

    check(len > 0, "empty line delivered");
    check(len <= o->max_line, "line longer than max_line");
    check(memchr(line, '\n', len) == NULL, "line holds a newline");
    out_add(o, line, len);
    o->seen++;
    if (o->seen == o->stop_after) {
        o->stop_after = -1;
        return 42;
    }
    return 0;
}

/* The reference: split the whole stream at once, the obvious way. */
static void reference(const char *s, size_t n, size_t max_line, struct out *o,
                      int *too_long, size_t *tail)
{
    size_t start = 0;

    *too_long = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        if (s[i] != '\n')
            continue;
        len = i - start;
        if (len > 0 && s[i - 1] == '\r')
            len--;
        if (len > max_line) {
            *too_long = 1;
            return;
        }
        if (len > 0)
            out_add(o, s + start, len);
        start = i + 1;
    }
    *tail = n - start;
    /* A held tail may be one byte over while that byte is a CR. */
    if (*tail > max_line && (*tail > max_line + 1 || s[n - 1] != '\r'))
        *too_long = 1;
}

/* Feeds the pieces given by `cuts` (sorted offsets, ending with n). Returns
 * 1 if -E2BIG was reported. Resumes after a stop with empty feeds. */
static int run(const char *s, const size_t *cuts, size_t ncuts, struct out *o, size_t *tail)
{
    struct lines *l = lines_new(o->max_line);
    size_t from = 0;
    int rc = 0;

    check(l != NULL, "lines_new failed");
    for (size_t c = 0; c < ncuts && rc != -E2BIG; c++) {
        rc = lines_feed(l, s + from, cuts[c] - from, on_line, o);
        while (rc == 42)
            rc = lines_feed(l, NULL, 0, on_line, o);
        check(rc == 0 || rc == -E2BIG, "unexpected return value");
        from = cuts[c];
    }
    *tail = lines_pending(l);
    if (rc == -E2BIG)
        check(*tail == 0, "buffer not reset after -E2BIG");
    lines_free(l);
    return rc == -E2BIG;
}

static void compare(const struct out *want, int want_big, size_t want_tail,
                    const struct out *got, int got_big, size_t got_tail, const char *how)
{
    if (got->len != want->len || (want->len && memcmp(got->buf, want->buf, want->len)) ||
        got_big != want_big || (!want_big && got_tail != want_tail)) {
        fprintf(stderr, "fuzz_lines: %s differs from the reference\n", how);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct out want = {0}, got = {0};
    size_t max_line, split, n, want_tail = 0, got_tail = 0;
    int want_big, got_big, stop;
    const char *s;
    size_t *cuts;

    if (size < 4)
        return 0;
    max_line = (size_t)data[0] + 1;
    split = (size_t)data[1] << 8 | data[2];
    stop = data[3];
    s = (const char *)data + 4;
    n = size - 4;
    split = n ? split % (n + 1) : 0;

    want.max_line = max_line;
    want.stop_after = -1;
    reference(s, n, max_line, &want, &want_big, &want_tail);

    cuts = malloc((n + 2) * sizeof *cuts);
    check(cuts != NULL, "out of memory in the harness");

    /* Whole, with a stop after `stop` lines and resume. */
    got = (struct out){.max_line = max_line, .stop_after = stop};
    cuts[0] = n;
    got_big = run(s, cuts, 1, &got, &got_tail);
    compare(&want, want_big, want_tail, &got, got_big, got_tail, "whole");

    /* Cut at the data-derived point. */
    got.len = 0;
    got.seen = 0;
    got.stop_after = -1;
    cuts[0] = split;
    cuts[1] = n;
    got_big = run(s, cuts, 2, &got, &got_tail);
    compare(&want, want_big, want_tail, &got, got_big, got_tail, "two pieces");

    /* One byte at a time. */
    got.len = 0;
    got.seen = 0;
    for (size_t i = 0; i < n; i++)
        cuts[i] = i + 1;
    got_big = run(s, cuts, n, &got, &got_tail);
    compare(&want, want_big, want_tail, &got, got_big, got_tail, "1-byte chunks");

    free(cuts);
    free(got.buf);
    free(want.buf);
    return 0;
}

#ifndef FUZZ_WITH_LIBFUZZER
#define CORPUS_FILE_MAX ((size_t)64 << 20)

/* xorshift64: deterministic, so a failing mutation can be replayed. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* Applies a few edits biased towards the bytes that matter to framing. */
static size_t mutate(uint8_t *buf, size_t len, size_t cap, uint64_t *rng)
{
    static const uint8_t special[] = {'\n', '\r', 0, 0xff, '{', 'a'};
    int edits = 1 + (int)(next_random(rng) % 4);

    for (int e = 0; e < edits; e++) {
        uint64_t r = next_random(rng);
        size_t at = len ? (size_t)(r >> 8) % len : 0;
        switch (r % 5) {
        case 0: /* overwrite with a special byte */
            if (len)
                buf[at] = special[(r >> 40) % sizeof special];
            break;
        case 1: /* insert a special byte */
            if (len < cap) {
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = special[(r >> 40) % sizeof special];
                len++;
            }
            break;
        case 2: /* delete a byte */
            if (len > 4) {
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
            }
            break;
        case 3: /* flip a bit, header bytes included */
            if (len)
                buf[at] ^= (uint8_t)(1u << ((r >> 40) % 8));
            break;
        default: /* duplicate a run, to grow lines past max_line */
            if (len && len < cap) {
                size_t n = (size_t)(r >> 40) % (cap - len) % 64;
                if (n > len - at)
                    n = len - at;
                memmove(buf + at + n, buf + at, len - at);
                len += n;
            }
            break;
        }
    }
    return len;
}

/* Corpus replay, plus optional seeded mutations of each file. */
int main(int argc, char **argv)
{
    long mutations = 0;
    int first = 1;

    if (argc > 1 && strncmp(argv[1], "--mutate=", 9) == 0) {
        mutations = strtol(argv[1] + 9, NULL, 10);
        first = 2;
    }
    for (int i = first; i < argc; i++) {
        size_t len, cap;
        uint8_t *seed = (uint8_t *)file_read(argv[i], CORPUS_FILE_MAX, &len);
        uint8_t *work;
        uint64_t rng = UINT64_C(0x9E3779B97F4A7C15) + (uint64_t)(unsigned)i;

        if (seed == NULL) {
            perror(argv[i]);
            return 1;
        }
        LLVMFuzzerTestOneInput(seed, len);
        cap = len * 2 + 64;
        work = malloc(cap);
        check(work != NULL, "out of memory");
        for (long m = 0; m < mutations; m++) {
            size_t n;
            memcpy(work, seed, len);
            n = mutate(work, len, cap, &rng);
            LLVMFuzzerTestOneInput(work, n);
        }
        free(work);
        free(seed);
        printf("ok %s (%zu bytes, %ld mutations)\n", argv[i], len, mutations);
    }
    return 0;
}
#endif
