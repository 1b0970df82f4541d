/* Unit tests of src/models/model_cmd.c through the real command engine and a
 * database in a private directory, against tests/helpers/dl-server.py
 * (plain files and the Hub stand-in; skipped when python3 is missing):
 * validation (2001, traversal), http and Hugging Face downloads with the
 * cache layout, progress events, model.cache without network, coalesced
 * duplicates, a second request waiting for the first, private repositories,
 * model.list, model.delete (2003, 2007 in use, force), a download
 * resumed by a new engine after the first one went away mid-transfer, and
 * model_cmd_ensure(): download with progress, no network when complete,
 * joining a command's transfer, invalid data, cancellation (from outside,
 * from inside progress, before delivery, after the engine went away) and
 * the error code a command would get. */
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

#include "commands/cmd.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "models/model_cache.h"
#include "models/model_cmd.h"
#include "state/db.h"

#define SERVER AIWM_FIXTURES "/../helpers/dl-server.py"
#define HUB AIWM_FIXTURES "/hf"
#define BIG (2 * 1024 * 1024 + 5)
#define TINY_COMMIT "7c8a2f3e9d1b4a6c5e0f1a2b3c4d5e6f70819203"
#define PRIVATE_TOKEN "hf_aiwmTestTokenPrivateRepo0123456789"

extern char **environ;

typedef struct T {
        char base[64], www[96], cache[96], state[96];
        pid_t server;
        int port;
        loop *l;
        db *d;
        cmd_engine *e;
        json_t *sent;
        unsigned char *big;
        char big_sha[65];
        int fds_before;
} T;

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

static size_t sink(char *p, size_t s, size_t n, void *ud) {
        buf_append(ud, p, s * n);
        return s * n;
}

static json_t *ctl(T *t, const char *path, const char *body) {
        CURL *c = curl_easy_init();
        char url[256];
        buf b;
        json_t *j;

        buf_init(&b, 0);
        snprintf(url, sizeof url, "http://127.0.0.1:%d%s", t->port, path);
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

static json_int_t served(T *t, const char *path, const char *what) {
        json_t *s = ctl(t, "/_ctl/stats", NULL);
        json_int_t v = json_integer_value(json_object_get(json_object_get(json_object_get(s, "paths"), path), what));

        json_decref(s);
        return v;
}

static json_int_t served_total(T *t) {
        json_t *s = ctl(t, "/_ctl/stats", NULL);
        json_int_t v = json_integer_value(json_object_get(s, "totalBytes"));

        json_decref(s);
        return v;
}

/* ---- engine ---- */

static void drain(T *t) {
        int64_t id;
        char *json;

        while (db_outbox_next(t->d, 0, &id, NULL, &json) == 0) {
                json_t *env = json_loads(json, 0, NULL);
                assert_non_null(env);
                free(json);
                assert_int_equal(db_outbox_delete(t->d, id), 0);
                json_array_append_new(t->sent, env);
        }
}

static void host_notify(void *ud) {
        drain(ud);
}

static void engine_up(T *t) {
        cmd_host host = { .l = t->l, .db = t->d, .node_id = "node-1", .ud = t, .outbox_notify = host_notify };
        model_cmd_config mc = { .model_cache_dir = t->cache, .retry_base_ms = 50 };
        char err[256];

        assert_int_equal(cmd_engine_new(&host, NULL, &t->e), 0);
        assert_int_equal(model_cmd_register(t->e, &mc), 0);
        assert_int_equal(cmd_engine_start(t->e, err, sizeof err), 0);
}

static void engine_down(T *t) {
        t->e = cmd_engine_free(t->e);
        loop_run_once(t->l, 0);
}

static int setup(void **state) {
        T *t = calloc(1, sizeof *t);
        char portfile[128], *argv[10], *text = NULL, hf[160], err[256];
        size_t i, len;

        assert_non_null(t);
        if (access(SERVER, R_OK) != 0 || system("python3 -c 'import http.server' 2>/dev/null") != 0) {
                free(t);
                skip();
        }
        log_set_level(LOG_ERROR);
        t->fds_before = count_fds();
        snprintf(t->base, sizeof t->base, "/tmp/test-model-cmd.XXXXXX");
        assert_non_null(mkdtemp(t->base));
        snprintf(t->www, sizeof t->www, "%s/www", t->base);
        snprintf(t->cache, sizeof t->cache, "%s/models", t->base);
        snprintf(t->state, sizeof t->state, "%s/state", t->base);
        assert_int_equal(mkdir(t->www, 0755), 0);
        snprintf(portfile, sizeof portfile, "%s/port", t->base);
        argv[0] = "python3";
        argv[1] = SERVER;
        argv[2] = "--root";
        argv[3] = t->www;
        argv[4] = "--hub";
        argv[5] = HUB;
        argv[6] = "--port-file";
        argv[7] = portfile;
        argv[8] = NULL;
        {
                posix_spawn_file_actions_t fa;
                posix_spawn_file_actions_init(&fa);
                posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
                assert_int_equal(posix_spawnp(&t->server, "python3", &fa, NULL, argv, environ), 0);
                posix_spawn_file_actions_destroy(&fa);
        }
        for (i = 0; i < 100 && util_read_file(portfile, 64, &text, &len) < 0; i++)
                usleep(50000);
        assert_non_null(text);
        t->port = atoi(text);
        free(text);
        snprintf(hf, sizeof hf, "http://127.0.0.1:%d", t->port);
        setenv("HF_ENDPOINT", hf, 1);
        unsetenv("HF_TOKEN");
        t->big = malloc(BIG);
        assert_non_null(t->big);
        for (i = 0; i < BIG; i++)
                t->big[i] = (unsigned char)((i * 2246822519u) >> 11);
        hex_sha256(t->big, BIG, t->big_sha);
        {
                char p[160];
                FILE *o;
                snprintf(p, sizeof p, "%s/big.bin", t->www);
                o = fopen(p, "wb");
                assert_non_null(o);
                assert_int_equal(fwrite(t->big, 1, BIG, o), BIG);
                fclose(o);
                snprintf(p, sizeof p, "%s/small.txt", t->www);
                o = fopen(p, "wb");
                fputs("hello\n", o);
                fclose(o);
        }
        assert_int_equal(loop_new(&t->l), 0);
        assert_int_equal(db_open(t->state, err, sizeof err, &t->d), 0);
        t->sent = json_array();
        engine_up(t);
        *state = t;
        return 0;
}

static int teardown(void **state) {
        T *t = *state;
        char cmd[200];
        int st;

        if (!t)
                return 0;
        engine_down(t);
        t->d = db_close(t->d);
        t->l = loop_free(t->l);
        kill(t->server, SIGTERM);
        waitpid(t->server, &st, 0);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->base);
        assert_int_equal(system(cmd), 0);
        json_decref(t->sent);
        free(t->big);
        model_cache_set_in_use(NULL, NULL);
        assert_int_equal(count_fds(), t->fds_before);
        free(t);
        return 0;
}

