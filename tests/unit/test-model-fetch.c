/* Unit tests of src/models/model_fetch.c against tests/helpers/dl-server.py
 * (spawned per test on a free port; skipped when python3 is missing):
 * plain and parallel downloads, resume from a partial file (the server
 * counts the bytes it serves), dropped connections, 500s, short bodies,
 * stalls, a source that changed (If-Range), checksum and size mismatches,
 * 404, MD5 and git blob verification, and freeing a running fetch. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "core/http.h"
#include "core/loop.h"
#include "core/util.h"
#include "models/model_cache.h"
#include "models/model_fetch.h"

#define SERVER AIWM_FIXTURES "/../helpers/dl-server.py"
#define BIG (3 * 1024 * 1024 + 17)

extern char **environ;

typedef struct fx {
        char base[64], www[96];
        pid_t server;
        int port;
        loop *l;
        http_client *http;
        int stage_fd;
        bool done;
        int r;
        char msg[512];
        unsigned char *big;
        char big_sha[65];
        int fds_before;
} fx;

static int count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        int n = 0;

        if (!d)
                return -1;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

static void hex_sha256(const void *data, size_t len, char out[65]) {
        static const char hex[] = "0123456789abcdef";
        unsigned char md[32];
        unsigned n = 0, i;

        EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
        for (i = 0; i < 32; i++) {
                out[2 * i] = hex[md[i] >> 4];
                out[2 * i + 1] = hex[md[i] & 15];
        }
        out[64] = '\0';
}

static void hex_digest(const EVP_MD *md, const void *pre, size_t prelen, const void *data, size_t len,
                       char *out) {
        static const char hex[] = "0123456789abcdef";
        unsigned char d[64];
        unsigned n = 0, i;
        EVP_MD_CTX *c = EVP_MD_CTX_new();

        EVP_DigestInit_ex(c, md, NULL);
        if (pre)
                EVP_DigestUpdate(c, pre, prelen);
        EVP_DigestUpdate(c, data, len);
        EVP_DigestFinal_ex(c, d, &n);
        EVP_MD_CTX_free(c);
        for (i = 0; i < n; i++) {
                out[2 * i] = hex[d[i] >> 4];
                out[2 * i + 1] = hex[d[i] & 15];
        }
        out[2 * n] = '\0';
}

static void put_file(fx *f, const char *name, const void *data, size_t len) {
        char p[256];
        FILE *o;

        snprintf(p, sizeof p, "%s/%s", f->www, name);
        o = fopen(p, "wb");
        assert_non_null(o);
        assert_int_equal(fwrite(data, 1, len, o), len);
        fclose(o);
}

/* A blocking control call to the server (test code only). */
static size_t sink(char *p, size_t s, size_t n, void *ud) {
        buf *b = ud;
        buf_append(b, p, s * n);
        return s * n;
}

static json_t *ctl(fx *f, const char *path, const char *body) {
        CURL *c = curl_easy_init();
        char url[256];
        buf b;
        json_t *j;

        buf_init(&b, 0);
        snprintf(url, sizeof url, "http://127.0.0.1:%d%s", f->port, path);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        if (body)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        curl_easy_cleanup(c);
        j = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
        buf_done(&b);
        assert_non_null(j);
        return j;
}

static json_int_t served(fx *f, const char *path, const char *what) {
        json_t *s = ctl(f, "/_ctl/stats", NULL);
        json_int_t v = json_integer_value(json_object_get(json_object_get(json_object_get(s, "paths"), path), what));

        json_decref(s);
        return v;
}

