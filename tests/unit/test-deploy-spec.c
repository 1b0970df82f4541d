/* Unit tests of src/deploy/deploy_spec.c: command validation (PROTOCOL.md
 * §3.5, §3.7), model sources, the registry allow-list, the container
 * configuration in each GPU mode (DeviceRequests, CDI for Docker and
 * Podman, the nvidia runtime, CPU), IContainerInfo from real Podman replies,
 * update application, times and status transitions. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/util.h"
#include "deploy/deploy_spec.h"

static json_t *J(const char *s) {
        json_t *j = json_loads(s, JSON_ALLOW_NUL, NULL);
        assert_non_null(j);
        return j;
}

static const char create_ok[] = "{\"modelId\":\"m1\",\"modelPath\":\"s3://b/m1\",\"containerName\":\"c1\","
                                "\"containerImage\":\"img:1\",\"containerPort\":8000,\"gpuDeviceId\":\"0\"}";

static void expect_create(const char *text, int want, const char *needle) {
        json_t *j = J(text);
        char err[256] = "";
        assert_int_equal(deploy_create_validate(j, err, sizeof err), want);
        if (needle)
                assert_non_null(strstr(err, needle));
        json_decref(j);
}

static void test_create_validate(void **s) {
        (void)s;
        expect_create(create_ok, 0, NULL);
        /* the protocol's own example, and a CPU deployment */
        expect_create("{\"modelId\":\"m\",\"modelPath\":\"m\",\"containerName\":\"a.b-c_d\",\"containerImage\":"
                      "\"127.0.0.1:5000/aiwm/x@sha256:0123\",\"containerPort\":65535}",
                      0, NULL);
        expect_create("{\"modelPath\":\"m\",\"containerName\":\"c\",\"containerImage\":\"i\",\"containerPort\":8000}",
                      -EINVAL, "data.modelId is required");
        expect_create("{\"modelId\":\"m\",\"modelPath\":\"m\",\"containerName\":\"-c\",\"containerImage\":\"i\","
                      "\"containerPort\":8000}",
                      -EINVAL, "containerName");
        expect_create("{\"modelId\":\"m\",\"modelPath\":\"m\",\"containerName\":\"c/x\",\"containerImage\":\"i\","
                      "\"containerPort\":8000}",
                      -EINVAL, "containerName");
        expect_create("{\"modelId\":\"m\",\"modelPath\":\"m\",\"containerName\":\"c\",\"containerImage\":\"i; rm\","
                      "\"containerPort\":8000}",
                      -EINVAL, "containerImage");
        expect_create("{\"modelId\":\"m\",\"modelPath\":\"m\",\"containerName\":\"c\",\"containerImage\":\"i\","
                      "\"containerPort\":80}",
                      -EINVAL, "containerPort");
        expect_create("{\"modelId\":\"m\",\"modelPath\":\"m\",\"containerName\":\"c\",\"containerImage\":\"i\","
                      "\"containerPort\":\"8000\"}",
                      -EINVAL, "containerPort");
        expect_create("{\"modelId\":\"m\",\"modelPath\":\"m\",\"containerName\":\"c\",\"containerImage\":\"i\","
                      "\"containerPort\":8000,\"gpuDeviceId\":\"0,1\"}",
                      -EINVAL, "gpuDeviceId");
        expect_create("{\"modelId\":\"m\",\"modelPath\":\"m\",\"containerName\":\"c\",\"containerImage\":\"i\","
                      "\"containerPort\":8000,\"gpuMemoryLimit\":512}",
                      -EINVAL, "gpuMemoryLimit");
        expect_create("{\"modelId\":\"m\",\"modelPath\":\"m\",\"containerName\":\"c\",\"containerImage\":\"i\","
                      "\"containerPort\":8000,\"environment\":{\"A=B\":\"x\"}}",
                      -EINVAL, "variable name");
        expect_create("{\"modelId\":\"m\",\"modelPath\":\"m\",\"containerName\":\"c\",\"containerImage\":\"i\","
                      "\"containerPort\":8000,\"environment\":{\"A\":1}}",
                      -EINVAL, "data.environment.A");
        expect_create("{\"modelId\":\"m\",\"modelPath\":\"m\",\"containerName\":\"c\",\"containerImage\":\"i\","
                      "\"containerPort\":8000,\"environment\":{\"A\":\"x\\u0000y\"}}",
                      -EINVAL, "NUL");
        expect_create("{\"modelId\":\"m\",\"modelPath\":\"m\",\"containerName\":\"c\",\"containerImage\":\"i\","
                      "\"containerPort\":8000,\"healthCheckPath\":\"health\"}",
                      -EINVAL, "healthCheckPath");
        expect_create("{\"modelId\":\"m\",\"modelPath\":\"m\",\"containerName\":\"c\",\"containerImage\":\"i\","
                      "\"containerPort\":8000,\"healthCheckInterval\":2}",
                      -EINVAL, "healthCheckInterval");
}

