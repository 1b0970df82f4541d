/* libFuzzer target for the configuration parsers of transport/net: proxy
 * URLs (net_proxy_valid) and no_proxy lists (net_proxy_for). Input: host,
 * '\n', no_proxy list, '\n', proxy URL. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s, *host, *no_proxy, *url, *nl;
        const char *p;

        if (size > 4096)
                return 0;
        s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        host = s;
        nl = strchr(host, '\n');
        no_proxy = nl ? (*nl = '\0', nl + 1) : "";
        nl = strchr(no_proxy, '\n');
        url = nl ? (*nl = '\0', nl + 1) : "http://proxy:3128";

        (void)net_proxy_valid(url);
        p = net_proxy_for(host, 443, true, "http://h:1", url, no_proxy);
        if (p && p != url && strcmp(p, url) != 0)
                abort();
        /* An empty list or NULL never excludes a host. */
        if (url[0] && net_proxy_for(host, 443, true, NULL, url, NULL) != url)
                abort();
        free(s);
        return 0;
}