static int setup(void **state) {
        fx *f = calloc(1, sizeof *f);
        char portfile[128], *argv[10], *text = NULL;
        size_t i, len;
        int st;

        assert_non_null(f);
        if (access(SERVER, R_OK) != 0 || system("python3 -c 'import http.server' 2>/dev/null") != 0) {
                free(f);
                skip();
        }
        f->fds_before = count_fds();
        snprintf(f->base, sizeof f->base, "/tmp/test-model-fetch.XXXXXX");
        assert_non_null(mkdtemp(f->base));
        snprintf(f->www, sizeof f->www, "%s/www", f->base);
        assert_int_equal(mkdir(f->www, 0755), 0);
        snprintf(portfile, sizeof portfile, "%s/port", f->base);
        argv[0] = "python3";
        argv[1] = SERVER;
        argv[2] = "--root";
        argv[3] = f->www;
        argv[4] = "--port-file";
        argv[5] = portfile;
        argv[6] = NULL;
        {
                posix_spawn_file_actions_t fa;
                posix_spawn_file_actions_init(&fa);
                posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
                assert_int_equal(posix_spawnp(&f->server, "python3", &fa, NULL, argv, environ), 0);
                posix_spawn_file_actions_destroy(&fa);
        }
        for (i = 0; i < 100 && util_read_file(portfile, 64, &text, &len) < 0; i++)
                usleep(50000);
        assert_non_null(text);
        f->port = atoi(text); /* test code; the file is ours */
        free(text);
        f->big = malloc(BIG);
        assert_non_null(f->big);
        for (i = 0; i < BIG; i++)
                f->big[i] = (unsigned char)((i * 2654435761u) >> 13);
        hex_sha256(f->big, BIG, f->big_sha);
        put_file(f, "big.bin", f->big, BIG);
        put_file(f, "small.txt", "hello\n", 6);
        assert_int_equal(loop_new(&f->l), 0);
        assert_int_equal(http_client_new(f->l, &f->http), 0);
        {
                char stage[128];
                snprintf(stage, sizeof stage, "%s/stage", f->base);
                assert_int_equal(mkdir(stage, 0755), 0);
                f->stage_fd = open(stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                assert_true(f->stage_fd >= 0);
        }
        (void)st;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fx *f = *state;
        char cmd[200];
        int st;

        if (!f)
                return 0;
        f->http = http_client_free(f->http);
        loop_run_once(f->l, 0);
        f->l = loop_free(f->l);
        close(f->stage_fd);
        kill(f->server, SIGTERM);
        waitpid(f->server, &st, 0);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->base);
        assert_int_equal(system(cmd), 0);
        free(f->big);
        assert_int_equal(count_fds(), f->fds_before);
        free(f);
        return 0;
}

static void on_done(model_fetch *mf, int r, const char *message, void *ud) {
        fx *f = ud;

        f->done = true;
        f->r = r;
        snprintf(f->msg, sizeof f->msg, "%s", message ? message : "");
}

static model_fetch *new_fetch(fx *f, unsigned parallel, uint64_t stall_s) {
        model_fetch_config c = {
                .l = f->l,
                .http = f->http,
                .stage_fd = f->stage_fd,
                .max_parallel = parallel,
                .retry_base_ms = 50,
                .stall_timeout_s = stall_s,
                .on_done = on_done,
                .userdata = f,
        };
        model_fetch *mf = NULL;

        assert_int_equal(model_fetch_new(&c, &mf), 0);
        f->done = false;
        f->r = 1;
        f->msg[0] = '\0';
        return mf;
}

static void add(fx *f, model_fetch *mf, const char *path, const char *stage, uint64_t size, bool known,
                const char *sha) {
        char url[256];
        model_fetch_spec s = { .url = url, .stage_name = stage, .size = size, .size_known = known, .sha256 = sha };

        snprintf(url, sizeof url, "http://127.0.0.1:%d%s", f->port, path);
        assert_int_equal(model_fetch_add(mf, &s), 0);
}

static void run(fx *f, model_fetch *mf) {
        uint64_t deadline = util_mono_ms() + 60000;

        assert_int_equal(model_fetch_start(mf), 0);
        assert_false(f->done); /* never from inside start */
        while (!f->done && util_mono_ms() < deadline)
                loop_run_once(f->l, 100);
        assert_true(f->done);
        print_message("fetch: r=%d %s\n", f->r, f->msg);
}

