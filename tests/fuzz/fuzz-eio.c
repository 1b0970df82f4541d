/* libFuzzer target for src/protocol/eio: packet decoding, the OPEN
 * handshake parser, and encode -> decode round trips. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "protocol/eio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        eio_packet p, q;
        eio_handshake h;
        char err[256];
        buf b;

        if (eio_decode((const char *)data, size, &p) < 0)
                return 0;
        assert(p.payload == (const char *)data + 1 && p.len == size - 1);

        /* Re-encoding gives back the same bytes. */
        buf_init(&b, 0);
        assert(eio_encode(&b, p.type, p.payload, p.len) == 0);
        assert(b.len == size && memcmp(b.data, data, size) == 0);
        assert(eio_decode(b.data, b.len, &q) == 0);
        assert(q.type == p.type && q.len == p.len);
        buf_done(&b);

        if (p.type == EIO_OPEN && eio_parse_handshake(p.payload, p.len, &h, err, sizeof err) == 0) {
                assert(h.sid && h.sid[0]);
                assert(h.ping_interval_ms > 0 && h.ping_timeout_ms > 0 && h.max_payload > 0);
                eio_handshake_done(&h);
        }
        return 0;
}
