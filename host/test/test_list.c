/* The intrusive list: order, unlink anywhere, and the head/tail bookkeeping
 * the four users (http, kube, events, reconcile) rely on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "list.h"

struct item {
    int value;                 /* the node is not the first member on purpose */
    struct list_node node;
};

#define ITEM(n) list_entry(n, struct item, node)

/* The values head to tail as "1,2,3", checking every back link on the way. */
static void order(const struct list *l, char *out, size_t cap)
{
    size_t len = 0;
    struct list_node *prev = NULL;

    out[0] = '\0';
    for (struct list_node *n = l->head; n; n = n->next) {
        assert_ptr_equal(n->prev, prev);
        len += (size_t)snprintf(out + len, cap - len, "%s%d", len ? "," : "", ITEM(n)->value);
        prev = n;
    }
    assert_ptr_equal(l->tail, prev);
}

static void assert_order(const struct list *l, const char *want)
{
    char got[128];

    order(l, got, sizeof got);
    assert_string_equal(got, want);
}

static void test_push_and_push_front(void **state)
{
    (void)state;
    struct list l = {0};
    struct item a = {1, {0}}, b = {2, {0}}, c = {3, {0}};

    assert_true(list_empty(&l));
    assert_null(ITEM(l.head));
    list_push(&l, &b.node);
    list_push(&l, &c.node);
    list_push_front(&l, &a.node);
    assert_false(list_empty(&l));
    assert_order(&l, "1,2,3");
    assert_ptr_equal(ITEM(l.head), &a);
    assert_ptr_equal(ITEM(l.tail), &c);
}

static void test_unlink_head_middle_tail(void **state)
{
    (void)state;
    struct list l = {0};
    struct item it[5];

    for (int i = 0; i < 5; i++) {
        it[i].value = i;
        list_push(&l, &it[i].node);
    }
    list_unlink(&l, &it[2].node);
    assert_null(it[2].node.prev);
    assert_null(it[2].node.next);
    assert_order(&l, "0,1,3,4");
    list_unlink(&l, &it[0].node);
    assert_order(&l, "1,3,4");
    list_unlink(&l, &it[4].node);
    assert_order(&l, "1,3");
    /* A node taken off may go on again, here or on another list. */
    list_push_front(&l, &it[4].node);
    assert_order(&l, "4,1,3");
    list_unlink(&l, &it[1].node);
    list_unlink(&l, &it[3].node);
    list_unlink(&l, &it[4].node);
    assert_true(list_empty(&l));
    assert_null(l.tail);
}

/* The users' pattern: move between per-state lists, drain from the head
 * while the loop body unlinks. */
static void test_move_between_lists_and_drain(void **state)
{
    (void)state;
    struct list ready = {0}, done = {0};
    struct item it[4];
    struct item *x;

    for (int i = 0; i < 4; i++) {
        it[i].value = i;
        list_push(&ready, &it[i].node);
    }
    list_unlink(&ready, &it[1].node);
    list_push(&done, &it[1].node);
    list_unlink(&ready, &it[3].node);
    list_push_front(&done, &it[3].node);
    assert_order(&ready, "0,2");
    assert_order(&done, "3,1");
    int seen = 0;
    while ((x = ITEM(ready.head))) {
        list_unlink(&ready, &x->node);
        seen = seen * 10 + x->value + 1;
    }
    assert_int_equal(seen, 13);
    assert_true(list_empty(&ready));
    assert_order(&done, "3,1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_and_push_front),
        cmocka_unit_test(test_unlink_head_middle_tail),
        cmocka_unit_test(test_move_between_lists_and_drain),
    };
    return cmocka_run_group_tests_name("list", tests, NULL, NULL);
}
