/* libFuzzer target for src/deploy/deploy_spec.c: the input as JSON goes
 * through every deployment and container command validator; a create spec
 * that passes is turned into a container configuration in each GPU mode
 * (which must then be an object naming the image and our labels); the same
 * JSON is read as an engine container (list and inspect shapes); its
 * strings go through the model source, registry and time parsers. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "deploy/deploy_spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void strings(const json_t *v) {
        static char *const allowed[] = { "localhost", "127.0.0.1:5000", "ghcr.io/org", "docker.io/library" };
        const char *k, *s;
        json_t *c, *cache = NULL;
        deploy_model_kind kind;
        long long ms;
        char err[256], reg[600];
        size_t i;

        if ((s = json_string_value(v))) {
                if (deploy_model_source(s, "m", &kind, &cache, err, sizeof err) == 0) {
                        assert(kind == DEPLOY_MODEL_LOCAL ? cache == NULL : json_is_object(cache));
                        json_decref(cache);
                }
                if (deploy_image_registry(s, reg, sizeof reg) == 0)
                        assert(strlen(reg) > 0);
                (void)deploy_image_allowed(s, allowed, 4);
                (void)deploy_time_parse(s, &ms);
                return;
        }
        json_object_foreach ((json_t *)v, k, c)
                strings(c);
        json_array_foreach (v, i, c)
                strings(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL), *o, *spec, *applied;
        deploy_container_state st;
        char err[512], hash[65];
        bool recreate;
        int mode;

        if (!j)
                return 0;
        if (json_is_object(j)) {
                (void)deploy_update_validate(j, err, sizeof err);
                (void)deploy_stop_validate(j, err, sizeof err);
                (void)deploy_restart_validate(j, err, sizeof err);
                (void)deploy_delete_validate(j, err, sizeof err);
                (void)deploy_container_list_validate(j, err, sizeof err);
                (void)deploy_container_logs_validate(j, err, sizeof err);
                if (deploy_create_validate(j, err, sizeof err) == 0) {
                        for (mode = 0; mode < 3; mode++) {
                                deploy_container_opts opts = {
                                        .deployment_id = "d",
                                        .node_id = "n",
                                        .gpu_mode = (deploy_gpu_mode)mode,
                                        .podman = mode == 1,
                                        .gpu_uuid = mode ? "GPU-1" : NULL,
                                        .host_network = mode == 2,
                                        .model_host_path = "/m",
                                };
                                o = deploy_container_config(j, &opts);
                                assert(o && json_is_object(o));
                                assert(json_is_string(json_object_get(o, "Image")));
                                assert(!strcmp(json_string_value(json_object_get(json_object_get(o, "Labels"),
                                                                                 DEPLOY_LABEL_MANAGED)),
                                               "true"));
                                json_decref(o);
                        }
                        assert(deploy_spec_hash(j, hash) == 0 && strlen(hash) == 64);
                }
                if (deploy_update_validate(j, err, sizeof err) == 0 &&
                    deploy_spec_apply_update(j, json_object_get(j, "config"), &spec, &applied, &recreate) == 0) {
                        json_decref(spec);
                        json_decref(applied);
                }
                json_decref(deploy_container_info(j, true));
                json_decref(deploy_container_info(j, false));
                (void)deploy_container_state_parse(j, 8000, &st);
        }
        strings(j);
        json_decref(j);
        return 0;
}
