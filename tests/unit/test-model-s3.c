/* Unit tests of src/models/model_s3.c: the ListObjectsV2 reader (table of
 * documents: real s3rver and AWS shapes, entities, CDATA, malformed input,
 * limits), S3 error documents, bucket/prefix splitting and the URLs and
 * SigV4 parameters the downloader uses. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "models/model_s3.h"

/* A page as s3rver 3.7 sends it (captured from tests/tools-s3, max-keys=2). */
static const char s3rver_page[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<ListBucketResult xmlns=\"http://doc.s3.amazonaws.com/2006-03-01/\"><Name>models</Name>"
        "<Prefix>llama/</Prefix><NextContinuationToken>1dX0sCdV3RLuhMHhIc/pnUODUDCplghsVEIR54yqJbuXKfCHxJjTPXGWzl4u1Q1a"
        "</NextContinuationToken><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>"
        "<Contents><Key>llama/part-1.txt</Key><LastModified>2026-11-28T06:03:11.000Z</LastModified>"
        "<ETag>&quot;06a56a4b31c015df6d8bbb52dbd3867d&quot;</ETag><Size>6</Size><StorageClass>STANDARD</StorageClass>"
        "</Contents><Contents><Key>llama/sub dir/big&amp;file.bin</Key><LastModified>2026-11-28T06:03:11.000Z"
        "</LastModified><ETag>&quot;75998c205a25c34f32c5ce40d6fd0ba3&quot;</ETag><Size>1000000</Size>"
        "<StorageClass>STANDARD</StorageClass></Contents></ListBucketResult>";

/* The shape AWS documents (pretty-printed, Owner, multipart ETag, last page). */
static const char aws_page[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
        "  <Name>bucket</Name>\n  <Prefix/>\n  <KeyCount>2</KeyCount>\n  <MaxKeys>1000</MaxKeys>\n"
        "  <IsTruncated>false</IsTruncated>\n"
        "  <Contents>\n    <Key>my-image.jpg</Key>\n    <LastModified>2009-10-12T17:50:30.000Z</LastModified>\n"
        "    <ETag>\"fba9dede5f27731c9771645a39863328\"</ETag>\n    <Size>434234</Size>\n"
        "    <StorageClass>STANDARD</StorageClass>\n"
        "    <Owner><ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>"
        "<DisplayName>mtd@amazon.com</DisplayName></Owner>\n  </Contents>\n"
        "  <!-- a comment -->\n"
        "  <Contents>\n    <Key><![CDATA[weights/model-00001-of-00002.safetensors]]></Key>\n"
        "    <ETag>&quot;3858f62230ac3c915f300c664312c11f-9&quot;</ETag>\n    <Size>5000000000</Size>\n"
        "  </Contents>\n</ListBucketResult>\n";

typedef struct list_case {
        const char *name;
        const char *xml;
        int r;
        size_t n;
        const char *key0, *key_last, *etag0;
        uint64_t size_last;
        int truncated;
        const char *token;
} list_case;

static const list_case list_cases[] = {
        { "s3rver page", s3rver_page, 0, 2, "llama/part-1.txt", "llama/sub dir/big&file.bin",
          "06a56a4b31c015df6d8bbb52dbd3867d", 1000000, 1,
          "1dX0sCdV3RLuhMHhIc/pnUODUDCplghsVEIR54yqJbuXKfCHxJjTPXGWzl4u1Q1a" },
        { "aws page", aws_page, 0, 2, "my-image.jpg", "weights/model-00001-of-00002.safetensors",
          "fba9dede5f27731c9771645a39863328", 5000000000ull, 0, NULL },
        { "empty listing", "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>", 0, 0, NULL,
          NULL, NULL, 0, 0, NULL },
        { "self-closing root", "<ListBucketResult/>", 0, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "numeric references", "<ListBucketResult><Contents><Key>a&#47;&#x00e9;&#128512;</Key><Size>1</Size>"
                                "</Contents></ListBucketResult>",
          0, 1, "a/\xc3\xa9\xf0\x9f\x98\x80", "a/\xc3\xa9\xf0\x9f\x98\x80", NULL, 1, 0, NULL },
        { "prefixed names", "<s3:ListBucketResult xmlns:s3=\"x\"><s3:Contents><s3:Key>k</s3:Key><s3:Size>2</s3:Size>"
                            "</s3:Contents></s3:ListBucketResult>",
          0, 1, "k", "k", NULL, 2, 0, NULL },
        { "attributes with both quotes", "<ListBucketResult a='1' b=\"2\"><Contents x = 'y'><Key>k</Key><Size>0</Size>"
                                         "</Contents></ListBucketResult>",
          0, 1, "k", "k", NULL, 0, 0, NULL },
        { "bom and whitespace", "\xEF\xBB\xBF  <ListBucketResult>\n</ListBucketResult>\n", 0, 0, NULL, NULL, NULL, 0,
          0, NULL },
        /* refused */
        { "error document", "<Error><Code>NoSuchBucket</Code></Error>", -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "truncated without token", "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
          -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "bad IsTruncated", "<ListBucketResult><IsTruncated>yes</IsTruncated></ListBucketResult>", -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "contents without size", "<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>",
          -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "contents without key", "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
          -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "negative size", "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>",
          -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "size overflow",
          "<ListBucketResult><Contents><Key>k</Key><Size>99999999999999999999999</Size></Contents></ListBucketResult>",
          -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "empty key", "<ListBucketResult><Contents><Key></Key><Size>1</Size></Contents></ListBucketResult>",
          -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "mismatched tags", "<ListBucketResult><Contents></ListBucketResult></Contents>", -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "unterminated", "<ListBucketResult><Contents><Key>k</Key>", -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "doctype", "<!DOCTYPE x [<!ENTITY a \"b\">]><ListBucketResult/>", -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "unknown entity", "<ListBucketResult><Contents><Key>&a;</Key><Size>1</Size></Contents></ListBucketResult>",
          -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "nul reference", "<ListBucketResult><Contents><Key>&#0;</Key><Size>1</Size></Contents></ListBucketResult>",
          -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "surrogate reference",
          "<ListBucketResult><Contents><Key>&#xD800;</Key><Size>1</Size></Contents></ListBucketResult>", -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "two roots", "<ListBucketResult/><ListBucketResult/>", -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "text outside the root", "x<ListBucketResult/>", -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "empty", "", -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "bad attribute", "<ListBucketResult a=1/>", -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "lt in attribute", "<ListBucketResult a='<'/>", -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
        { "pi inside", "<ListBucketResult><?x?></ListBucketResult>", -EBADMSG, 0, NULL, NULL, NULL, 0, 0, NULL },
};

static void test_list_table(void **state) {
        size_t i;

        for (i = 0; i < sizeof list_cases / sizeof list_cases[0]; i++) {
                const list_case *c = &list_cases[i];
                model_s3_page p;
                char err[256] = "";
                int r = model_s3_parse_list(c->xml, strlen(c->xml), &p, err, sizeof err);
                print_message("case %s: r=%d %s\n", c->name, r, err);
                assert_int_equal(r, c->r);
                if (r < 0) {
                        assert_true(err[0] != '\0');
                        continue;
                }
                assert_int_equal(p.n_objects, c->n);
                assert_int_equal(p.truncated, c->truncated);
                if (c->token)
                        assert_string_equal(p.next_token, c->token);
                else
                        assert_null(p.next_token);
                if (c->n) {
                        assert_string_equal(p.objects[0].key, c->key0);
                        assert_string_equal(p.objects[c->n - 1].key, c->key_last);
                        assert_true(p.objects[c->n - 1].size == c->size_last);
                        if (c->etag0)
                                assert_string_equal(p.objects[0].etag, c->etag0);
                }
                model_s3_page_done(&p);
                model_s3_page_done(&p); /* idempotent */
        }
}

static void test_list_limits(void **state) {
        buf b;
        model_s3_page p;
        char err[128];
        int i;

        /* Key longer than 1024 bytes. */
        buf_init(&b, 0);
        buf_append_str(&b, "<ListBucketResult><Contents><Key>");
        for (i = 0; i < 1025; i++)
                buf_append_str(&b, "k");
        buf_append_str(&b, "</Key><Size>1</Size></Contents></ListBucketResult>");
        assert_int_equal(model_s3_parse_list(b.data, b.len, &p, err, sizeof err), -E2BIG);
        buf_done(&b);
        /* Text longer than MODEL_S3_MAX_TEXT. */
        buf_init(&b, 0);
        buf_append_str(&b, "<ListBucketResult><Name>");
        for (i = 0; i < MODEL_S3_MAX_TEXT + 1; i++)
                buf_append_str(&b, "n");
        buf_append_str(&b, "</Name></ListBucketResult>");
        assert_int_equal(model_s3_parse_list(b.data, b.len, &p, err, sizeof err), -E2BIG);
        buf_done(&b);
        /* Nesting deeper than MODEL_S3_MAX_DEPTH. */
        buf_init(&b, 0);
        buf_append_str(&b, "<ListBucketResult>");
        for (i = 0; i < MODEL_S3_MAX_DEPTH; i++)
                buf_append_str(&b, "<a>");
        assert_int_equal(model_s3_parse_list(b.data, b.len, &p, err, sizeof err), -E2BIG);
        buf_done(&b);
        /* A NUL byte inside. */
        assert_int_equal(model_s3_parse_list("<ListBucketResult>\0</ListBucketResult>", 38, &p, err, sizeof err),
                         -EBADMSG);
        /* Many objects in one page are fine up to the cap. */
        buf_init(&b, 0);
        buf_append_str(&b, "<ListBucketResult>");
        for (i = 0; i < 3000; i++)
                buf_appendf(&b, "<Contents><Key>k%d</Key><Size>%d</Size></Contents>", i, i);
        buf_append_str(&b, "</ListBucketResult>");
        assert_int_equal(model_s3_parse_list(b.data, b.len, &p, err, sizeof err), 0);
        assert_int_equal(p.n_objects, 3000);
        assert_string_equal(p.objects[2999].key, "k2999");
        model_s3_page_done(&p);
        buf_done(&b);
}

static void test_error_doc(void **state) {
        const char *x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>"
                        "<Message>The request signature we calculated does not match &amp; so on</Message>"
                        "<RequestId>1</RequestId></Error>";
        char code[32], msg[128];

        assert_int_equal(model_s3_parse_error(x, strlen(x), code, sizeof code, msg, sizeof msg), 0);
        assert_string_equal(code, "SignatureDoesNotMatch");
        assert_string_equal(msg, "The request signature we calculated does not match & so on");
        assert_int_equal(model_s3_parse_error("<ListBucketResult/>", 19, code, sizeof code, msg, sizeof msg),
                         -EBADMSG);
        assert_int_equal(model_s3_parse_error("{}", 2, code, sizeof code, msg, sizeof msg), -EBADMSG);
        /* Truncation of long fields is safe. */
        assert_int_equal(model_s3_parse_error(x, strlen(x), code, 5, msg, 4), 0);
        assert_string_equal(code, "Sign");
        assert_string_equal(msg, "The");
}

static void test_split(void **state) {
        static const struct {
                const char *in, *bucket, *prefix;
        } ok[] = {
                { "models/llama/7b", "models", "llama/7b" },
                { "models", "models", "" },
                { "models/", "models", "" },
                { "s3://my.bucket-1/a b/c", "my.bucket-1", "a b/c" },
                { "abc/x/", "abc", "x/" },
        };
        static const char *const bad[] = { "", "ab", "Models/x", "-abc/x", "abc-/x", "a_b/x", "/x", "s3://",
                                           "abc/x\ny",
                                           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/x" };
        size_t i;

        for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
                char *b = NULL, *p = NULL;
                assert_int_equal(model_s3_split_path(ok[i].in, &b, &p), 0);
                assert_string_equal(b, ok[i].bucket);
                assert_string_equal(p, ok[i].prefix);
                free(b);
                free(p);
        }
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                char *b = NULL, *p = NULL;
                print_message("bad %s\n", bad[i]);
                assert_int_equal(model_s3_split_path(bad[i], &b, &p), -EINVAL);
                assert_null(b);
        }
}

static void test_urls(void **state) {
        char *u = NULL, s[64];
        buf b;

        assert_int_equal(model_s3_list_url("http://127.0.0.1:9000/", "models", "llama/", NULL, 0, &u), 0);
        assert_string_equal(u, "http://127.0.0.1:9000/models?list-type=2&max-keys=1000&prefix=llama%2F");
        free(u);
        assert_int_equal(model_s3_list_url("https://s3.example", "b", "", "a/b+c==", 2, &u), 0);
        assert_string_equal(u, "https://s3.example/b?continuation-token=a%2Fb%2Bc%3D%3D&list-type=2&max-keys=2&prefix=");
        free(u);
        assert_int_equal(model_s3_object_url("http://h:1", "models", "llama/sub dir/big&file+x~.bin", &u), 0);
        assert_string_equal(u, "http://h:1/models/llama/sub%20dir/big%26file%2Bx~.bin");
        free(u);
        buf_init(&b, 0);
        assert_int_equal(model_s3_uri_encode(&b, "\xc3\xa9/A-z_0.~", false), 0);
        assert_string_equal(b.data, "%C3%A9%2FA-z_0.~");
        buf_done(&b);
        assert_int_equal(model_s3_sigv4_param("us-east-1", s, sizeof s), 0);
        assert_string_equal(s, "aws:amz:us-east-1:s3");
        assert_int_equal(model_s3_sigv4_param("", s, sizeof s), -EINVAL);
        assert_int_equal(model_s3_sigv4_param("us:east", s, sizeof s), -EINVAL);
        assert_int_equal(model_s3_sigv4_param("us-east-1", s, 8), -ENOBUFS);
        assert_true(model_s3_etag_is_md5("06a56a4b31c015df6d8bbb52dbd3867d"));
        assert_true(model_s3_etag_is_md5("06A56A4B31C015DF6D8BBB52DBD3867D"));
        assert_false(model_s3_etag_is_md5("3858f62230ac3c915f300c664312c11f-9"));
        assert_false(model_s3_etag_is_md5(NULL));
        assert_false(model_s3_etag_is_md5("xyz"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_list_table),
                cmocka_unit_test(test_list_limits),
                cmocka_unit_test(test_error_doc),
                cmocka_unit_test(test_split),
                cmocka_unit_test(test_urls),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