static void assert_staged(fx *f, const char *stage, const void *data, size_t len) {
        struct stat st;
        char *got = NULL;
        size_t glen = 0;
        int fd = openat(f->stage_fd, stage, O_RDONLY | O_CLOEXEC);

        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        close(fd);
        assert_int_equal((size_t)st.st_size, len);
        assert_int_equal(util_read_file_at(f->stage_fd, stage, len + 1, &got, &glen), 0);
        assert_int_equal(glen, len);
        assert_memory_equal(got, data, len);
        free(got);
}

static void test_plain(void **state) {
        fx *f = *state;
        model_fetch *mf = new_fetch(f, 0, 0);
        model_fetch_progress p;
        char sha[65];
        uint64_t size;

        add(f, mf, "/big.bin", "big", BIG, true, f->big_sha);
        add(f, mf, "/small.txt", "small", 0, false, NULL);
        model_fetch_get_progress(mf, &p);
        assert_false(p.total_known);
        run(f, mf);
        assert_int_equal(f->r, 0);
        assert_int_equal(model_fetch_file_result(mf, 0, &size, sha), 0);
        assert_true(size == BIG);
        assert_string_equal(sha, f->big_sha);
        assert_int_equal(model_fetch_file_result(mf, 1, &size, sha), 0);
        assert_int_equal(size, 6);
        assert_staged(f, "small", "hello\n", 6);
        model_fetch_get_progress(mf, &p);
        assert_true(p.total_known);
        assert_true(p.bytes_done == BIG + 6);
        assert_int_equal(p.files_done, 2);
        assert_int_equal(served(f, "/big.bin", "bytes"), BIG);
        /* The .meta files are gone once verified. */
        assert_int_equal(faccessat(f->stage_fd, "big.meta", F_OK, 0), -1);
        model_fetch_free(mf);
}

/* Leaves what an interrupted attempt leaves: `have` bytes and a .meta with
 * the server's current ETag. */
static void leave_partial(fx *f, const char *stage, const char *path, size_t have) {
        char url[128], url_hash[65], meta[160], *s;
        struct curl_header *h = NULL;
        CURL *c = curl_easy_init();
        json_t *m;
        int fd;

        snprintf(url, sizeof url, "http://127.0.0.1:%d%s", f->port, path);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        assert_int_equal(curl_easy_header(c, "ETag", 0, CURLH_HEADER, -1, &h), CURLHE_OK);
        hex_sha256(url, strlen(url), url_hash);
        m = json_pack("{s:s,s:s,s:s}", "urlSha256", url_hash, "etag", h->value, "lastModified", "");
        s = json_dumps(m, 0);
        snprintf(meta, sizeof meta, "%s.meta", stage);
        assert_int_equal(model_cache_write_atomic(f->stage_fd, meta, s, strlen(s), 0644), 0);
        free(s);
        json_decref(m);
        curl_easy_cleanup(c);
        fd = openat(f->stage_fd, stage, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, f->big, have), (ssize_t)have);
        close(fd);
        json_decref(ctl(f, "/_ctl/reset", "{}"));
}

static void test_resume_partial(void **state) {
        fx *f = *state;
        model_fetch *mf;
        json_t *st, *req0;

        leave_partial(f, "big", "/big.bin", 1 << 20);
        mf = new_fetch(f, 0, 0);
        add(f, mf, "/big.bin", "big", BIG, true, f->big_sha);
        run(f, mf);
        assert_int_equal(f->r, 0);
        assert_staged(f, "big", f->big, BIG);
        /* Only the missing bytes were served, with a ranged, validated request. */
        assert_int_equal(served(f, "/big.bin", "bytes"), BIG - (1 << 20));
        st = ctl(f, "/_ctl/requests", NULL);
        req0 = json_array_get(json_object_get(st, "requests"), 0);
        assert_string_equal(json_string_value(json_object_get(req0, "range")), "bytes=1048576-");
        assert_non_null(json_string_value(json_object_get(req0, "ifRange")));
        json_decref(st);
        model_fetch_free(mf);
}

