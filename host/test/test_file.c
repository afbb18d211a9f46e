/* Whole-file reading: exact bytes at every size around the bound and the
 * read chunk, a clear errno for each failure. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "file.h"
#include "tmpdir.h"

static int setup(void **state)
{
    *state = tmpdir_new("test_file.", "f");
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    tmpdir_free(*state);
    return 0;
}

/* Writes n bytes of a pattern that holds NULs and shows misplaced bytes. */
static void write_pattern(const char *path, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(fputc((int)(i * 131 % 251), f), EOF);
    assert_int_equal(fclose(f), 0);
}

static void check_pattern(const char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] != i * 131 % 251)
            fail_msg("byte %zu is %u", i, (unsigned char)buf[i]);
    assert_int_equal(buf[n], '\0');
}

/* Every size near 0, the 4 KiB read chunk and the growth steps, read with
 * a bound of exactly that size (fits) and one less (too big). */
static void test_sizes_and_bound(void **state)
{
    struct tmpdir *d = *state;
    static const size_t sizes[] = {0, 1, 2, 4095, 4096, 4097, 8191, 8192, 8193,
                                   16383, 16384, 16385, 100000};

    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k], len = 12345;
        write_pattern(d->file, n);
        char *buf = file_read(d->file, n, &len);
        assert_non_null(buf);
        assert_int_equal(len, n);
        check_pattern(buf, n);
        free(buf);
        buf = file_read(d->file, n + 1000000, &len);
        assert_non_null(buf);
        assert_int_equal(len, n);
        check_pattern(buf, n);
        free(buf);
        if (n > 0) {
            len = 777;
            errno = 0;
            assert_null(file_read(d->file, n - 1, &len));
            assert_int_equal(errno, EFBIG);
            assert_int_equal(len, 777);
        }
    }
}

static void test_errors(void **state)
{
    struct tmpdir *d = *state;
    size_t len = 5;

    errno = 0;
    assert_null(file_read("/nonexistent/test_file", 100, &len));
    assert_int_equal(errno, ENOENT);
    errno = 0;
    assert_null(file_read(d->path, 100, &len));     /* a directory: opens, reading fails */
    assert_int_equal(errno, EIO);
    assert_int_equal(len, 5);
}

/* A file whose size stat does not know is read to its end all the same. */
static void test_proc_file(void **state)
{
    (void)state;
    size_t len = 0;
    char *buf = file_read("/proc/self/status", 1 << 20, &len);

    assert_non_null(buf);
    assert_true(len > 0);
    assert_int_equal(strlen(buf), len);
    assert_non_null(strstr(buf, "Pid:"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sizes_and_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test(test_proc_file),
    };
    return cmocka_run_group_tests_name("file", tests, NULL, NULL);
}
