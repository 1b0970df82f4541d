/* Fuzz target of the request-head parser of src/core/httpd.c: arbitrary
 * bytes (at most the server's header cap) go through httpd_parse_head().
 * It must return 0, 400, 405 or 505, and on success hand back a GET or HEAD
 * with an origin-form path made of visible ASCII. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/httpd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        httpd_request req;
        char *head;
        int r;

        if (size > HTTPD_MAX_HEADER_DEFAULT)
                return 0;
        head = malloc(size + 1);
        if (!head)
                return 0;
        memcpy(head, data, size);
        head[size] = '\0';
        r = httpd_parse_head(head, size, &req);
        if (r != 0 && r != 400 && r != 405 && r != 505)
                abort();
        if (r == 0) {
                const char *p;
                if (strcmp(req.method, "GET") != 0 && strcmp(req.method, "HEAD") != 0)
                        abort();
                if (req.path[0] != '/' || req.head != (strcmp(req.method, "HEAD") == 0))
                        abort();
                for (p = req.path; *p; p++)
                        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '?')
                                abort();
                if (req.query && (req.query < head || req.query > head + size))
                        abort();
        }
        free(head);
        return 0;
}
