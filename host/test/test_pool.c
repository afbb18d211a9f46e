/* pool: the lua_Alloc of the core state. What a user would see: a Lua state
 * runs on it unchanged, small blocks carry no header, and the memory of a
 * burst goes back to the system once its garbage is collected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "pool.h"

/* Blocks keep their bytes through growth and shrinking, across classes and
 * across the boundary to malloc. */
static void test_realloc_keeps_the_bytes(void **state)
{
    (void)state;
    struct pool *p = pool_new();
    assert_non_null(p);
    size_t sizes[] = {1, 8, 9, 24, 100, 256, 257, 600, 1024, 1025, 4000, 200, 16, 3};
    unsigned char *b = pool_alloc(p, NULL, 5 /* a type tag */, sizes[0]);
    assert_non_null(b);
    b[0] = 1;
    size_t have = 1;
    for (size_t i = 1; i < sizeof sizes / sizeof *sizes; i++) {
        b = pool_alloc(p, b, sizes[i - 1], sizes[i]);
        assert_non_null(b);
        size_t keep = have < sizes[i] ? have : sizes[i];
        for (size_t j = 0; j < keep; j++)
            assert_int_equal(b[j], (unsigned char)(j * 7 + 1));
        for (size_t j = 0; j < sizes[i]; j++)
            b[j] = (unsigned char)(j * 7 + 1);
        have = sizes[i];
    }
    assert_null(pool_alloc(p, b, sizes[sizeof sizes / sizeof *sizes - 1], 0));
    pool_free(p);
}

/* blocks[i] = a new block of `size` bytes, each byte i & 0xff, for i in
 * [0, n) where keep(i) (NULL: all). */
static void fill(struct pool *p, char **blocks, int n, size_t size, int (*keep)(int))
{
    for (int i = 0; i < n; i++)
        if (keep == NULL || keep(i)) {
            assert_non_null(blocks[i] = pool_alloc(p, NULL, 0, size));
            memset(blocks[i], i & 0xff, size);
        }
}

/* Every byte of blocks[i], i in [0, n) stepping by `step`, is still i & 0xff. */
static void check(char **blocks, int n, int step, size_t size)
{
    for (int i = 0; i < n; i += step)
        for (size_t j = 0; j < size; j++)
            assert_int_equal((unsigned char)blocks[i][j], i & 0xff);
}

/* Ten thousand 40-byte blocks fill whole pages edge to edge: no header per
 * block, and distinct, non-overlapping addresses. */
static void test_small_blocks_have_no_header(void **state)
{
    (void)state;
    enum { N = 10000, SIZE = 40 };
    struct pool *p = pool_new();
    static char *blocks[N];
    fill(p, blocks, N, SIZE, NULL);
    check(blocks, N, 1, SIZE);
    size_t page = 64 * 1024, per_page = (page - 64) / SIZE;
    assert_int_equal(pool_pages(p), (N + per_page - 1) / per_page);
    assert_true(pool_touched(p) <= (size_t)N * SIZE + pool_pages(p) * 64);
    for (int i = 0; i < N; i++)
        pool_alloc(p, blocks[i], SIZE, 0);
    pool_free(p);
}

/* After a burst, the pages that only its garbage used are unmapped; one
 * page per class stays for the next allocation. */
static void test_pages_go_back_after_a_burst(void **state)
{
    (void)state;
    enum { N = 20000, SIZE = 64 };
    struct pool *p = pool_new();
    static void *blocks[N];
    void *keep = pool_alloc(p, NULL, 0, SIZE);
    for (int i = 0; i < N; i++)
        assert_non_null(blocks[i] = pool_alloc(p, NULL, 0, SIZE));
    assert_true(pool_pages(p) >= 19);
    for (int i = N - 1; i >= 0; i--)
        pool_alloc(p, blocks[i], SIZE, 0);
    assert_true(pool_pages(p) <= 2);
    pool_alloc(p, keep, SIZE, 0);
    assert_int_equal(pool_pages(p), 1);
    pool_free(p);
}

static uintptr_t page_of(const void *b)
{
    return (uintptr_t)b & ~(uintptr_t)(64 * 1024 - 1);
}

/* After a burst leaves two pages of a class, one nearly empty and one
 * nearly full, tidying makes new blocks go to the full one: the nearly
 * empty page can drain and go. */
