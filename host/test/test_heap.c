/* The binary min-heap: order by key then push order, removal and re-keying
 * of any node through its index, checked against a plain sort. */
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "heap.h"

struct item {
    int id;                    /* push order, for the tie check */
    bool on;
    struct heap_node hn;       /* not the first member on purpose */
};

#define ITEM(n) heap_entry(n, struct item, hn)

/* Every node's recorded index is where it sits, and no child is before its
 * parent. */
static void check_shape(const struct heap *h)
{
    for (size_t i = 0; i < h->n; i++) {
        assert_int_equal(h->v[i]->pos, i);
        if (i > 0) {
            const struct heap_node *p = h->v[(i - 1) / 2], *c = h->v[i];
            assert_true(p->key < c->key || (p->key == c->key && p->seq < c->seq));
        }
    }
}

/* Pops everything, checking the order: key ascending, push order on ties. */
static size_t drain(struct heap *h)
{
    int64_t last_key = INT64_MIN;
    int last_id = -1;
    size_t n = 0;
    struct item *it;

    while ((it = ITEM(heap_top(h))) != NULL) {
        assert_true(it->hn.key > last_key || (it->hn.key == last_key && it->id > last_id));
        last_key = it->hn.key;
        last_id = it->id;
        heap_remove(h, &it->hn);
        it->on = false;
        check_shape(h);
        n++;
    }
    return n;
}

static void test_empty(void **state)
{
    (void)state;
    struct heap h = {0};

    assert_null(heap_top(&h));
    assert_null(ITEM(heap_top(&h)));
    heap_release(&h);
    heap_release(&h);
}

static void test_ties_keep_push_order(void **state)
{
    (void)state;
    struct heap h = {0};
    struct item it[40];

    for (int i = 0; i < 40; i++) {
        it[i].id = i;
        assert_int_equal(heap_push(&h, &it[i].hn, (i * 7) % 3), 0);
        check_shape(&h);
    }
    assert_int_equal(drain(&h), 40);
    heap_release(&h);
}

/* Random pushes, removals of arbitrary nodes and re-keys (earlier and
 * later): the heap's order always equals a sort of what is left. */
static void test_random_remove_and_update(void **state)
{
    (void)state;
    enum { N = 500 };
    struct heap h = {0};
    static struct item it[N];
    unsigned seed = 12345;

    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        it[i].id = i;
        it[i].on = true;
        assert_int_equal(heap_push(&h, &it[i].hn, (int64_t)(seed >> 16) % 1000), 0);
    }
    for (int round = 0; round < 2000; round++) {
        seed = seed * 1103515245u + 12345u;
        struct item *x = &it[(seed >> 8) % N];
        if (!x->on)
            continue;
        if (round % 3 == 0) {
            heap_remove(&h, &x->hn);
            x->on = false;
        } else {
            heap_update(&h, &x->hn, (int64_t)(seed >> 4) % 1000 - 200);
        }
        check_shape(&h);
    }
    size_t left = 0;
    for (int i = 0; i < N; i++)
        left += it[i].on;
    assert_int_equal(h.n, left);
    assert_int_equal(drain(&h), left);
    heap_release(&h);
}

/* The top is the earliest at every step while keys come and go. */
static void test_top_is_minimum(void **state)
{
    (void)state;
    struct heap h = {0};
    struct item a = {0}, b = {0}, c = {0};

    assert_int_equal(heap_push(&h, &a.hn, 30), 0);
    assert_int_equal(heap_push(&h, &b.hn, 10), 0);
    assert_int_equal(heap_push(&h, &c.hn, 20), 0);
    assert_ptr_equal(ITEM(heap_top(&h)), &b);
    heap_update(&h, &b.hn, 40);          /* later: c is next */
    assert_ptr_equal(ITEM(heap_top(&h)), &c);
    heap_update(&h, &a.hn, 5);           /* earlier: a is next */
    assert_ptr_equal(ITEM(heap_top(&h)), &a);
    heap_remove(&h, &a.hn);
    assert_ptr_equal(ITEM(heap_top(&h)), &c);
    assert_int_equal(heap_top(&h)->key, 20);
    heap_remove(&h, &b.hn);              /* the last element, not the top */
    assert_ptr_equal(ITEM(heap_top(&h)), &c);
    heap_remove(&h, &c.hn);
    assert_null(heap_top(&h));
    heap_release(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_ties_keep_push_order),
        cmocka_unit_test(test_random_remove_and_update),
        cmocka_unit_test(test_top_is_minimum),
    };
    return cmocka_run_group_tests_name("heap", tests, NULL, NULL);
}