/* Sends a command envelope with data built from data_fmt. */
static void send_cmd(T *t, const char *mid, const char *type, const char *model, const char *data_fmt, ...)
        __attribute__((format(printf, 5, 6)));

static void send_cmd(T *t, const char *mid, const char *type, const char *model, const char *data_fmt, ...) {
        char data[4096], err[256];
        va_list ap;
        json_t *env, *d;

        va_start(ap, data_fmt);
        vsnprintf(data, sizeof data, data_fmt, ap);
        va_end(ap);
        d = json_loads(data, 0, NULL);
        assert_non_null(d);
        env = json_pack("{s:s,s:s,s:s,s:{s:s,s:s},s:o,s:{s:s}}", "type", type, "messageId", mid, "timestamp",
                        "2026-11-28T02:52:27.169Z", "resource", "type", "model", "id", model, "data", d,
                        "metadata", "priority", "normal");
        assert_int_equal(cmd_engine_receive(t->e, env, err, sizeof err), 0);
        json_decref(env);
}

static json_t *find_result(T *t, const char *mid) {
        size_t i;
        json_t *e;

        json_array_foreach(t->sent, i, e) {
                if (!strcmp(json_string_value(json_object_get(e, "type")), "command.result") &&
                    !strcmp(json_string_value(json_object_get(json_object_get(e, "data"), "originalMessageId")), mid))
                        return json_object_get(e, "data");
        }
        return NULL;
}

static json_t *wait_result(T *t, const char *mid) {
        uint64_t deadline = util_mono_ms() + 60000;
        json_t *r;

        while (!(r = find_result(t, mid)) && util_mono_ms() < deadline)
                loop_run_once(t->l, 50);
        assert_non_null(r);
        {
                char *s = json_dumps(r, JSON_COMPACT);
                print_message("result %s: %.600s\n", mid, s);
                free(s);
        }
        return r;
}

static const char *status_of(json_t *r) {
        return json_string_value(json_object_get(r, "status"));
}

static const char *code_of(json_t *r) {
        return json_string_value(json_object_get(json_object_get(r, "error"), "code"));
}

static size_t count_progress(T *t, const char *mid, const char *status) {
        size_t i, n = 0;
        json_t *e;

        json_array_foreach(t->sent, i, e) {
                json_t *d = json_object_get(e, "data");
                if (strcmp(json_string_value(json_object_get(e, "type")), "model.downloadProgress") != 0)
                        continue;
                if (strcmp(json_string_value(json_object_get(d, "originalMessageId")), mid) != 0)
                        continue;
                if (!status || !strcmp(json_string_value(json_object_get(d, "status")), status))
                        n++;
        }
        return n;
}

/* ---- tests ---- */

static void test_validation(void **state) {
        T *t = *state;
        static const struct {
                const char *data, *want;
        } cases[] = {
                { "{\"source\":\"ftp\",\"sourcePath\":\"x\",\"targetPath\":\"m\"}", "data.source" },
                { "{\"source\":\"http\",\"targetPath\":\"m\"}", "data.sourcePath" },
                { "{\"source\":\"http\",\"sourcePath\":\"ftp://h/x\",\"targetPath\":\"m\"}", "URL" },
                { "{\"source\":\"http\",\"sourcePath\":\"http://h/x\"}", "data.targetPath" },
                { "{\"source\":\"http\",\"sourcePath\":\"http://h/x\",\"targetPath\":\"../x\"}", "\"..\"" },
                { "{\"source\":\"http\",\"sourcePath\":\"http://h/x\",\"targetPath\":\"/etc/x\"}", "outside" },
                { "{\"source\":\"http\",\"sourcePath\":\"http://h/x\",\"targetPath\":\"hub/x\"}", "reserved" },
                { "{\"source\":\"http\",\"sourcePath\":\"http://h/x\",\"targetPath\":\"m\",\"sha256\":\"zz\"}", "sha256" },
                { "{\"source\":\"http\",\"sourcePath\":\"x\",\"targetPath\":\"m\",\"files\":[{\"url\":\"http://h/a\","
                  "\"path\":\"../a\"}]}",
                  "files[].path" },
                { "{\"source\":\"http\",\"sourcePath\":\"x\",\"targetPath\":\"m\",\"files\":[{\"url\":\"http://h/a\","
                  "\"path\":\"a\"},{\"url\":\"http://h/b\",\"path\":\"a\"}]}",
                  "twice" },
                { "{\"source\":\"huggingface\",\"sourcePath\":\"a/b/c\",\"targetPath\":\"m\"}", "repo id" },
                { "{\"source\":\"huggingface\",\"sourcePath\":\"a/b\",\"version\":\"..\",\"targetPath\":\"m\"}", "revision" },
                { "{\"source\":\"huggingface\",\"sourcePath\":\"a/b\",\"targetPath\":\"m\",\"include\":5}", "patterns" },
                { "{\"source\":\"minio\",\"sourcePath\":\"B!/x\",\"targetPath\":\"m\"}", "bucket" },
                { "{\"source\":\"minio\",\"sourcePath\":\"bucket/x\",\"targetPath\":\"m\"}", "S3 endpoint" },
                { "{\"source\":\"http\",\"sourcePath\":\"http://h/x\",\"targetPath\":\"m\",\"credentials\":\"x\"}",
                  "credentials" },
        };
        char mid[32];
        size_t i;

        unsetenv("S3_ENDPOINT");
        for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                json_t *r;
                snprintf(mid, sizeof mid, "v-%zu", i);
                send_cmd(t, mid, "model.download", "m", "%s", cases[i].data);
                r = wait_result(t, mid);
                assert_string_equal(status_of(r), "error");
                assert_string_equal(code_of(r), "2001");
                assert_non_null(strstr(json_string_value(json_object_get(json_object_get(r, "error"), "message")),
                                       cases[i].want));
        }
        /* A symbolic link inside the cache that leads out. */
        {
                char p[160];
                json_t *r;
                snprintf(p, sizeof p, "%s/evil", t->cache);
                assert_int_equal(symlink("/tmp", p), 0);
                send_cmd(t, "v-link", "model.download", "m",
                         "{\"source\":\"http\",\"sourcePath\":\"http://h/x\",\"targetPath\":\"evil/m\"}");
                r = wait_result(t, "v-link");
                assert_string_equal(code_of(r), "2001");
        }
}