static void test_other_validators(void **s) {
        char err[256];
        json_t *j;
        (void)s;

        j = J("{\"config\":{}}");
        assert_int_equal(deploy_update_validate(j, err, sizeof err), -EINVAL);
        json_decref(j);
        j = J("{\"config\":{\"environment\":{\"A\":\"b\"}}}");
        assert_int_equal(deploy_update_validate(j, err, sizeof err), 0);
        json_decref(j);
        j = J("{}");
        assert_int_equal(deploy_update_validate(j, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "data.config"));
        assert_int_equal(deploy_stop_validate(j, err, sizeof err), 0);
        json_decref(j);
        j = J("{\"timeout\":2}");
        assert_int_equal(deploy_stop_validate(j, err, sizeof err), -EINVAL);
        assert_int_equal(deploy_restart_validate(j, err, sizeof err), 0);
        json_decref(j);
        j = J("{\"force\":\"yes\"}");
        assert_int_equal(deploy_delete_validate(j, err, sizeof err), -EINVAL);
        json_decref(j);
        j = J("{\"tail\":0}");
        assert_int_equal(deploy_container_logs_validate(j, err, sizeof err), -EINVAL);
        json_decref(j);
        j = J("{\"tail\":10,\"since\":\"2026-11-28T07:00:00Z\"}");
        assert_int_equal(deploy_container_logs_validate(j, err, sizeof err), 0);
        json_decref(j);
        j = J("{\"since\":\"yesterday\"}");
        assert_int_equal(deploy_container_logs_validate(j, err, sizeof err), -EINVAL);
        json_decref(j);
}

static void test_model_source(void **s) {
        deploy_model_kind k;
        json_t *d = NULL;
        char err[256];
        (void)s;

        assert_int_equal(deploy_model_source("s3://bucket/llama/7b/", "llama-7b", &k, &d, err, sizeof err), 0);
        assert_int_equal(k, DEPLOY_MODEL_S3);
        assert_string_equal(json_string_value(json_object_get(d, "source")), "minio");
        assert_string_equal(json_string_value(json_object_get(d, "sourcePath")), "bucket/llama/7b");
        assert_string_equal(json_string_value(json_object_get(d, "targetPath")), "deployments/llama-7b");
        json_decref(d);
        assert_int_equal(deploy_model_source("hf://org/name@v1.0", "m", &k, &d, err, sizeof err), 0);
        assert_int_equal(k, DEPLOY_MODEL_HF);
        assert_string_equal(json_string_value(json_object_get(d, "sourcePath")), "org/name");
        assert_string_equal(json_string_value(json_object_get(d, "version")), "v1.0");
        json_decref(d);
        assert_int_equal(deploy_model_source("https://h/x.bin", "a/b", &k, &d, err, sizeof err), 0);
        assert_int_equal(k, DEPLOY_MODEL_HTTP);
        assert_string_equal(json_string_value(json_object_get(d, "targetPath")), "deployments/a%2fb");
        json_decref(d);
        d = (json_t *)1;
        assert_int_equal(deploy_model_source("models/m1", "m", &k, &d, err, sizeof err), 0);
        assert_int_equal(k, DEPLOY_MODEL_LOCAL);
        assert_null(d);
        assert_int_equal(deploy_model_source("s3://", "m", &k, &d, err, sizeof err), -EINVAL);
        assert_int_equal(deploy_model_source("hf://justname", "m", &k, &d, err, sizeof err), -EINVAL);
        assert_int_equal(deploy_model_source("hf://a/b@", "m", &k, &d, err, sizeof err), -EINVAL);
        assert_int_equal(deploy_model_source("ftp://x/y", "m", &k, &d, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "scheme"));
}

