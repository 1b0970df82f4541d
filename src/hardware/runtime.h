/* runtime: the slow, network-bound parts of the inventory, probed in the
 * background on the loop and cached: the container runtime behind
 * DOCKER_SOCKET (GET /version and /info: Docker or Podman, version, root
 * directory) and the public IPv4 address (PUBLIC_IP, else the first answer
 * of PUBLIC_IP_URLS, short timeout). Nothing here ever delays a message: the
 * JSON builders return what is known now. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/loop.h"

typedef struct runtime_probe runtime_probe;

typedef struct runtime_probe_options {
        const char *docker_socket;          /* NULL or "": no runtime */
        const char *public_ip;              /* fixed answer, no lookup */
        const char *const *public_ip_urls;  /* tried in order */
        size_t n_public_ip_urls;
        unsigned public_ip_timeout_ms;      /* per URL; 0 = 3000 */
        unsigned docker_timeout_ms;         /* 0 = 5000 */
        unsigned refresh_ms;                /* re-probe period; 0 = 300000 */
} runtime_probe_options;

/* settled is called each time every probe has answered or failed. */
int runtime_probe_new(loop *l, const runtime_probe_options *o, void (*settled)(void *ud), void *ud,
                      runtime_probe **ret);
runtime_probe *runtime_probe_free(runtime_probe *p);
void runtime_probe_start(runtime_probe *p);
bool runtime_probe_settled(const runtime_probe *p);
/* "unknown" until known. Owned by p. */
const char *runtime_probe_public_ip(const runtime_probe *p);
/* IContainerRuntime {type, version, rootDir}; while unknown or unavailable:
 * {type:"docker", version:"unavailable", rootDir:""} plus "available": false. */
json_t *runtime_probe_json(const runtime_probe *p);
bool runtime_probe_available(const runtime_probe *p);