static void test_http_then_cache(void **state) {
        T *t = *state;
        json_t *r, *res, *mf = NULL;
        char p[200];
        struct stat st;

        send_cmd(t, "d1", "model.download", "m1",
                 "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":\"m1\","
                 "\"sha256\":\"%s\",\"credentials\":{\"token\":\"never-logged\"}}",
                 t->port, t->big_sha);
        r = wait_result(t, "d1");
        assert_string_equal(status_of(r), "success");
        res = json_object_get(r, "result");
        snprintf(p, sizeof p, "%s/m1", t->cache);
        assert_string_equal(json_string_value(json_object_get(res, "path")), p);
        assert_int_equal(json_integer_value(json_object_get(res, "sizeBytes")), BIG);
        assert_int_equal(json_integer_value(json_object_get(res, "files")), 1);
        assert_string_equal(json_string_value(json_object_get(res, "source")), "http");
        assert_non_null(json_object_get(res, "downloadedAt"));
        snprintf(p, sizeof p, "%s/m1/big.bin", t->cache);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_size, BIG);
        assert_int_equal(count_progress(t, "d1", "completed"), 1);
        assert_true(count_progress(t, "d1", "downloading") >= 1);
        /* Manifest: no credentials, a hash of the URL. */
        {
                model_cache *c = NULL;
                char err[128], *s;
                assert_int_equal(model_cache_open(t->cache, &c, err, sizeof err), 0);
                assert_int_equal(model_cache_manifest_read(c, "m1", &mf), 0);
                s = json_dumps(mf, 0);
                assert_null(strstr(s, "never-logged"));
                assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(mf, "files"), 0),
                                                                      "sha256")),
                                    t->big_sha);
                free(s);
                json_decref(mf);
                model_cache_free(c);
        }
        /* The staging area is empty again. */
        snprintf(p, sizeof p, "%s/.staging/t-m1", t->cache);
        assert_int_equal(stat(p, &st), -1);
        /* model.cache: already there, no request at all. */
        json_decref(ctl(t, "/_ctl/reset", "{}"));
        send_cmd(t, "c1", "model.cache", "m1",
                 "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":\"m1\"}", t->port);
        r = wait_result(t, "c1");
        assert_string_equal(status_of(r), "success");
        res = json_object_get(r, "result");
        assert_true(json_is_true(json_object_get(res, "alreadyCached")));
        assert_int_equal(json_integer_value(json_object_get(res, "sizeBytes")), BIG);
        assert_int_equal(served_total(t), 0);
        /* model.download again: same sha256, file in place: not fetched. */
        send_cmd(t, "d1b", "model.download", "m1",
                 "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":\"m1\","
                 "\"sha256\":\"%s\"}",
                 t->port, t->big_sha);
        r = wait_result(t, "d1b");
        assert_string_equal(status_of(r), "success");
        assert_int_equal(served_total(t), 0);
        /* A damaged file is fetched again by model.cache. */
        snprintf(p, sizeof p, "%s/m1/big.bin", t->cache);
        assert_int_equal(truncate(p, 10), 0);
        send_cmd(t, "c2", "model.cache", "m1",
                 "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":\"m1\"}", t->port);
        r = wait_result(t, "c2");
        assert_string_equal(status_of(r), "success");
        assert_false(json_is_true(json_object_get(json_object_get(r, "result"), "alreadyCached")));
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_size, BIG);
}

static void test_checksum_mismatch(void **state) {
        T *t = *state;
        json_t *r;
        char p[200];
        struct stat st;

        send_cmd(t, "x1", "model.download", "bad",
                 "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":\"bad\","
                 "\"sha256\":\"%064d\"}",
                 t->port, 0);
        r = wait_result(t, "x1");
        assert_string_equal(status_of(r), "error");
        assert_string_equal(code_of(r), "3001");
        assert_non_null(strstr(json_string_value(json_object_get(json_object_get(r, "error"), "message")), "checksum"));
        snprintf(p, sizeof p, "%s/bad/big.bin", t->cache);
        assert_int_equal(stat(p, &st), -1); /* nothing placed */
        assert_int_equal(count_progress(t, "x1", "failed"), 1);
        send_cmd(t, "x2", "model.download", "nf",
                 "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/nope.bin\",\"targetPath\":\"nf\"}", t->port);
        r = wait_result(t, "x2");
        assert_string_equal(code_of(r), "2003");
}

