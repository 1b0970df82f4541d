/* libFuzzer target for src/models/model_s3.c: ListObjectsV2 pages and S3
 * error documents from arbitrary bytes. Invariants of a parsed page, then
 * write it back as XML (escaping & < >) and parse again: same page. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "models/model_s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void escaped(buf *b, const char *s) {
        for (; *s; s++) {
                if (*s == '&')
                        buf_append_str(b, "&amp;");
                else if (*s == '<')
                        buf_append_str(b, "&lt;");
                else if (*s == '>')
                        buf_append_str(b, "&gt;");
                else
                        buf_append(b, s, 1);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        model_s3_page p, q;
        char err[256], code[64], msg[128];
        size_t i;
        buf b;

        model_s3_parse_error((const char *)data, size, code, sizeof code, msg, sizeof msg);
        if (model_s3_parse_list((const char *)data, size, &p, err, sizeof err) < 0) {
                assert(err[0]);
                return 0;
        }
        assert(p.n_objects <= MODEL_S3_MAX_PAGE);
        assert(!p.truncated || p.next_token);
        for (i = 0; i < p.n_objects; i++) {
                assert(p.objects[i].key && p.objects[i].key[0]);
                assert(strlen(p.objects[i].key) <= MODEL_S3_MAX_KEY);
        }
        buf_init(&b, 0);
        buf_append_str(&b, "<ListBucketResult>");
        if (p.next_token) {
                buf_append_str(&b, "<NextContinuationToken>");
                escaped(&b, p.next_token);
                buf_append_str(&b, "</NextContinuationToken>");
        }
        buf_appendf(&b, "<IsTruncated>%s</IsTruncated>", p.truncated ? "true" : "false");
        for (i = 0; i < p.n_objects; i++) {
                buf_append_str(&b, "<Contents><Key>");
                escaped(&b, p.objects[i].key);
                buf_appendf(&b, "</Key><Size>%llu</Size>", (unsigned long long)p.objects[i].size);
                if (p.objects[i].etag) {
                        buf_append_str(&b, "<ETag>&quot;");
                        escaped(&b, p.objects[i].etag);
                        buf_append_str(&b, "&quot;</ETag>");
                }
                buf_append_str(&b, "</Contents>");
        }
        buf_append_str(&b, "</ListBucketResult>");
        assert(b.data && model_s3_parse_list(b.data, b.len, &q, err, sizeof err) == 0);
        assert(q.n_objects == p.n_objects && q.truncated == p.truncated);
        assert(!p.next_token == !q.next_token);
        assert(!p.next_token || strcmp(p.next_token, q.next_token) == 0);
        for (i = 0; i < p.n_objects; i++) {
                assert(strcmp(p.objects[i].key, q.objects[i].key) == 0);
                assert(p.objects[i].size == q.objects[i].size);
                assert(!p.objects[i].etag == !q.objects[i].etag);
                assert(!p.objects[i].etag || strcmp(p.objects[i].etag, q.objects[i].etag) == 0);
        }
        model_s3_page_done(&q);
        buf_done(&b);
        model_s3_page_done(&p);
        return 0;
}