static void test_registries(void **s) {
        static char *const allow[] = { "localhost", "127.0.0.1:5000", "ghcr.io/org", "docker.io" };
        static char *const only_lib[] = { "docker.io/library" };
        char reg[128];
        (void)s;

        assert_int_equal(deploy_image_registry("nginx:1", reg, sizeof reg), 0);
        assert_string_equal(reg, "docker.io");
        assert_int_equal(deploy_image_registry("org/img", reg, sizeof reg), 0);
        assert_string_equal(reg, "docker.io");
        assert_int_equal(deploy_image_registry("LocalHost:5000/x", reg, sizeof reg), 0);
        assert_string_equal(reg, "localhost:5000");
        assert_int_equal(deploy_image_registry("nvcr.io/nvidia/tritonserver:24.01", reg, sizeof reg), 0);
        assert_string_equal(reg, "nvcr.io");
        assert_true(deploy_image_allowed("anything", NULL, 0));
        assert_true(deploy_image_allowed("localhost/aiwm-test-httpd:latest", allow, 4));
        assert_true(deploy_image_allowed("127.0.0.1:5000/aiwm/test-httpd:1", allow, 4));
        assert_false(deploy_image_allowed("127.0.0.1:5001/aiwm/test-httpd:1", allow, 4));
        assert_true(deploy_image_allowed("ghcr.io/org/img:1", allow, 4));
        assert_false(deploy_image_allowed("ghcr.io/organisation/img:1", allow, 4));
        assert_false(deploy_image_allowed("ghcr.io/other/img:1", allow, 4));
        assert_true(deploy_image_allowed("nginx", allow, 4));
        assert_false(deploy_image_allowed("nvcr.io/nvidia/x", allow, 4));
        assert_true(deploy_image_allowed("library/nginx", only_lib, 1));
        assert_false(deploy_image_allowed("evil/nginx", only_lib, 1));
}

static json_t *config_for(deploy_gpu_mode mode, bool podman, const char *uuid) {
        json_t *spec = J("{\"modelId\":\"m1\",\"modelPath\":\"m1\",\"containerName\":\"c1\",\"containerImage\":\"img:1\","
                         "\"containerPort\":8000,\"environment\":{\"A\":\"x y\",\"MODEL_PATH\":\"/evil\"}}");
        deploy_container_opts o = { .deployment_id = "d1", .node_id = "n1", .gpu_mode = mode, .podman = podman,
                                    .gpu_uuid = uuid, .bind_ip = "127.0.0.1", .host_port = 8001,
                                    .model_host_path = "/cache/m1" };
        json_t *c = deploy_container_config(spec, &o);
        assert_non_null(c);
        json_decref(spec);
        return c;
}

static bool env_has(const json_t *c, const char *line) {
        size_t i;
        json_t *v;
        json_array_foreach (json_object_get(c, "Env"), i, v)
                if (!strcmp(json_string_value(v), line))
                        return true;
        return false;
}