static void test_tidy_fills_the_fullest_page_first(void **state)
{
    (void)state;
    enum { SIZE = 512, PER_PAGE = (64 * 1024 - 64) / SIZE, N = 2 * PER_PAGE };
    struct pool *p = pool_new();
    static void *blocks[N];
    for (int i = 0; i < N; i++)
        assert_non_null(blocks[i] = pool_alloc(p, NULL, 0, SIZE));
    assert_int_equal(pool_pages(p), 2);
    uintptr_t emptier = page_of(blocks[0]), fuller = page_of(blocks[N - 1]);
    assert_true(emptier != fuller);
    /* The fuller page loses 2 blocks, then the emptier all but one: the
     * emptier page is freed into last, so it heads the list. */
    pool_alloc(p, blocks[N - 1], SIZE, 0);
    pool_alloc(p, blocks[N - 2], SIZE, 0);
    for (int i = 1; i < PER_PAGE; i++)
        pool_alloc(p, blocks[i], SIZE, 0);
    void *b = pool_alloc(p, NULL, 0, SIZE);
    assert_int_equal(page_of(b), emptier);
    pool_alloc(p, b, SIZE, 0);
    pool_tidy(p);
    b = pool_alloc(p, NULL, 0, SIZE);
    assert_int_equal(page_of(b), fuller);
    pool_alloc(p, b, SIZE, 0);
    pool_alloc(p, blocks[0], SIZE, 0);
    for (int i = PER_PAGE; i < N - 2; i++)
        pool_alloc(p, blocks[i], SIZE, 0);
    assert_int_equal(pool_pages(p), 1);
    pool_free(p);
}

/* Resident system pages of the 64 KiB pages that hold blocks[0..n). */
static size_t resident(void **blocks, size_t n)
{
    size_t count = 0;
    uintptr_t seen[64];
    size_t nseen = 0;
    for (size_t i = 0; i < n; i++) {
        uintptr_t pg = page_of(blocks[i]);
        size_t j;
        for (j = 0; j < nseen && seen[j] != pg; j++)
            ;
        if (j < nseen)
            continue;
        assert_true(nseen < 64);
        seen[nseen++] = pg;
        unsigned char vec[16];
        assert_int_equal(mincore((void *)pg, 64 * 1024, vec), 0);
        for (j = 0; j < 16; j++)
            count += vec[j] & 1;
    }
    return count;
}

enum { EVERY = 400 };
static int survives(int i)
{
    return i % EVERY == 0;
}

static int dies(int i)
{
    return !survives(i);
}

/* A burst leaves one survivor every ~16 KiB: tidying gives back the system
 * pages between them (the kernel's own count says so), the survivors keep
 * their bytes, and the blocks given back serve later allocations. */
static void test_tidy_gives_back_the_free_system_pages(void **state)
{
    (void)state;
    enum { N = 8000, SIZE = 40 };
    struct pool *p = pool_new();
    static char *blocks[N];
    fill(p, blocks, N, SIZE, NULL);
    size_t before = resident((void **)blocks, N), touched = pool_touched(p);
    for (int i = 0; i < N; i++)
        if (!survives(i))
            pool_alloc(p, blocks[i], SIZE, 0);
    pool_tidy(p);
    size_t after = resident((void **)blocks, N);
    assert_true(after * 2 < before);
    assert_true(pool_touched(p) * 2 < touched);
    check(blocks, N, EVERY, SIZE);
    fill(p, blocks, N, SIZE, dies);
    check(blocks, N, 1, SIZE);
    assert_true(pool_touched(p) >= touched - 64 * 1024);
    for (int i = 0; i < N; i++)
        pool_alloc(p, blocks[i], SIZE, 0);
    assert_int_equal(pool_pages(p), 1);
    pool_free(p);
}

/* A whole Lua state on the pool: tables and strings churned, collected,
 * closed; every page is back when the pool is freed (valgrind and ASan see
 * the rest). */
static void test_a_lua_state_runs_on_it(void **state)
{
    (void)state;
    struct pool *p = pool_new();
    lua_State *L = lua_newstate(pool_alloc, p);
    assert_non_null(L);
    luaL_openlibs(L);
    const char *chunk =
        "local keep = {}\n"
        "for round = 1, 3 do\n"
        "  local burst = {}\n"
        "  for i = 1, 20000 do burst[i] = { name = 'pod-' .. i, rv = tostring(i * round) } end\n"
        "  for i = 1, 2000 do keep['k' .. i] = burst[i * 10].name .. '/' .. round end\n"
        "  burst = nil\n"
        "  collectgarbage()\n"
        "end\n"
        "local n = 0\n"
        "for k, v in pairs(keep) do n = n + #k + #v end\n"
        "return n, collectgarbage('count')\n";
    assert_int_equal(luaL_dostring(L, chunk), LUA_OK);
    lua_settop(L, 0);
    pool_tidy(p); /* and once more on the pages it gave back */
    assert_int_equal(luaL_dostring(L, chunk), LUA_OK);
    assert_true(lua_tointeger(L, -2) > 0);
    /* 2,000 short entries kept out of 100,000 made: the pages of the
     * bursts are gone, not held by a few survivors each. */
    double kib = lua_tonumber(L, -1);
    size_t pages = pool_pages(p);
    assert_true(pages * 64 < (size_t)kib * 4 + 1024);
    lua_close(L);
    assert_true(pool_pages(p) <= POOL_MAX_BLOCK / 8);
    pool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_realloc_keeps_the_bytes),
        cmocka_unit_test(test_small_blocks_have_no_header),
        cmocka_unit_test(test_pages_go_back_after_a_burst),
        cmocka_unit_test(test_tidy_fills_the_fullest_page_first),
        cmocka_unit_test(test_tidy_gives_back_the_free_system_pages),
        cmocka_unit_test(test_a_lua_state_runs_on_it),
    };
    return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