static void test_coalesce(void **state) {
        T *t = *state;
        json_t *r1, *r2, *r3;

        json_decref(ctl(t, "/_ctl/fault", "{\"path\":\"/big.bin\",\"mode\":\"trickle\",\"rate\":2000000}"));
        send_cmd(t, "a1", "model.download", "same",
                 "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":\"same\"}", t->port);
        send_cmd(t, "a2", "model.download", "same",
                 "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":\"same\"}", t->port);
        /* Same place, other parameters: waits for the first, then runs. */
        send_cmd(t, "a3", "model.download", "same2",
                 "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/small.txt\",\"targetPath\":\"same\"}",
                 t->port);
        r1 = wait_result(t, "a1");
        r2 = wait_result(t, "a2");
        r3 = wait_result(t, "a3");
        assert_string_equal(status_of(r1), "success");
        assert_string_equal(status_of(r2), "success");
        assert_string_equal(status_of(r3), "success");
        assert_true(json_equal(json_object_get(json_object_get(r1, "result"), "path"),
                               json_object_get(json_object_get(r2, "result"), "path")));
        /* One transfer for the two identical requests. */
        assert_int_equal(served(t, "/big.bin", "requests"), 1);
        assert_int_equal(served(t, "/big.bin", "bytes"), BIG);
        assert_int_equal(count_progress(t, "a2", "completed"), 1);
        /* Progress at most once a second (plus start and end). */
        assert_true(count_progress(t, "a1", "downloading") <= 4);
}

static void test_hf(void **state) {
        T *t = *state;
        json_t *r, *res;
        char p[300], link[200];
        struct stat st;
        ssize_t n;

        send_cmd(t, "h1", "model.download", "tiny",
                 "{\"source\":\"huggingface\",\"sourcePath\":\"aiwm-test/tiny-model\",\"targetPath\":\"tiny\","
                 "\"exclude\":[\"*.md\"]}");
        r = wait_result(t, "h1");
        assert_string_equal(status_of(r), "success");
        res = json_object_get(r, "result");
        snprintf(p, sizeof p, "%s/hub/models--aiwm-test--tiny-model/snapshots/" TINY_COMMIT, t->cache);
        assert_string_equal(json_string_value(json_object_get(res, "path")), p);
        assert_string_equal(json_string_value(json_object_get(res, "revision")), TINY_COMMIT);
        assert_int_equal(json_integer_value(json_object_get(res, "files")), 5);
        snprintf(p, sizeof p, "%s/hub/models--aiwm-test--tiny-model/snapshots/" TINY_COMMIT "/onnx/model.onnx",
                 t->cache);
        n = readlink(p, link, sizeof link - 1);
        assert_true(n > 0);
        link[n] = '\0';
        assert_string_equal(link, "../../../blobs/f8aed270a592b255d90b04785c0b130a968ae204948fc2755db1861c810c6c83");
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_size, 20000);
        snprintf(p, sizeof p, "%s/hub/models--aiwm-test--tiny-model/snapshots/" TINY_COMMIT "/README.md", t->cache);
        assert_int_equal(lstat(p, &st), -1); /* excluded */
        snprintf(p, sizeof p, "%s/hub/models--aiwm-test--tiny-model/refs/main", t->cache);
        {
                char *s = NULL;
                size_t len;
                assert_int_equal(util_read_file(p, 100, &s, &len), 0);
                assert_string_equal(s, TINY_COMMIT);
                free(s);
        }
        /* The CDN never saw the token (there was none here; see below). */
        json_decref(ctl(t, "/_ctl/reset", "{}"));
        /* Private repository: refused without a token, fine with one. */
        send_cmd(t, "h2", "model.download", "priv",
                 "{\"source\":\"huggingface\",\"sourcePath\":\"aiwm-test/private-model\",\"targetPath\":\"priv\"}");
        r = wait_result(t, "h2");
        assert_string_equal(code_of(r), "2003");
        assert_non_null(strstr(json_string_value(json_object_get(json_object_get(r, "error"), "message")),
                               "credentials.token"));
        send_cmd(t, "h3", "model.download", "priv",
                 "{\"source\":\"huggingface\",\"sourcePath\":\"aiwm-test/private-model\",\"targetPath\":\"priv\","
                 "\"credentials\":{\"token\":\"" PRIVATE_TOKEN "\"}}");
        r = wait_result(t, "h3");
        assert_string_equal(status_of(r), "success");
        {
                json_t *s = ctl(t, "/_ctl/stats", NULL);
                assert_int_equal(json_integer_value(json_object_get(s, "cdnAuth")), 0);
                json_decref(s);
        }
        send_cmd(t, "h4", "model.download", "tiny2",
                 "{\"source\":\"huggingface\",\"sourcePath\":\"aiwm-test/tiny-model\",\"version\":\"v9\","
                 "\"targetPath\":\"tiny\"}");
        r = wait_result(t, "h4");
        assert_string_equal(code_of(r), "2003");
        /* model.cache of the first: no network. */
        json_decref(ctl(t, "/_ctl/reset", "{}"));
        send_cmd(t, "h5", "model.cache", "tiny",
                 "{\"source\":\"huggingface\",\"sourcePath\":\"aiwm-test/tiny-model\",\"targetPath\":\"tiny\","
                 "\"exclude\":[\"*.md\"]}");
        r = wait_result(t, "h5");
        assert_true(json_is_true(json_object_get(json_object_get(r, "result"), "alreadyCached")));
        assert_int_equal(served_total(t), 0);
        {
                json_t *s = ctl(t, "/_ctl/stats", NULL);
                assert_int_equal(json_object_size(json_object_get(s, "paths")), 0);
                json_decref(s);
        }
}

static json_t *in_use(const char *path, void *ud) {
        return strstr(path, "/busy") ? json_pack("[s]", "deploy-abc") : NULL;
}