static void test_container_config(void **s) {
        json_t *c, *hc, *dr;
        char *txt;
        (void)s;

        /* DeviceRequests (the default) */
        c = config_for(DEPLOY_GPU_DEVICE_REQUESTS, false, "GPU-abc");
        hc = json_object_get(c, "HostConfig");
        txt = json_dumps(json_object_get(hc, "DeviceRequests"), JSON_COMPACT | JSON_SORT_KEYS);
        assert_string_equal(txt, "[{\"Capabilities\":[[\"gpu\",\"utility\",\"compute\"]],\"Count\":0,\"DeviceIDs\":"
                                 "[\"GPU-abc\"],\"Driver\":\"nvidia\"}]");
        free(txt);
        assert_string_equal(json_string_value(json_object_get(c, "Image")), "img:1");
        assert_true(env_has(c, "A=x y"));
        assert_true(env_has(c, "MODEL_PATH=/model"));
        assert_false(env_has(c, "MODEL_PATH=/evil"));
        assert_true(env_has(c, "MODEL_ID=m1"));
        assert_false(env_has(c, "NVIDIA_VISIBLE_DEVICES=void"));
        assert_string_equal(json_string_value(json_array_get(json_object_get(hc, "Binds"), 0)), "/cache/m1:/model:ro");
        assert_true(json_is_false(json_object_get(hc, "Privileged")));
        assert_string_equal(json_string_value(json_object_get(json_object_get(hc, "RestartPolicy"), "Name")),
                            "unless-stopped");
        txt = json_dumps(json_object_get(hc, "PortBindings"), JSON_COMPACT | JSON_SORT_KEYS);
        assert_string_equal(txt, "{\"8000/tcp\":[{\"HostIp\":\"127.0.0.1\",\"HostPort\":\"8001\"}]}");
        free(txt);
        txt = json_dumps(json_object_get(c, "Labels"), JSON_COMPACT | JSON_SORT_KEYS);
        assert_string_equal(txt, "{\"aiwm.deployment.id\":\"d1\",\"aiwm.gpu.uuid\":\"GPU-abc\",\"aiwm.managed\":\"true\","
                                 "\"aiwm.model.id\":\"m1\",\"aiwm.node.id\":\"n1\"}");
        free(txt);
        json_decref(c);

        /* CDI: Docker (DeviceRequests driver cdi) and Podman (Devices) */
        c = config_for(DEPLOY_GPU_CDI, false, "GPU-abc");
        dr = json_array_get(json_object_get(json_object_get(c, "HostConfig"), "DeviceRequests"), 0);
        assert_string_equal(json_string_value(json_object_get(dr, "Driver")), "cdi");
        assert_string_equal(json_string_value(json_array_get(json_object_get(dr, "DeviceIDs"), 0)), "nvidia.com/gpu=GPU-abc");
        json_decref(c);
        c = config_for(DEPLOY_GPU_CDI, true, "GPU-abc");
        hc = json_object_get(c, "HostConfig");
        assert_null(json_object_get(hc, "DeviceRequests"));
        assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(hc, "Devices"), 0), "PathOnHost")),
                            "nvidia.com/gpu=GPU-abc");
        json_decref(c);

        /* the legacy runtime */
        c = config_for(DEPLOY_GPU_NVIDIA_RUNTIME, false, "GPU-abc");
        assert_string_equal(json_string_value(json_object_get(json_object_get(c, "HostConfig"), "Runtime")), "nvidia");
        assert_true(env_has(c, "NVIDIA_VISIBLE_DEVICES=GPU-abc"));
        json_decref(c);

        /* CPU: no GPU request, and no GPU through an nvidia default runtime */
        c = config_for(DEPLOY_GPU_DEVICE_REQUESTS, false, NULL);
        hc = json_object_get(c, "HostConfig");
        assert_null(json_object_get(hc, "DeviceRequests"));
        assert_null(json_object_get(hc, "Runtime"));
        assert_true(env_has(c, "NVIDIA_VISIBLE_DEVICES=void"));
        assert_null(json_object_get(json_object_get(c, "Labels"), DEPLOY_LABEL_GPU));
        json_decref(c);
}

static json_t *fixture(const char *name) {
        char path[512], *data = NULL;
        size_t len = 0;
        json_t *j;
        snprintf(path, sizeof path, "%s/docker/%s", AIWM_FIXTURES, name);
        assert_int_equal(util_read_file(path, 1 << 20, &data, &len), 0);
        j = json_loadb(data, len, 0, NULL);
        free(data);
        assert_non_null(j);
        return j;
}

