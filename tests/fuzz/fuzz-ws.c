/* libFuzzer target for transport/ws: the handshake response parser and the
 * frame decoder, fed in chunks whose size comes from the first input byte.
 * Every decoded message is written back as a frame and decoded again, which
 * must give the same message (parse, write, parse). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "transport/ws.h"

/* RFC 6455 example key; a seed's 101 answers it with
 * Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo= */
#define KEY "dGhlIHNhbXBsZSBub25jZQ=="

static void check_roundtrip(const ws_message *m) {
        ws_parser *p = NULL;
        ws_message m2;
        buf b;

        /* Close payloads were validated; write them back byte for byte. */
        buf_init(&b, 0);
        if (ws_frame_write(&b, m->opcode, true, false, m->data, m->len) < 0)
                abort();
        if (ws_parser_new(NULL, &p) < 0)
                abort();
        if (ws_parser_feed(p, b.data, b.len) < 0)
                abort();
        if (ws_parser_next(p, &m2) != 1 || m2.opcode != m->opcode || m2.len != m->len ||
            memcmp(m2.data, m->data, m->len) != 0)
                abort();
        if (m->opcode == WS_OP_CLOSE &&
            (m2.close_code != m->close_code || strcmp(m2.close_reason, m->close_reason) != 0))
                abort();
        if (ws_parser_next(p, &m2) != 0)
                abort();
        ws_parser_free(p);
        buf_done(&b);
}

/* Feeds data to p in chunks of `chunk` bytes, draining after each. */
static void run_frames(const ws_parser_options *o, const uint8_t *data, size_t len, size_t chunk,
                       bool roundtrip) {
        ws_parser *p = NULL;
        ws_message m;
        size_t off = 0;
        int r = 0;

        if (ws_parser_new(o, &p) < 0)
                abort();
        while (off < len && r >= 0) {
                size_t n = len - off < chunk ? len - off : chunk;
                if (ws_parser_feed(p, data + off, n) < 0)
                        break;
                off += n;
                while ((r = ws_parser_next(p, &m)) == 1) {
                        if (m.opcode == WS_OP_CONT || m.data[m.len] != '\0')
                                abort();
                        if ((m.opcode & 0x8) && m.len > WS_CONTROL_MAX)
                                abort();
                        if (roundtrip)
                                check_roundtrip(&m);
                }
        }
        if (r < 0 && (ws_parser_error(p)[0] == '\0' || ws_parser_close_code(p) == 0))
                abort();
        ws_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        ws_parser_options small = { .max_message = 4096 };
        ws_parser_options server = { .server = true, .no_utf8_check = true };
        ws_handshake *h = NULL;
        size_t chunk, off = 0, used = 0;
        int r = 0;

        if (size < 1)
                return 0;
        chunk = (size_t)data[0] % 64 + 1;
        data++;
        size--;

        /* The frame decoder alone, as a client and as a server. */
        run_frames(&small, data, size, chunk, true);
        run_frames(&server, data, size, chunk, false);

        /* The handshake, then whatever follows it as frames. */
        if (ws_handshake_new(KEY, &h) < 0)
                abort();
        while (off < size) {
                size_t n = size - off < chunk ? size - off : chunk;
                r = ws_handshake_feed(h, data + off, n, &used);
                if (r != 0)
                        break;
                if (used != n)
                        abort();
                off += n;
        }
        if (r == 1) {
                if (used > size - off || ws_handshake_status(h) != 101)
                        abort();
                off += used;
                run_frames(&small, data + off, size - off, chunk, true);
        } else if (r < 0) {
                if (ws_handshake_error(h)[0] == '\0')
                        abort();
        } else if (ws_handshake_eof(h) >= 0 || ws_handshake_error(h)[0] == '\0') {
                abort();
        }
        ws_handshake_free(h);
        return 0;
}