static void test_partial_without_meta(void **state) {
        fx *f = *state;
        model_fetch *mf;

        /* No .meta and no digest to check against: the bytes are dropped. */
        leave_partial(f, "x", "/big.bin", 1000);
        assert_int_equal(unlinkat(f->stage_fd, "x.meta", 0), 0);
        mf = new_fetch(f, 0, 0);
        add(f, mf, "/big.bin", "x", BIG, true, NULL);
        run(f, mf);
        assert_int_equal(f->r, 0);
        assert_int_equal(served(f, "/big.bin", "bytes"), BIG);
        model_fetch_free(mf);
        /* Kept bytes that turn out wrong: restarted from 0 once, then fine. */
        leave_partial(f, "y", "/big.bin", 4096);
        {
                int fd = openat(f->stage_fd, "y", O_WRONLY | O_CLOEXEC);
                assert_int_equal(pwrite(fd, "garbage", 7, 100), 7);
                close(fd);
        }
        mf = new_fetch(f, 0, 0);
        add(f, mf, "/big.bin", "y", BIG, true, f->big_sha);
        run(f, mf);
        assert_int_equal(f->r, 0);
        assert_staged(f, "y", f->big, BIG);
        assert_int_equal(served(f, "/big.bin", "bytes"), BIG - 4096 + BIG);
        model_fetch_free(mf);
}

static void test_complete_partial_needs_no_request(void **state) {
        fx *f = *state;
        model_fetch *mf;
        int fd = openat(f->stage_fd, "big", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, f->big, BIG), BIG);
        close(fd);
        mf = new_fetch(f, 0, 0);
        add(f, mf, "/big.bin", "big", BIG, true, f->big_sha);
        run(f, mf);
        assert_int_equal(f->r, 0);
        assert_int_equal(served(f, "/big.bin", "requests"), 0);
        model_fetch_free(mf);
}

static void test_faults_retried(void **state) {
        fx *f = *state;
        static const char *const faults[] = {
                "{\"path\":\"/big.bin\",\"mode\":\"drop\",\"after\":500000}",
                "{\"path\":\"/big.bin\",\"mode\":\"error\",\"status\":500,\"count\":2}",
                "{\"path\":\"/big.bin\",\"mode\":\"short\",\"after\":700000}",
                "{\"path\":\"/big.bin\",\"mode\":\"error\",\"status\":429}",
        };
        size_t i;

        for (i = 0; i < sizeof faults / sizeof faults[0]; i++) {
                model_fetch *mf;
                char stage[16];
                json_decref(ctl(f, "/_ctl/reset", "{}"));
                json_decref(ctl(f, "/_ctl/fault", faults[i]));
                snprintf(stage, sizeof stage, "f%zu", i);
                mf = new_fetch(f, 0, 0);
                /* The short body once with the size unknown: the lying
                 * Content-Length must not stick. */
                add(f, mf, "/big.bin", stage, BIG, i != 2, f->big_sha);
                run(f, mf);
                assert_int_equal(f->r, 0);
                assert_staged(f, stage, f->big, BIG);
                /* Resumed, not restarted: at most the bytes in flight when the
                 * connection broke (a reset discards what the client had not
                 * read yet) are served twice. */
                assert_true(served(f, "/big.bin", "bytes") <= BIG + 700000);
                assert_true(served(f, "/big.bin", "requests") >= 2);
                model_fetch_free(mf);
        }
}

static void test_stall(void **state) {
        fx *f = *state;
        model_fetch *mf;
        uint64_t t0 = util_mono_ms();

        json_decref(ctl(f, "/_ctl/fault", "{\"path\":\"/big.bin\",\"mode\":\"stall\",\"after\":1000,\"seconds\":30}"));
        mf = new_fetch(f, 0, 1);
        add(f, mf, "/big.bin", "big", BIG, true, f->big_sha);
        run(f, mf);
        assert_int_equal(f->r, 0);
        assert_true(util_mono_ms() - t0 < 15000);
        assert_staged(f, "big", f->big, BIG);
        model_fetch_free(mf);
}