static void test_container_info(void **s) {
        json_t *insp = fixture("inspect-podman.json"), *list = fixture("list-podman.json"), *o;
        deploy_container_state st;
        (void)s;

        o = deploy_container_info(insp, true);
        assert_non_null(o);
        assert_string_equal(json_string_value(json_object_get(o, "containerId")),
                            json_string_value(json_object_get(insp, "Id")));
        assert_string_equal(json_string_value(json_object_get(o, "containerName")), "cap-web");
        assert_non_null(json_string_value(json_object_get(o, "createdAt")));
        assert_true(json_is_object(json_object_get(o, "labels")));
        assert_true(json_is_array(json_object_get(o, "gpuDeviceIds")));
        assert_true(json_is_integer(json_object_get(o, "restartCount")));
        assert_null(json_object_get(o, "environment"));
        json_decref(o);
        o = deploy_container_info(json_array_get(list, 0), false);
        assert_non_null(o);
        assert_string_equal(json_string_value(json_object_get(o, "status")), "running");
        assert_string_equal(json_string_value(json_object_get(o, "containerName")), "cap-web");
        json_decref(o);
        assert_int_equal(deploy_container_state_parse(insp, 8000, &st), 0);
        assert_null(deploy_container_info(json_array_get(list, 99), false));
        json_decref(insp);
        json_decref(list);

        o = J("{\"Id\":\"abc\",\"Name\":\"/x\",\"Created\":\"2026-11-28T07:00:00.5Z\",\"Config\":{\"Image\":\"i\","
              "\"Labels\":{\"aiwm.gpu.uuid\":\"GPU-1\"}},\"State\":{\"Status\":\"exited\",\"Running\":false,\"ExitCode\":3,"
              "\"StartedAt\":\"0001-01-01T00:00:00Z\"},\"RestartCount\":2,\"NetworkSettings\":{\"Ports\":{\"8000/tcp\":"
              "[{\"HostIp\":\"127.0.0.1\",\"HostPort\":\"32768\"}]}}}");
        {
                json_t *i = deploy_container_info(o, true);
                assert_string_equal(json_string_value(json_object_get(i, "status")), "stopped");
                assert_null(json_object_get(i, "startedAt"));
                assert_int_equal(json_integer_value(json_object_get(json_object_get(i, "ports"), "8000")), 32768);
                assert_string_equal(json_string_value(json_array_get(json_object_get(i, "gpuDeviceIds"), 0)), "GPU-1");
                assert_int_equal(json_integer_value(json_object_get(i, "exitCode")), 3);
                json_decref(i);
        }
        assert_int_equal(deploy_container_state_parse(o, 8000, &st), 0);
        assert_false(st.running);
        assert_int_equal(st.host_port, 32768);
        assert_int_equal(st.exit_code, 3);
        assert_int_equal(st.restart_count, 2);
        assert_int_equal(st.started_ms, 0);
        json_decref(o);
}

static void test_update(void **s) {
        json_t *spec = J(create_ok), *cfg, *ns, *applied;
        bool recreate;
        (void)s;

        cfg = J("{\"healthCheckInterval\":10}");
        assert_int_equal(deploy_spec_apply_update(spec, cfg, &ns, &applied, &recreate), 0);
        assert_false(recreate);
        assert_int_equal(json_array_size(applied), 1);
        assert_int_equal(json_integer_value(json_object_get(ns, "healthCheckInterval")), 10);
        assert_null(json_object_get(spec, "healthCheckInterval")); /* a copy */
        json_decref(cfg);
        json_decref(ns);
        json_decref(applied);
        cfg = J("{\"environment\":{\"A\":\"b\"},\"containerImage\":\"img:1\"}");
        assert_int_equal(deploy_spec_apply_update(spec, cfg, &ns, &applied, &recreate), 0);
        assert_true(recreate);
        assert_int_equal(json_array_size(applied), 1); /* the image did not change */
        assert_string_equal(json_string_value(json_array_get(applied, 0)), "environment");
        json_decref(cfg);
        json_decref(ns);
        json_decref(applied);
        json_decref(spec);
}