static void test_list_delete(void **state) {
        T *t = *state;
        json_t *r, *models;
        char p[200];
        struct stat st;
        size_t i;

        model_cache_set_in_use(in_use, NULL);
        send_cmd(t, "l0", "model.download", "busy",
                 "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/small.txt\",\"targetPath\":\"busy\"}", t->port);
        assert_string_equal(status_of(wait_result(t, "l0")), "success");
        send_cmd(t, "l1", "model.download", "idle",
                 "{\"source\":\"http\",\"targetPath\":\"idle/x\",\"sourcePath\":\"-\",\"files\":[{\"url\":"
                 "\"http://127.0.0.1:%d/small.txt\",\"path\":\"a/one.txt\"},{\"url\":\"http://127.0.0.1:%d/small.txt\","
                 "\"path\":\"two.txt\"}]}",
                 t->port, t->port);
        assert_string_equal(status_of(wait_result(t, "l1")), "success");
        send_cmd(t, "l2", "model.list", "*", "{}");
        r = wait_result(t, "l2");
        models = json_object_get(json_object_get(r, "result"), "models");
        assert_int_equal(json_array_size(models), 2);
        for (i = 0; i < 2; i++) {
                json_t *m = json_array_get(models, i);
                const char *id = json_string_value(json_object_get(m, "modelId"));
                assert_true(json_is_true(json_object_get(m, "complete")));
                assert_non_null(json_string_value(json_object_get(m, "lastUsedAt")));
                if (!strcmp(id, "busy"))
                        assert_int_equal(json_array_size(json_object_get(m, "usedBy")), 1);
                else
                        assert_int_equal(json_integer_value(json_object_get(m, "sizeBytes")), 12);
        }
        send_cmd(t, "l3", "model.list", "idle", "{}");
        r = wait_result(t, "l3");
        assert_int_equal(json_array_size(json_object_get(json_object_get(r, "result"), "models")), 1);
        /* Delete: in use, forced, unknown. */
        send_cmd(t, "l4", "model.delete", "busy", "{}");
        r = wait_result(t, "l4");
        assert_string_equal(code_of(r), "2007");
        assert_string_equal(json_string_value(json_array_get(
                                    json_object_get(json_object_get(json_object_get(r, "error"), "details"), "usedBy"), 0)),
                            "deploy-abc");
        send_cmd(t, "l5", "model.delete", "busy", "{\"force\":true}");
        r = wait_result(t, "l5");
        assert_string_equal(status_of(r), "success");
        assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "result"), "freedBytes")), 6);
        snprintf(p, sizeof p, "%s/busy", t->cache);
        assert_int_equal(stat(p, &st), -1);
        send_cmd(t, "l6", "model.delete", "idle", "{}");
        assert_string_equal(status_of(wait_result(t, "l6")), "success");
        snprintf(p, sizeof p, "%s/idle/x", t->cache);
        assert_int_equal(stat(p, &st), -1);
        send_cmd(t, "l7", "model.delete", "ghost", "{}");
        assert_string_equal(code_of(wait_result(t, "l7")), "2003");
        send_cmd(t, "l8", "model.list", "*", "{}");
        r = wait_result(t, "l8");
        assert_int_equal(json_array_size(json_object_get(json_object_get(r, "result"), "models")), 0);
        /* Deleting a Hugging Face model removes its hub entry. */
        send_cmd(t, "l9", "model.download", "tiny",
                 "{\"source\":\"huggingface\",\"sourcePath\":\"aiwm-test/tiny-model\",\"targetPath\":\"tiny\"}");
        assert_string_equal(status_of(wait_result(t, "l9")), "success");
        send_cmd(t, "l10", "model.delete", "tiny", "{}");
        r = wait_result(t, "l10");
        assert_string_equal(status_of(r), "success");
        /* The files and refs/main (40 bytes). */
        assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "result"), "freedBytes")), 32551 + 40);
        snprintf(p, sizeof p, "%s/hub/models--aiwm-test--tiny-model", t->cache);
        assert_int_equal(stat(p, &st), -1);
}

static void test_resume_after_restart(void **state) {
        T *t = *state;
        json_t *r;
        uint64_t deadline;
        char p[200];
        struct stat st;

        json_decref(ctl(t, "/_ctl/fault", "{\"path\":\"/big.bin\",\"mode\":\"trickle\",\"rate\":400000}"));
        send_cmd(t, "r1", "model.download", "res",
                 "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":\"res\","
                 "\"sha256\":\"%s\"}",
                 t->port, t->big_sha);
        /* Let about 1 MB arrive, then the worker "stops". */
        snprintf(p, sizeof p, "%s/.staging/t-res", t->cache);
        deadline = util_mono_ms() + 20000;
        for (;;) {
                DIR *d;
                struct dirent *e;
                off_t size = 0;
                loop_run_once(t->l, 50);
                d = opendir(p);
                while (d && (e = readdir(d))) {
                        char f[512];
                        snprintf(f, sizeof f, "%s/%s", p, e->d_name);
                        if (e->d_name[0] == 'f' && !strstr(e->d_name, ".meta") && stat(f, &st) == 0)
                                size = st.st_size;
                }
                if (d)
                        closedir(d);
                if (size > 1000000 || util_mono_ms() > deadline)
                        break;
        }
        engine_down(t);
        assert_null(find_result(t, "r1"));
        json_decref(ctl(t, "/_ctl/faults", NULL));
        {
                /* No more trickling for the rest. */
                CURL *c = curl_easy_init();
                char url[128];
                snprintf(url, sizeof url, "http://127.0.0.1:%d/_ctl/faults", t->port);
                curl_easy_setopt(c, CURLOPT_URL, url);
                curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
                curl_easy_setopt(c, CURLOPT_NOBODY, 0L);
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
                {
                        buf b;
                        buf_init(&b, 0);
                        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
                        curl_easy_perform(c);
                        buf_done(&b);
                }
                curl_easy_cleanup(c);
        }
        engine_up(t);
        r = wait_result(t, "r1");
        assert_string_equal(status_of(r), "success");
        /* The bytes on disk were not fetched again. */
        assert_true(served(t, "/big.bin", "bytes") < BIG + 600000);
        assert_int_equal(served(t, "/big.bin", "requests"), 2);
        snprintf(p, sizeof p, "%s/res/big.bin", t->cache);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_size, BIG);
}

/* ---- model_cmd_ensure() ---- */

typedef struct ens {
        int done, progress;
        int r;
        bool path_null;
        char path[512], code[16], message[700], status[32];
        uint64_t size;
        model_ensure *h;
        bool cancel_in_progress;
} ens;

