/* Tests of dirwatch on real directories under a temporary one: changes
 * below the top level, the directory deleted and made again, and a
 * ConfigMap-style `..data` link swapped (also as --scripts-dir itself). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dirwatch.h"

static char root[256];

static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        fail_msg("command failed: %s", cmd);
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/dirwatch-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sh("rm -rf '%s'", root);
    return 0;
}

/* True when the watch reports a change within ms (events drained). */
static bool changed_within(struct dirwatch *w, int ms)
{
    struct pollfd p = {.fd = dirwatch_fd(w), .events = POLLIN};
    while (poll(&p, 1, ms) > 0) {
        if (dirwatch_changed(w))
            return true;
    }
    return false;
}

static void test_change_below_the_top_level(void **state)
{
    char err[256];
    (void)state;
    sh("mkdir -p %s/s/lib && echo a > %s/s/lib/names.lua", root, root);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/s", root);
    struct dirwatch *w = dirwatch_new(dir, err, sizeof err);
    assert_non_null(w);
    assert_false(changed_within(w, 100));
    sh("echo b > %s/s/lib/names.lua", root);
    assert_true(changed_within(w, 2000));
    /* A directory made later is watched too. */
    sh("mkdir %s/s/templates", root);
    assert_true(changed_within(w, 2000));
    sh("echo c > %s/s/templates/service.lua", root);
    assert_true(changed_within(w, 2000));
    assert_false(changed_within(w, 200));   /* its own re-arming is not a change */
    dirwatch_free(w);
}

static void test_directory_deleted_and_made_again(void **state)
{
    char err[256], dir[512];
    (void)state;
    snprintf(dir, sizeof dir, "%s/s", root);
    sh("mkdir -p %s && echo a > %s/router.lua", dir, dir);
    struct dirwatch *w = dirwatch_new(dir, err, sizeof err);
    assert_non_null(w);
    sh("rm -rf %s", dir);
    assert_true(changed_within(w, 2000));
    sh("mkdir -p %s", dir);
    assert_true(changed_within(w, 2000));
    /* The new directory is the one watched now. */
    sh("echo b > %s/router.lua", dir);
    assert_true(changed_within(w, 2000));
    dirwatch_free(w);
}

/* kubelet's atomic writer: new timestamped directory, `..data_tmp` link to
 * it renamed over `..data`, the old directory removed. */
static void swap(const char *dir, const char *old, const char *neu, const char *text)
{
    sh("mkdir %s/%s && echo '%s' > %s/%s/router.lua && ln -s %s %s/..data_tmp && "
       "mv -T %s/..data_tmp %s/..data && rm -rf %s/%s",
       dir, neu, text, dir, neu, neu, dir, dir, dir, dir, old);
}

static void test_configmap_swaps(void **state)
{
    char err[256], dir[512], data[600];
    (void)state;
    snprintf(dir, sizeof dir, "%s/cm", root);
    sh("mkdir -p %s/..2026_a && echo 1 > %s/..2026_a/router.lua && ln -s ..2026_a %s/..data && "
       "ln -s ..data/router.lua %s/router.lua", dir, dir, dir, dir);
    /* The mount point itself, as the chart mounts it. */
    struct dirwatch *w = dirwatch_new(dir, err, sizeof err);
    assert_non_null(w);
    swap(dir, "..2026_a", "..2026_b", "2");
    assert_true(changed_within(w, 2000));
    swap(dir, "..2026_b", "..2026_c", "3");
    assert_true(changed_within(w, 2000));
    dirwatch_free(w);

    /* --scripts-dir pointing through the `..data` link: each swap leaves the
     * directory first watched behind, so the watch must follow the link. */
    snprintf(data, sizeof data, "%s/..data", dir);
    w = dirwatch_new(data, err, sizeof err);
    assert_non_null(w);
    swap(dir, "..2026_c", "..2026_d", "4");
    assert_true(changed_within(w, 2000));
    /* An edit inside the directory the link points at now. */
    sh("echo 5 > %s/..2026_d/router.lua", dir);
    assert_true(changed_within(w, 2000));
    dirwatch_free(w);
}

static void test_missing_directory_is_an_error(void **state)
{
    char err[256] = "", dir[512];
    (void)state;
    snprintf(dir, sizeof dir, "%s/nope", root);
    assert_null(dirwatch_new(dir, err, sizeof err));
    assert_non_null(strstr(err, "cannot watch"));
    dirwatch_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_change_below_the_top_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_deleted_and_made_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_configmap_swaps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_directory_is_an_error, setup, teardown),
    };
    return cmocka_run_group_tests_name("dirwatch", tests, NULL, NULL);
}
