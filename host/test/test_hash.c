/* The chained hash table: every node found under its hash and only there,
 * colliding hashes kept apart, growth keeps everything, removal anywhere in a
 * chain, release hands over every node; the string hash is FNV-1a. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "hash.h"

struct item {
    int id;
    bool in;
    struct hash_node hn;       /* not the first member on purpose */
};

#define ITEM(n) hash_entry(n, struct item, hn)

enum { N = 300 };

/* Hashes that collide on purpose: every 3 items share one; the others
 * spread over the chains, so a node in the wrong chain is not found. */
static uint64_t key_of(int id)
{
    return (uint64_t)(id / 3) * 2654435761u;
}

/* Each item in the table is found under its hash exactly once, and the walk
 * under a hash yields only items with it. */
static void check(const struct hash *h, struct item *it)
{
    size_t in = 0;

    for (int i = 0; i < N; i++) {
        int seen = 0;
        for (struct hash_node *n = hash_first(h, key_of(i)); n; n = hash_next(n)) {
            assert_int_equal(key_of(ITEM(n)->id), key_of(i));
            seen += ITEM(n) == &it[i];
        }
        assert_int_equal(seen, it[i].in ? 1 : 0);
        in += it[i].in;
    }
    assert_int_equal(h->n, in);
}

static int released;

static void count_release(struct hash_node *n)
{
    assert_true(ITEM(n)->in);
    ITEM(n)->in = false;
    released++;
}

static void test_add_find_grow_remove_release(void **state)
{
    (void)state;
    struct hash h;
    static struct item it[N];

    assert_int_equal(hash_init(&h, 4), 0);
    for (int i = 0; i < N; i++) {
        it[i].id = i;
        it[i].in = true;
        hash_add(&h, &it[i].hn, key_of(i));
    }
    assert_true(h.nchains >= N);            /* grew from 4 */
    check(&h, it);
    /* Remove the first, middle and last of colliding runs, and more. */
    for (int i = 0; i < N; i += 2) {
        hash_remove(&h, &it[i].hn);
        it[i].in = false;
    }
    check(&h, it);
    hash_add(&h, &it[0].hn, key_of(0));     /* back in, at the head */
    it[0].in = true;
    check(&h, it);
    assert_ptr_equal(ITEM(hash_first(&h, key_of(0))), &it[0]);
    released = 0;
    hash_release(&h, count_release);
    assert_int_equal(released, N / 2 + 1);
    for (int i = 0; i < N; i++)
        assert_false(it[i].in);
    assert_null(h.chains);
    hash_release(&h, NULL);                 /* twice is harmless */
}

static void test_absent(void **state)
{
    (void)state;
    struct hash h;
    struct item a = {1, true, {0}};

    assert_int_equal(hash_init(&h, 8), 0);
    assert_null(hash_first(&h, 42));
    hash_add(&h, &a.hn, 42 + 8);            /* same chain, other hash */
    assert_null(hash_first(&h, 42));
    assert_ptr_equal(ITEM(hash_first(&h, 50)), &a);
    assert_null(hash_next(&a.hn));
    hash_release(&h, NULL);
}

static void test_fnv1a(void **state)
{
    (void)state;
    /* Published FNV-1a 64 test vectors. */
    assert_true(hash_str(HASH_SEED, "") == 0xcbf29ce484222325ULL);
    assert_true(hash_str(HASH_SEED, "a") == 0xaf63dc4c8601ec8cULL);
    assert_true(hash_str(HASH_SEED, "foobar") == 0x85944171f73967e8ULL);
    /* Continuing equals hashing the concatenation. */
    assert_true(hash_str(hash_str(HASH_SEED, "foo"), "bar") == hash_str(HASH_SEED, "foobar"));
    /* By length: the same values, and NUL bytes count. */
    assert_true(hash_bytes(HASH_SEED, "foobar", 6) == 0x85944171f73967e8ULL);
    assert_true(hash_bytes(HASH_SEED, "", 0) == 0xcbf29ce484222325ULL);
    assert_true(hash_bytes(HASH_SEED, "a\0b", 3) != hash_bytes(HASH_SEED, "ab", 2));
    assert_true(hash_bytes(hash_bytes(HASH_SEED, "a", 1), "\0b", 2) ==
                hash_bytes(HASH_SEED, "a\0b", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_find_grow_remove_release),
        cmocka_unit_test(test_absent),
        cmocka_unit_test(test_fnv1a),
    };
    return cmocka_run_group_tests_name("hash", tests, NULL, NULL);
}
