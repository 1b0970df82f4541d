#!/usr/bin/env python3
"""http-fixture-server: the small HTTP peer of tests/unit/test-http.c (Python 3 standard
library only). Not the download-fault server: that is tests/helpers/dl-server.py.

Listens on 127.0.0.1 (--port 0 picks a free port) or on a Unix socket (--unix PATH), with
TLS when --cert/--key are given, and prints one line "ready <port>" (0 for a Unix socket)
on stdout once it accepts connections. Each request is served on its own thread.

Paths (the query string is ignored unless named):
  GET  /ok                 200 "hello", ETag "abc"
  POST /echo               201 with the request body echoed
  GET  /status/N           status N with body "status N"
  GET  /range              the 10 bytes "0123456789"; a Range "bytes=a-" or "bytes=a-b"
                           gets 206 with Content-Range, an unsatisfiable one 416
  GET  /redirect?to=URL    302 to URL
  GET  /slow?s=S           headers and body after S seconds (default 3)
  GET  /trickle?n=N        N bytes (default 10), one every 100 ms
  GET  /drop               headers announcing 1000 bytes, 10 bytes, then a reset (RST)
  GET  /headers            200 with the request headers as the body
Anything else: 404.
"""
import argparse
import os
import socket
import ssl
import struct
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import socketserver

BODY = b"0123456789"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def address_string(self):  # Unix sockets have no (host, port)
        return "local"

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n > 0 else b""
        if path == "/echo":
            self.send(201, data, [("Content-Type", self.headers.get("Content-Type") or "")])
        else:
            self.send(404, b"nope")

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        path = u.path
        if path == "/ok":
            self.send(200, b"hello", [("ETag", '"abc"')])
        elif path.startswith("/status/"):
            code = int(path[8:])
            self.send(code, ("status %d" % code).encode())
        elif path == "/range":
            rng = self.headers.get("Range")
            if not rng:
                self.send(200, BODY)
                return
            a, _, b = rng.removeprefix("bytes=").partition("-")
            first = int(a)
            last = int(b) if b else len(BODY) - 1
            if first >= len(BODY) or last < first:
                self.send(416, b"", [("Content-Range", "bytes */%d" % len(BODY))])
                return
            last = min(last, len(BODY) - 1)
            self.send(206, BODY[first:last + 1],
                      [("Content-Range", "bytes %d-%d/%d" % (first, last, len(BODY)))])
        elif path == "/redirect":
            self.send(302, b"", [("Location", q.get("to", ["/ok"])[0])])
        elif path == "/slow":
            time.sleep(float(q.get("s", ["3"])[0]))
            self.send(200, b"late")
        elif path == "/trickle":
            n = int(q.get("n", ["10"])[0])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            for _ in range(n):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        elif path == "/drop":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(BODY)
            self.wfile.flush()
            time.sleep(0.1)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
        elif path == "/headers":
            self.send(200, str(self.headers).encode())
        else:
            self.send(404, b"nope")


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128


class TcpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops handshakes under 100 concurrent clients


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--unix")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    a = ap.parse_args()
    if a.unix:
        try:
            os.unlink(a.unix)
        except FileNotFoundError:
            pass
        srv = UnixServer(a.unix, Handler)
        port = 0
    else:
        srv = TcpServer(("127.0.0.1", a.port), Handler)
        port = srv.server_address[1]
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("ready %d" % port, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