static void test_time_and_status(void **s) {
        long long ms;
        char h1[65], h2[65];
        json_t *a = J("{\"b\":1,\"a\":2}"), *b = J("{\"a\":2,\"b\":1}");
        (void)s;

        assert_int_equal(deploy_time_parse("1970-01-01T00:00:01Z", &ms), 0);
        assert_int_equal(ms, 1000);
        assert_int_equal(deploy_time_parse("2026-11-28T07:23:29.123456789Z", &ms), 0);
        assert_int_equal(ms % 1000, 123);
        assert_int_equal(deploy_time_parse("2026-11-28T08:23:29+01:00", &ms), 0);
        {
                long long z;
                assert_int_equal(deploy_time_parse("2026-11-28T07:23:29Z", &z), 0);
                assert_int_equal(ms, z);
        }
        assert_int_equal(deploy_time_parse("0001-01-01T00:00:00Z", &ms), -ERANGE);
        assert_int_equal(deploy_time_parse("2026-13-01T00:00:00Z", &ms), -EINVAL);
        assert_int_equal(deploy_time_parse("2026-11-28T07:23:29", &ms), -EINVAL);
        assert_int_equal(deploy_time_parse(NULL, &ms), -EINVAL);
        assert_true(deploy_status_transition_ok("", "starting"));
        assert_true(deploy_status_transition_ok("starting", "running"));
        assert_true(deploy_status_transition_ok("running", "restarting"));
        assert_true(deploy_status_transition_ok("failed", "starting"));
        assert_false(deploy_status_transition_ok("stopped", "running"));
        assert_false(deploy_status_transition_ok("failed", "running"));
        assert_int_equal(deploy_spec_hash(a, h1), 0);
        assert_int_equal(deploy_spec_hash(b, h2), 0);
        assert_string_equal(h1, h2);
        json_decref(a);
        json_decref(b);
        {
                deploy_gpu_mode m;
                assert_int_equal(deploy_gpu_mode_parse("CDI", &m), 0);
                assert_int_equal(m, DEPLOY_GPU_CDI);
                assert_string_equal(deploy_gpu_mode_name(m), "cdi");
                assert_int_equal(deploy_gpu_mode_parse("mig", &m), -EINVAL);
        }
}

static void test_registry_auth(void **s) {
        /* "alice:s3cr:et" and "bob:pw" in base64 */
        json_t *cfg = J("{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":\"Ym9iOnB3\"},"
                        "\"127.0.0.1:5000\":{\"auth\":\"YWxpY2U6czNjcjpldA==\"},"
                        "\"ghcr.io\":{\"identitytoken\":\"tok\"},"
                        "\"nvcr.io\":{\"username\":\"$oauthtoken\",\"password\":\"k\"},"
                        "\"bad.example\":{\"auth\":\"bm9jb2xvbg==\"}}}");
        char *u = NULL, *p = NULL, *t = NULL;
        (void)s;

        assert_int_equal(deploy_registry_auth_lookup(cfg, "127.0.0.1:5000", &u, &p, &t), 0);
        assert_string_equal(u, "alice");
        assert_string_equal(p, "s3cr:et");
        assert_null(t);
        free(u);
        free(p);
        assert_int_equal(deploy_registry_auth_lookup(cfg, "docker.io", &u, &p, &t), 0);
        assert_string_equal(u, "bob");
        free(u);
        free(p);
        assert_int_equal(deploy_registry_auth_lookup(cfg, "ghcr.io", &u, &p, &t), 0);
        assert_null(u);
        assert_string_equal(t, "tok");
        free(t);
        assert_int_equal(deploy_registry_auth_lookup(cfg, "nvcr.io", &u, &p, &t), 0);
        assert_string_equal(u, "$oauthtoken");
        free(u);
        free(p);
        assert_int_equal(deploy_registry_auth_lookup(cfg, "quay.io", &u, &p, &t), -ENOENT);
        assert_int_equal(deploy_registry_auth_lookup(cfg, "bad.example", &u, &p, &t), -EINVAL);
        json_decref(cfg);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_create_validate), cmocka_unit_test(test_other_validators),
                cmocka_unit_test(test_model_source),    cmocka_unit_test(test_registries),
                cmocka_unit_test(test_container_config), cmocka_unit_test(test_container_info),
                cmocka_unit_test(test_update),          cmocka_unit_test(test_time_and_status),
                cmocka_unit_test(test_registry_auth),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