static void ens_progress(const json_t *p, void *ud) {
        ens *e = ud;

        e->progress++;
        assert_null(json_object_get(p, "originalMessageId"));
        assert_non_null(json_string_value(json_object_get(p, "modelId")));
        assert_true(json_is_integer(json_object_get(p, "bytesDownloaded")));
        assert_true(json_is_integer(json_object_get(p, "bytesTotal")));
        assert_true(json_is_integer(json_object_get(p, "progress")));
        assert_true(json_is_integer(json_object_get(p, "speedBps")));
        assert_true(json_is_integer(json_object_get(p, "etaSeconds")));
        snprintf(e->status, sizeof e->status, "%s", json_string_value(json_object_get(p, "status")));
        if (e->cancel_in_progress) {
                model_ensure_cancel(e->h);
                model_ensure_cancel(e->h); /* twice: still nothing */
                e->h = NULL;
        }
}

static void ens_done(int r, const char *path, uint64_t size, const char *code, const char *message, void *ud) {
        ens *e = ud;

        e->done++;
        e->r = r;
        e->size = size;
        e->path_null = !path;
        snprintf(e->path, sizeof e->path, "%s", path ? path : "");
        snprintf(e->code, sizeof e->code, "%s", code ? code : "");
        snprintf(e->message, sizeof e->message, "%s", message ? message : "");
        if (r < 0)
                print_message("ensure failed: %d %s %s\n", r, e->code, e->message);
        /* Cancelling the handle from inside its done does nothing. */
        model_ensure_cancel(e->h);
        e->h = NULL;
}

/* model_cmd_ensure() with data built from data_fmt; returns its value. */
static int ensure(T *t, ens *e, const char *model, char *err, size_t errlen, const char *data_fmt, ...)
        __attribute__((format(printf, 6, 7)));

static int ensure(T *t, ens *e, const char *model, char *err, size_t errlen, const char *data_fmt, ...) {
        char data[4096];
        va_list ap;
        json_t *d;
        int r;

        va_start(ap, data_fmt);
        vsnprintf(data, sizeof data, data_fmt, ap);
        va_end(ap);
        d = json_loads(data, 0, NULL);
        assert_non_null(d);
        memset(e, 0, sizeof *e);
        e->h = (model_ensure *)(uintptr_t)1; /* written only on success */
        r = model_cmd_ensure(t->e, model, d, ens_progress, ens_done, e, &e->h, err, errlen);
        json_decref(d); /* borrowed: the download keeps its own copy */
        if (r < 0)
                assert_ptr_equal(e->h, (model_ensure *)(uintptr_t)1);
        else
                assert_non_null(e->h);
        /* Never a callback from inside the call. */
        assert_int_equal(e->done, 0);
        assert_int_equal(e->progress, 0);
        return r;
}

static void wait_ens(T *t, ens *e) {
        uint64_t deadline = util_mono_ms() + 60000;

        while (!e->done && util_mono_ms() < deadline)
                loop_run_once(t->l, 50);
        assert_int_equal(e->done, 1);
}

static void run_for(T *t, uint64_t ms) {
        uint64_t deadline = util_mono_ms() + ms;

        while (util_mono_ms() < deadline)
                loop_run_once(t->l, 20);
}

static size_t count_type(T *t, const char *type) {
        size_t i, n = 0;
        json_t *e;

        json_array_foreach(t->sent, i, e) {
                if (!strcmp(json_string_value(json_object_get(e, "type")), type))
                        n++;
        }
        return n;
}

static void test_ensure_download_then_cached(void **state) {
        T *t = *state;
        char p[200], err[256];
        ens e;

        /* (a) a download: progress, then the path and size. */
        assert_int_equal(ensure(t, &e, "e1", err, sizeof err,
                                "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":"
                                "\"e1\",\"sha256\":\"%s\",\"credentials\":{\"token\":\"never-logged\"}}",
                                t->port, t->big_sha),
                         0);
        wait_ens(t, &e);
        assert_int_equal(e.r, 0);
        snprintf(p, sizeof p, "%s/e1", t->cache);
        assert_string_equal(e.path, p);
        assert_int_equal(e.size, BIG);
        assert_string_equal(e.code, "");
        assert_true(e.progress >= 1);
        assert_string_equal(e.status, "completed");
        assert_int_equal(served(t, "/big.bin", "requests"), 1);
        /* Nothing went to the controller. */
        assert_int_equal(count_type(t, "model.downloadProgress"), 0);
        assert_int_equal(json_array_size(t->sent), 0);
        {
                model_cache *c = NULL;
                json_t *mf = NULL;
                char cerr[128], *s;
                assert_int_equal(model_cache_open(t->cache, &c, cerr, sizeof cerr), 0);
                assert_int_equal(model_cache_manifest_read(c, "e1", &mf), 0);
                s = json_dumps(mf, 0);
                assert_null(strstr(s, "never-logged"));
                free(s);
                json_decref(mf);
                model_cache_free(c);
        }
        /* (b) again: no request at all, the same answer. */
        json_decref(ctl(t, "/_ctl/reset", "{}"));
        assert_int_equal(ensure(t, &e, "e1", err, sizeof err,
                                "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":"
                                "\"e1\",\"sha256\":\"%s\"}",
                                t->port, t->big_sha),
                         0);
        wait_ens(t, &e);
        assert_int_equal(e.r, 0);
        assert_string_equal(e.path, p);
        assert_int_equal(e.size, BIG);
        assert_int_equal(e.progress, 0);
        assert_int_equal(served_total(t), 0);
        {
                json_t *s = ctl(t, "/_ctl/stats", NULL);
                assert_int_equal(json_object_size(json_object_get(s, "paths")), 0);
                json_decref(s);
        }
        /* A Hugging Face model: the snapshot directory. */
        assert_int_equal(ensure(t, &e, "tiny", err, sizeof err,
                                "{\"source\":\"huggingface\",\"sourcePath\":\"aiwm-test/tiny-model\",\"targetPath\":"
                                "\"tiny\"}"),
                         0);
        wait_ens(t, &e);
        assert_int_equal(e.r, 0);
        snprintf(p, sizeof p, "%s/hub/models--aiwm-test--tiny-model/snapshots/" TINY_COMMIT, t->cache);
        assert_string_equal(e.path, p);
        assert_int_equal(e.size, 32551);
}

