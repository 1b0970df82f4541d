/* Unit tests of src/core/dotenv. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/dotenv.h"

typedef struct kv {
        const char *key, *value;
} kv;

/* One file, the assignments it must yield (in order) and its invalid lines. */
typedef struct dcase {
        const char *text;
        kv expect[6];
        unsigned invalid[4];
} dcase;

static const dcase cases[] = {
        { "", { { 0 } }, { 0 } },
        { "A=1", { { "A", "1" } }, { 0 } },
        { "A=1\nB=2\n", { { "A", "1" }, { "B", "2" } }, { 0 } },
        { "  A  =   spaced value  \t\n", { { "A", "spaced value" } }, { 0 } },
        { "export A=1\nexport\tB=2", { { "A", "1" }, { "B", "2" } }, { 0 } },
        { "export=1\nexport =2", { { "export", "2" } }, { 0 } },
        { "# comment\n\n   # indented comment\nA=1", { { "A", "1" } }, { 0 } },
        { "A=value # comment\nB=a#b\nC=#x\nD= # only comment\nE=x\t#tab",
          { { "A", "value" }, { "B", "a#b" }, { "C", "" }, { "D", "" }, { "E", "x" } },
          { 0 } },
        { "A=\nB=", { { "A", "" }, { "B", "" } }, { 0 } },
        { "A='single # not comment \\n'", { { "A", "single # not comment \\n" } }, { 0 } },
        { "A=\"x\\ny\\rz\\tw\\\\v\\\"u\\q\"", { { "A", "x\ny\rz\tw\\v\"u\\q" } }, { 0 } },
        { "A=`back 'tick' \"q\"`", { { "A", "back 'tick' \"q\"" } }, { 0 } },
        { "A=\"multi\nline\"\nB=2", { { "A", "multi\nline" }, { "B", "2" } }, { 0 } },
        { "A='multi\r\nline'\r\nB=2\r\n", { { "A", "multi\nline" }, { "B", "2" } }, { 0 } },
        { "A=1\rB=2\r", { { "A", "1" }, { "B", "2" } }, { 0 } },
        { "A=\"v\"   # comment\nB='v'#c", { { "A", "v" }, { "B", "v" } }, { 0 } },
        { "A=  \"  kept  \"  ", { { "A", "  kept  " } }, { 0 } },
        { "A=\"\"\nB=''", { { "A", "" }, { "B", "" } }, { 0 } },
        { "A=1\nA=2\nB=3\nA=4", { { "A", "4" }, { "B", "3" } }, { 0 } },
        { "a.b-c_D9=ok", { { "a.b-c_D9", "ok" } }, { 0 } },
        { "\xef\xbb\xbf" "A=bom", { { "A", "bom" } }, { 0 } },
        { "URL=http://h:3003/ws/node?x=1&y=2", { { "URL", "http://h:3003/ws/node?x=1&y=2" } }, { 0 } },
        { "A=é ✓", { { "A", "é ✓" } }, { 0 } },
        { "A=a=b=c", { { "A", "a=b=c" } }, { 0 } },
        /* invalid lines are skipped and reported */
        { "JUNK\nA=1\n=2\nB C=3\nexport D\n", { { "A", "1" } }, { 1, 3, 4, 5 } },
        { "A=\"unterminated\nB=2", { { "B", "2" } }, { 1 } },
        { "A=\"v\" trailing\nB=2", { { "B", "2" } }, { 1 } },
        { "A=\"two\nlines\" x\nB=2", { { "B", "2" } }, { 1 } },
        { "A=1\nK$Y=2\n\nC=\"a\nb\nc\"\nD=2\n%%", { { "A", "1" }, { "C", "a\nb\nc" }, { "D", "2" } }, { 2, 8 } },
        { "A:1\nB: 2", { { 0 } }, { 1, 2 } },
};