static void test_changed_source(void **state) {
        fx *f = *state;
        model_fetch *mf;
        unsigned char *v2 = malloc(BIG);
        char sha2[65];
        size_t i;

        assert_non_null(v2);
        for (i = 0; i < BIG; i++)
                v2[i] = (unsigned char)(f->big[i] ^ 0x5a);
        hex_sha256(v2, BIG, sha2);
        put_file(f, "v2.bin", v2, BIG);
        /* The first response breaks after 1 MB, then the file changes: the
         * resumed request's If-Range no longer matches and the whole new
         * content comes back. */
        json_decref(ctl(f, "/_ctl/fault",
                        "{\"path\":\"/big.bin\",\"mode\":\"drop\",\"after\":1000000,\"replace_with\":\"/v2.bin\"}"));
        mf = new_fetch(f, 0, 0);
        add(f, mf, "/big.bin", "big", BIG, true, NULL);
        run(f, mf);
        assert_int_equal(f->r, 0);
        assert_staged(f, "big", v2, BIG);
        {
                json_t *st = ctl(f, "/_ctl/stats", NULL);
                json_t *statuses = json_object_get(json_object_get(json_object_get(st, "paths"), "/big.bin"), "statuses");
                assert_int_equal(json_integer_value(json_array_get(statuses, 1)), 200);
                json_decref(st);
        }
        model_fetch_free(mf);
        /* Expected digest of the old content: mismatch once restarted too. */
        free(v2);
        (void)sha2;
}

static void test_errors(void **state) {
        fx *f = *state;
        model_fetch *mf;
        struct stat st;

        mf = new_fetch(f, 0, 0);
        add(f, mf, "/big.bin", "bad", BIG, true, "0000000000000000000000000000000000000000000000000000000000000000");
        run(f, mf);
        assert_int_equal(f->r, -EBADMSG);
        assert_non_null(strstr(f->msg, "checksum mismatch"));
        assert_int_equal(fstatat(f->stage_fd, "bad", &st, 0), -1); /* nothing kept */
        model_fetch_free(mf);

        mf = new_fetch(f, 0, 0);
        add(f, mf, "/missing.bin", "m", 0, false, NULL);
        run(f, mf);
        assert_int_equal(f->r, -ENOENT);
        assert_non_null(strstr(f->msg, "404"));
        model_fetch_free(mf);

        mf = new_fetch(f, 0, 0);
        add(f, mf, "/big.bin", "sz", BIG - 1, true, NULL);
        run(f, mf);
        assert_int_equal(f->r, -ESTALE);
        assert_non_null(strstr(f->msg, "gave up"));
        model_fetch_free(mf);

        json_decref(ctl(f, "/_ctl/fault", "{\"path\":\"/small.txt\",\"mode\":\"error\",\"status\":403}"));
        mf = new_fetch(f, 0, 0);
        add(f, mf, "/small.txt", "s", 0, false, NULL);
        run(f, mf);
        assert_int_equal(f->r, -EACCES);
        model_fetch_free(mf);

        /* Connection refused, retried, then given up. */
        {
                model_fetch_config c = { .l = f->l, .http = f->http, .stage_fd = f->stage_fd, .max_attempts = 2,
                                         .retry_base_ms = 10, .on_done = on_done, .userdata = f };
                model_fetch_spec s = { .url = "http://127.0.0.1:1/x", .stage_name = "r" };
                assert_int_equal(model_fetch_new(&c, &mf), 0);
                assert_int_equal(model_fetch_add(mf, &s), 0);
                f->done = false;
                run(f, mf);
                assert_int_equal(f->r, -ECONNREFUSED);
                assert_non_null(strstr(f->msg, "gave up after 2 attempts"));
                model_fetch_free(mf);
        }
}