static void test_ensure_joins_command(void **state) {
        T *t = *state;
        uint64_t deadline = util_mono_ms() + 20000;
        char err[256];
        json_t *r;
        ens e;

        json_decref(ctl(t, "/_ctl/fault", "{\"path\":\"/big.bin\",\"mode\":\"trickle\",\"rate\":2000000}"));
        send_cmd(t, "j1", "model.download", "j",
                 "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":\"j\"}", t->port);
        /* The command's transfer is under way. */
        while (count_progress(t, "j1", "downloading") == 0 && util_mono_ms() < deadline)
                loop_run_once(t->l, 20);
        assert_int_equal(count_progress(t, "j1", "downloading"), 1);
        assert_null(find_result(t, "j1"));
        assert_int_equal(ensure(t, &e, "j", err, sizeof err,
                                "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":"
                                "\"j\"}",
                                t->port),
                         0);
        wait_ens(t, &e);
        assert_int_equal(e.r, 0);
        assert_int_equal(e.size, BIG);
        assert_true(e.progress >= 1);
        assert_string_equal(e.status, "completed");
        r = wait_result(t, "j1");
        assert_string_equal(status_of(r), "success");
        assert_string_equal(json_string_value(json_object_get(json_object_get(r, "result"), "path")), e.path);
        /* One shared transfer. */
        assert_int_equal(served(t, "/big.bin", "requests"), 1);
        assert_int_equal(served(t, "/big.bin", "bytes"), BIG);
        /* The command's events still carry its messageId only. */
        assert_int_equal(count_progress(t, "j1", "completed"), 1);
}

static void test_ensure_invalid(void **state) {
        T *t = *state;
        static const struct {
                const char *model, *data, *want;
        } cases[] = {
                { "m", "{\"source\":\"ftp\",\"sourcePath\":\"x\",\"targetPath\":\"m\"}", "data.source" },
                { "m", "{\"source\":\"http\",\"targetPath\":\"m\"}", "data.sourcePath" },
                { "m", "{\"source\":\"http\",\"sourcePath\":\"http://h/x\"}", "data.targetPath" },
                { "m", "{\"source\":\"http\",\"sourcePath\":\"http://h/x\",\"targetPath\":\"m\",\"sha256\":\"zz\"}",
                  "sha256" },
                { "m", "{\"source\":\"huggingface\",\"sourcePath\":\"a/b/c\",\"targetPath\":\"m\"}", "repo id" },
                { "m", "{\"source\":\"http\",\"sourcePath\":\"http://h/x\",\"targetPath\":\"m\",\"credentials\":\"x\"}",
                  "credentials" },
                { "", "{\"source\":\"http\",\"sourcePath\":\"http://h/x\",\"targetPath\":\"m\"}", "model id" },
                { "m", "[]", "data must be an object" },
        };
        char err[256];
        size_t i;
        ens e;

        for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                err[0] = '\0';
                assert_int_equal(ensure(t, &e, cases[i].model, err, sizeof err, "%s", cases[i].data), -EINVAL);
                print_message("invalid: %s\n", err);
                assert_non_null(strstr(err, cases[i].want));
        }
        {
                json_t *empty = json_object();
                assert_int_equal(model_cmd_ensure(t->e, "m", NULL, NULL, NULL, NULL, NULL, err, sizeof err), -EINVAL);
                assert_int_equal(model_cmd_ensure(t->e, NULL, empty, NULL, NULL, NULL, NULL, err, sizeof err), -EINVAL);
                json_decref(empty);
        }
        /* A targetPath leading out shows when resolved: 2001 through done. */
        assert_int_equal(ensure(t, &e, "m", err, sizeof err,
                                "{\"source\":\"http\",\"sourcePath\":\"http://h/x\",\"targetPath\":\"/etc/x\"}"),
                         0);
        wait_ens(t, &e);
        assert_int_equal(e.r, -EINVAL);
        assert_string_equal(e.code, "2001");
        assert_non_null(strstr(e.message, "outside"));
        assert_true(e.path_null);
        /* An engine without the model commands. */
        {
                cmd_host host = { .l = t->l, .db = t->d, .node_id = "node-1" };
                cmd_engine *bare = NULL;
                json_t *d = json_pack("{s:s,s:s,s:s}", "source", "http", "sourcePath", "http://h/x", "targetPath", "m");
                assert_int_equal(cmd_engine_new(&host, NULL, &bare), 0);
                assert_int_equal(model_cmd_ensure(bare, "m", d, NULL, NULL, NULL, NULL, err, sizeof err), -ENOENT);
                bare = cmd_engine_free(bare);
                json_decref(d);
        }
}