static void check_case(size_t idx, const dcase *c) {
        dotenv d;
        char err[128] = "";
        size_t n = 0, i;

        print_message("case %zu\n", idx);
        assert_int_equal(dotenv_parse(c->text, strlen(c->text), &d, err, sizeof err), 0);
        while (n < 6 && c->expect[n].key)
                n++;
        assert_int_equal(d.n_entries, n);
        for (i = 0; i < n; i++) {
                assert_string_equal(d.entries[i].key, c->expect[i].key);
                assert_string_equal(d.entries[i].value, c->expect[i].value);
                assert_string_equal(dotenv_get(&d, c->expect[i].key), c->expect[i].value);
        }
        for (n = 0; n < 4 && c->invalid[n]; n++)
                ;
        assert_int_equal(d.n_invalid, n);
        for (i = 0; i < n; i++)
                assert_int_equal(d.invalid_lines[i], c->invalid[i]);
        dotenv_done(&d);
}

static void test_table(void **state) {
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
                check_case(i, &cases[i]);
}

static void test_lines(void **state) {
        dotenv d;
        const char *text = "# c\nA=1\nB=\"x\ny\"\nC=3\n";

        assert_int_equal(dotenv_parse(text, strlen(text), &d, NULL, 0), 0);
        assert_int_equal(d.n_entries, 3);
        assert_int_equal(d.entries[0].line, 2);
        assert_int_equal(d.entries[1].line, 3);
        assert_int_equal(d.entries[2].line, 5);
        assert_null(dotenv_get(&d, "D"));
        dotenv_done(&d);
        dotenv_done(&d);
        dotenv_done(NULL);
}

static void test_errors(void **state) {
        dotenv d = { .n_entries = 77 };
        char err[128] = "";
        char *big;

        assert_int_equal(dotenv_parse("A=1\0B=2", 7, &d, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "NUL"));
        assert_int_equal(d.n_entries, 77);

        big = malloc(DOTENV_MAX_SIZE + 1);
        assert_non_null(big);
        memset(big, '#', DOTENV_MAX_SIZE + 1);
        assert_int_equal(dotenv_parse(big, DOTENV_MAX_SIZE + 1, &d, err, sizeof err), -EFBIG);
        /* exactly the cap is fine */
        assert_int_equal(dotenv_parse(big, DOTENV_MAX_SIZE, &d, err, sizeof err), 0);
        assert_int_equal(d.n_entries, 0);
        dotenv_done(&d);
        free(big);
}

static void test_too_many_keys(void **state) {
        size_t n = DOTENV_MAX_ENTRIES + 1, i, o = 0;
        char *text = malloc(n * 16);
        char err[128] = "";
        dotenv d;

        assert_non_null(text);
        for (i = 0; i < n; i++)
                o += (size_t)snprintf(text + o, 16, "K%zu=v\n", i);
        assert_int_equal(dotenv_parse(text, o, &d, err, sizeof err), -E2BIG);
        assert_non_null(strstr(err, "keys"));
        /* repeating keys does not count */
        o = 0;
        for (i = 0; i < n; i++)
                o += (size_t)snprintf(text + o, 16, "K%zu=v\n", i % 10);
        assert_int_equal(dotenv_parse(text, o, &d, err, sizeof err), 0);
        assert_int_equal(d.n_entries, 10);
        dotenv_done(&d);
        free(text);
}

static void test_load(void **state) {
        char dir[] = "/tmp/test-dotenv-XXXXXX", path[128], err[256] = "";
        const char *text = "NODE_TOKEN=abc\nexport NODE_ID=\"n1\" # id\n";
        dotenv d;
        int fd;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/.env", dir);
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);

        assert_int_equal(dotenv_load(path, &d, err, sizeof err), 0);
        assert_string_equal(dotenv_get(&d, "NODE_TOKEN"), "abc");
        assert_string_equal(dotenv_get(&d, "NODE_ID"), "n1");
        dotenv_done(&d);
        unlink(path);

        assert_int_equal(dotenv_load(path, &d, err, sizeof err), -ENOENT);
        assert_non_null(strstr(err, path));
        rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_table),  cmocka_unit_test(test_lines),
                cmocka_unit_test(test_errors), cmocka_unit_test(test_too_many_keys),
                cmocka_unit_test(test_load),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