static void test_other_digests(void **state) {
        fx *f = *state;
        char md5[33], git[41], head[32], url[128];
        model_fetch *mf;
        int n = snprintf(head, sizeof head, "blob %d", BIG);

        hex_digest(EVP_md5(), NULL, 0, f->big, BIG, md5);
        hex_digest(EVP_sha1(), head, (size_t)n + 1, f->big, BIG, git);
        snprintf(url, sizeof url, "http://127.0.0.1:%d/big.bin", f->port);
        {
                model_fetch_spec a = { .url = url, .stage_name = "a", .size = BIG, .size_known = true, .md5 = md5 };
                model_fetch_spec b = { .url = url, .stage_name = "b", .size = BIG, .size_known = true, .git_sha1 = git };
                mf = new_fetch(f, 0, 0);
                assert_int_equal(model_fetch_add(mf, &a), 0);
                assert_int_equal(model_fetch_add(mf, &b), 0);
                run(f, mf);
                assert_int_equal(f->r, 0);
                model_fetch_free(mf);
        }
        {
                model_fetch_spec a = { .url = url, .stage_name = "c", .size = BIG, .size_known = true,
                                       .md5 = "00000000000000000000000000000000" };
                mf = new_fetch(f, 0, 0);
                assert_int_equal(model_fetch_add(mf, &a), 0);
                run(f, mf);
                assert_int_equal(f->r, -EBADMSG);
                assert_non_null(strstr(f->msg, "md5"));
                model_fetch_free(mf);
        }
        {
                /* Bad specs are refused. */
                model_fetch_spec bad[] = {
                        { .url = url, .stage_name = "../x" },
                        { .url = url, .stage_name = ".hidden" },
                        { .url = url, .stage_name = "x", .sha256 = "abc" },
                        { .url = url, .stage_name = "x", .git_sha1 = git }, /* needs a size */
                        { .url = NULL, .stage_name = "x" },
                };
                size_t i;
                mf = new_fetch(f, 0, 0);
                for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
                        assert_int_equal(model_fetch_add(mf, &bad[i]), -EINVAL);
                model_fetch_free(mf);
        }
}

static void test_parallel_and_empty(void **state) {
        fx *f = *state;
        model_fetch *mf;
        char name[32], stage[32];
        int i;

        for (i = 0; i < 8; i++) {
                snprintf(name, sizeof name, "p%d.bin", i);
                put_file(f, name, f->big + i * 1000, 200000);
        }
        mf = new_fetch(f, 2, 0);
        for (i = 0; i < 8; i++) {
                char sha[65];
                snprintf(name, sizeof name, "/p%d.bin", i);
                snprintf(stage, sizeof stage, "p%d", i);
                hex_sha256(f->big + i * 1000, 200000, sha);
                add(f, mf, name, stage, 200000, true, sha);
        }
        run(f, mf);
        assert_int_equal(f->r, 0);
        model_fetch_free(mf);
        /* No files at all: done on a later turn. */
        mf = new_fetch(f, 0, 0);
        run(f, mf);
        assert_int_equal(f->r, 0);
        assert_int_equal(model_fetch_start(mf), -EALREADY);
        model_fetch_free(mf);
}

static void test_free_while_running(void **state) {
        fx *f = *state;
        model_fetch *mf;
        int i;

        json_decref(ctl(f, "/_ctl/fault", "{\"path\":\"/big.bin\",\"mode\":\"trickle\",\"rate\":200000}"));
        mf = new_fetch(f, 0, 0);
        add(f, mf, "/big.bin", "big", BIG, true, f->big_sha);
        assert_int_equal(model_fetch_start(mf), 0);
        for (i = 0; i < 20; i++)
                loop_run_once(f->l, 50);
        assert_false(f->done);
        model_fetch_free(mf);
        for (i = 0; i < 5; i++)
                loop_run_once(f->l, 10);
        assert_false(f->done);
        assert_null(model_fetch_free(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_plain, setup, teardown),
                cmocka_unit_test_setup_teardown(test_resume_partial, setup, teardown),
                cmocka_unit_test_setup_teardown(test_partial_without_meta, setup, teardown),
                cmocka_unit_test_setup_teardown(test_complete_partial_needs_no_request, setup, teardown),
                cmocka_unit_test_setup_teardown(test_faults_retried, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stall, setup, teardown),
                cmocka_unit_test_setup_teardown(test_changed_source, setup, teardown),
                cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_other_digests, setup, teardown),
                cmocka_unit_test_setup_teardown(test_parallel_and_empty, setup, teardown),
                cmocka_unit_test_setup_teardown(test_free_while_running, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