static void test_ensure_cancel(void **state) {
        T *t = *state;
        uint64_t deadline = util_mono_ms() + 20000;
        char err[256], p[200];
        json_int_t sent_bytes;
        struct stat st;
        DIR *dir;
        struct dirent *de;
        off_t partial = 0;
        ens a, b, c;

        model_ensure_cancel(NULL);
        json_decref(ctl(t, "/_ctl/fault", "{\"path\":\"/big.bin\",\"mode\":\"trickle\",\"rate\":400000}"));
        /* a cancels itself from inside its first progress call; b joins and
         * is cancelled from outside: then nobody waits and the transfer stops. */
        assert_int_equal(ensure(t, &a, "ec", err, sizeof err,
                                "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":"
                                "\"ec\"}",
                                t->port),
                         0);
        a.cancel_in_progress = true;
        assert_int_equal(ensure(t, &b, "ec", err, sizeof err,
                                "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":"
                                "\"ec\"}",
                                t->port),
                         0);
        while ((a.progress == 0 || b.progress == 0) && util_mono_ms() < deadline)
                loop_run_once(t->l, 20);
        assert_int_equal(a.progress, 1);
        assert_null(a.h);
        assert_true(b.progress >= 1);
        model_ensure_cancel(b.h);
        b.h = NULL;
        run_for(t, 300);
        sent_bytes = served(t, "/big.bin", "bytes");
        run_for(t, 1200);
        assert_int_equal(a.done + b.done, 0);
        assert_int_equal(a.progress, 1);
        /* The transfer stopped, the partial file stayed. */
        assert_true(sent_bytes < BIG);
        assert_true(served(t, "/big.bin", "bytes") <= sent_bytes + 65536);
        snprintf(p, sizeof p, "%s/.staging/t-ec", t->cache);
        dir = opendir(p);
        assert_non_null(dir);
        while ((de = readdir(dir))) {
                char f[512];
                snprintf(f, sizeof f, "%s/%s", p, de->d_name);
                if (de->d_name[0] == 'f' && !strstr(de->d_name, ".meta") && stat(f, &st) == 0)
                        partial = st.st_size;
        }
        closedir(dir);
        assert_true(partial > 0);
        snprintf(p, sizeof p, "%s/ec/big.bin", t->cache);
        assert_int_equal(stat(p, &st), -1);
        /* Alone, cancelled from inside its progress: stopped as well. */
        {
                FILE *o;
                snprintf(p, sizeof p, "%s/big2.bin", t->www);
                o = fopen(p, "wb");
                assert_non_null(o);
                assert_int_equal(fwrite(t->big, 1, BIG, o), BIG);
                fclose(o);
        }
        json_decref(ctl(t, "/_ctl/fault", "{\"path\":\"/big2.bin\",\"mode\":\"trickle\",\"rate\":400000}"));
        assert_int_equal(ensure(t, &a, "ec2", err, sizeof err,
                                "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big2.bin\",\"targetPath\":"
                                "\"ec2\"}",
                                t->port),
                         0);
        a.cancel_in_progress = true;
        deadline = util_mono_ms() + 20000;
        while (a.progress == 0 && util_mono_ms() < deadline)
                loop_run_once(t->l, 20);
        assert_int_equal(a.progress, 1);
        run_for(t, 300);
        sent_bytes = served(t, "/big2.bin", "bytes");
        run_for(t, 1200);
        assert_int_equal(a.done, 0);
        assert_int_equal(a.progress, 1);
        assert_true(sent_bytes < BIG);
        assert_true(served(t, "/big2.bin", "bytes") <= sent_bytes + 65536);
        /* Cancelled with its result known but not yet delivered. */
        json_decref(ctl(t, "/_ctl/reset", "{}"));
        assert_int_equal(ensure(t, &c, "small", err, sizeof err,
                                "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/small.txt\",\"targetPath\":"
                                "\"small\"}",
                                t->port),
                         0);
        wait_ens(t, &c);
        assert_int_equal(c.r, 0);
        assert_int_equal(ensure(t, &c, "small", err, sizeof err,
                                "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/small.txt\",\"targetPath\":"
                                "\"small\"}",
                                t->port),
                         0);
        model_ensure_cancel(c.h);
        run_for(t, 100);
        assert_int_equal(c.done, 0);
        /* The engine goes away under a pending handle: no callback, and the
         * handle is still the owner's to cancel. */
        json_decref(ctl(t, "/_ctl/fault", "{\"path\":\"/big.bin\",\"mode\":\"trickle\",\"rate\":400000}"));
        assert_int_equal(ensure(t, &c, "ec", err, sizeof err,
                                "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":"
                                "\"ec\"}",
                                t->port),
                         0);
        run_for(t, 200);
        engine_down(t);
        run_for(t, 100);
        assert_int_equal(c.done, 0);
        model_ensure_cancel(c.h);
        engine_up(t);
        /* The partial file is resumed by the next request. */
        json_decref(ctl(t, "/_ctl/reset", "{}"));
        assert_int_equal(ensure(t, &c, "ec", err, sizeof err,
                                "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":"
                                "\"ec\"}",
                                t->port),
                         0);
        wait_ens(t, &c);
        assert_int_equal(c.r, 0);
        assert_int_equal(c.size, BIG);
        assert_true(served(t, "/big.bin", "bytes") < BIG);
}

static void test_ensure_fails_like_command(void **state) {
        T *t = *state;
        char err[256];
        json_t *r;
        ens e;

        assert_int_equal(ensure(t, &e, "nf", err, sizeof err,
                                "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/nope.bin\",\"targetPath\":"
                                "\"nf\"}",
                                t->port),
                         0);
        wait_ens(t, &e);
        send_cmd(t, "f1", "model.cache", "nf",
                 "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/nope.bin\",\"targetPath\":\"nf\"}", t->port);
        r = wait_result(t, "f1");
        assert_true(e.r < 0);
        assert_true(e.path_null);
        assert_string_equal(e.code, "2003");
        assert_string_equal(e.code, code_of(r));
        assert_string_equal(e.message, json_string_value(json_object_get(json_object_get(r, "error"), "message")));
        assert_string_equal(e.status, "failed");
        /* A checksum mismatch: 3001, as for commands. */
        assert_int_equal(ensure(t, &e, "bad", err, sizeof err,
                                "{\"source\":\"http\",\"sourcePath\":\"http://127.0.0.1:%d/big.bin\",\"targetPath\":"
                                "\"bad\",\"sha256\":\"%064d\"}",
                                t->port, 0),
                         0);
        wait_ens(t, &e);
        assert_true(e.r < 0);
        assert_string_equal(e.code, "3001");
        assert_non_null(strstr(e.message, "checksum"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
                cmocka_unit_test_setup_teardown(test_http_then_cache, setup, teardown),
                cmocka_unit_test_setup_teardown(test_checksum_mismatch, setup, teardown),
                cmocka_unit_test_setup_teardown(test_coalesce, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hf, setup, teardown),
                cmocka_unit_test_setup_teardown(test_list_delete, setup, teardown),
                cmocka_unit_test_setup_teardown(test_resume_after_restart, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ensure_download_then_cached, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ensure_joins_command, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ensure_invalid, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ensure_cancel, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ensure_fails_like_command, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
