/* Unit tests of LOG_FORMAT=json in src/core/log.c: every line is one JSON
 * object (parsed with jansson, duplicate keys rejected) with time, level,
 * message and the key/value fields; escaping round-trips; nothing is
 * written below the level. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/log.h"

static int out_fd = -1;

static int setup(void **state) {
        out_fd = memfd_create("log", MFD_CLOEXEC);
        if (out_fd < 0)
                return -1;
        log_set_fd(out_fd);
        log_setup(LOG_INFO, LOG_FORMAT_JSON);
        return 0;
}

static int teardown(void **state) {
        log_set_fd(2);
        log_setup(LOG_INFO, LOG_FORMAT_TEXT);
        close(out_fd);
        out_fd = -1;
        return 0;
}

/* Everything written since the last call, as lines parsed into an array. */
static json_t *take_lines(size_t *ret_nlines) {
        off_t end = lseek(out_fd, 0, SEEK_CUR);
        char *data = calloc(1, (size_t)end + 1), *p, *nl;
        json_t *lines = json_array();
        size_t n = 0;

        assert_non_null(data);
        assert_int_equal(pread(out_fd, data, (size_t)end, 0), end);
        assert_int_equal(ftruncate(out_fd, 0), 0);
        assert_int_equal(lseek(out_fd, 0, SEEK_SET), 0);
        if (end > 0)
                assert_int_equal(data[end - 1], '\n'); /* every line ends */
        for (p = data; *p; p = nl + 1) {
                json_error_t je;
                json_t *j;

                nl = strchr(p, '\n');
                assert_non_null(nl);
                *nl = '\0';
                j = json_loads(p, JSON_REJECT_DUPLICATES, &je);
                if (!j)
                        fail_msg("line %zu is not one JSON object (%s): %s", n + 1, je.text, p);
                assert_true(json_is_object(j));
                json_array_append_new(lines, j);
                n++;
        }
        free(data);
        *ret_nlines = n;
        return lines;
}

static void assert_time(const json_t *line) {
        const char *t = json_string_value(json_object_get(line, "time"));
        assert_non_null(t);
        /* 2026-11-28T02:52:27.169Z */
        assert_int_equal(strlen(t), 24);
        assert_int_equal(t[4], '-');
        assert_int_equal(t[10], 'T');
        assert_int_equal(t[19], '.');
        assert_int_equal(t[23], 'Z');
}

static void test_fields(void **state) {
        size_t n;
        json_t *lines, *l;

        log_info("connected", "url", "ws://127.0.0.1:3003/ws/node", "attempt", "3", NULL);
        log_warn("no fields", NULL);
        log_error("null value", "reason", NULL, NULL);
        lines = take_lines(&n);
        assert_int_equal(n, 3);

        l = json_array_get(lines, 0);
        assert_time(l);
        assert_string_equal(json_string_value(json_object_get(l, "level")), "info");
        assert_string_equal(json_string_value(json_object_get(l, "message")), "connected");
        assert_string_equal(json_string_value(json_object_get(l, "url")), "ws://127.0.0.1:3003/ws/node");
        assert_string_equal(json_string_value(json_object_get(l, "attempt")), "3");
        assert_int_equal(json_object_size(l), 5);

        l = json_array_get(lines, 1);
        assert_string_equal(json_string_value(json_object_get(l, "level")), "warn");
        assert_int_equal(json_object_size(l), 3);

        l = json_array_get(lines, 2);
        assert_string_equal(json_string_value(json_object_get(l, "level")), "error");
        assert_string_equal(json_string_value(json_object_get(l, "reason")), "(null)");
        json_decref(lines);
}

static void test_escaping(void **state) {
        static const char *const tricky[] = {
                "plain",
                "quote \" and backslash \\ and slash /",
                "line\nfeed, cr\r, tab\t",
                "controls \x01\x02\x1f\x7f end",
                "utf-8: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80",
                "{\"looks\":\"like json\"}",
                "",
        };
        size_t i, n;
        json_t *lines;

        for (i = 0; i < sizeof tricky / sizeof *tricky; i++)
                log_info(tricky[i], "value", tricky[i], "key with \"quotes\"\n", "v", NULL);
        lines = take_lines(&n);
        assert_int_equal(n, sizeof tricky / sizeof *tricky);
        for (i = 0; i < n; i++) {
                json_t *l = json_array_get(lines, i);
                assert_string_equal(json_string_value(json_object_get(l, "message")), tricky[i]);
                assert_string_equal(json_string_value(json_object_get(l, "value")), tricky[i]);
                assert_string_equal(json_string_value(json_object_get(l, "key with \"quotes\"\n")), "v");
        }
        json_decref(lines);
}

static void test_levels(void **state) {
        static const struct {
                log_level level;
                unsigned want; /* lines out of debug, info, warn, error */
                const char *first;
        } cases[] = {
                { LOG_DEBUG, 4, "debug" },
                { LOG_INFO, 3, "info" },
                { LOG_WARN, 2, "warn" },
                { LOG_ERROR, 1, "error" },
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                size_t n;
                json_t *lines;

                log_set_level(cases[i].level);
                assert_int_equal(log_get_level(), cases[i].level);
                log_debug("d", NULL);
                log_info("i", NULL);
                log_warn("w", NULL);
                log_error("e", NULL);
                lines = take_lines(&n);
                assert_int_equal(n, cases[i].want);
                assert_string_equal(json_string_value(json_object_get(json_array_get(lines, 0), "level")),
                                    cases[i].first);
                json_decref(lines);
        }
        log_set_level(LOG_INFO);
}

static void test_errno_and_long_lines(void **state) {
        char *big = malloc(100001);
        size_t n;
        json_t *lines;

        assert_non_null(big);
        memset(big, 'x', 100000);
        big[100000] = '\0';
        errno = EAGAIN;
        log_info("big", "data", big, NULL);
        assert_int_equal(errno, EAGAIN); /* logging does not clobber errno */
        lines = take_lines(&n);
        assert_int_equal(n, 1);
        assert_int_equal(strlen(json_string_value(json_object_get(json_array_get(lines, 0), "data"))), 100000);
        json_decref(lines);
        free(big);
}

static void test_parse_helpers(void **state) {
        log_format f;
        log_level l;

        assert_int_equal(log_format_parse("json", &f), 0);
        assert_int_equal(f, LOG_FORMAT_JSON);
        assert_int_equal(log_format_parse("JSON", &f), 0);
        assert_int_equal(log_format_parse("text", &f), 0);
        assert_int_equal(f, LOG_FORMAT_TEXT);
        assert_int_equal(log_format_parse("yaml", &f), -EINVAL);
        assert_int_equal(log_level_parse("warning", &l), 0);
        assert_int_equal(l, LOG_WARN);
        assert_int_equal(log_level_parse("loud", &l), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_fields, setup, teardown),
                cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
                cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
                cmocka_unit_test_setup_teardown(test_errno_and_long_lines, setup, teardown),
                cmocka_unit_test(test_parse_helpers),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
