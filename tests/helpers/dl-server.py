#!/usr/bin/env python3
"""dl-server: the HTTP peer of the model download tests (tests/integration/test-models.sh,
bench/bench-download.sh). Python 3 standard library only.

Two modes:

files (default)
  Serves --root DIR over HTTP/1.1 (keep-alive, GET and HEAD) with single-range requests
  (Range: bytes=a-b | a- | -n, answered 206 with Content-Range, 416 when unsatisfiable),
  If-Range (an ETag or Last-Modified that no longer matches gets the whole file, 200),
  ETag ("<size hex>-<mtime ns hex>", so rewriting a file changes it) and Last-Modified.
  With --hub DIR it also stands in for the Hugging Face Hub, from the fixtures written by
  tests/fixtures/hf/make-fixtures.py:
    GET /api/models/<org>/<name>/revision/<rev>[?blobs=true]   info.json (blob fields only
        with blobs=true); rev "main" or the commit sha, else 404 X-Error-Code RevisionNotFound
    GET|HEAD /<org>/<name>/resolve/<rev>/<path>   regular files: 200 with ETag "<blobId>" and
        X-Repo-Commit; LFS files: 302 to http://<--cdn-host>:<port>/_cdn/<org>/<name>/<sha256>
        with X-Linked-Etag "<sha256>", X-Linked-Size, X-Repo-Commit (like the Hub's CDN
        redirect; a different host name, so a client must drop Authorization there)
    private repositories (a file "auth" beside info.json) need "Authorization: Bearer <token>":
        otherwise 401 with X-Error-Code RepoNotFound, as the Hub answers.
  Requests to /_cdn/... that carry an Authorization header are counted (stats "cdnAuth").

s3proxy (--mode s3proxy --upstream URL --access-key K --secret-key S [--region R])
  A reverse proxy in front of an S3 server (s3rver) that VERIFIES AWS Signature V4 on every
  request (s3rver itself only checks that the access key exists: it never computes V4
  signatures). Bad or missing signatures get 403 SignatureDoesNotMatch / AccessDenied.
  --max-keys N rewrites max-keys of ListObjectsV2 requests after verification so that a small
  bucket lists in several pages.

Control API (both modes), JSON:
  GET  /_ctl/stats          {"paths": {path: {requests, bytes, statuses, ranges, auth}},
                             "totalBytes", "cdnAuth", "sigv4": {"ok", "bad"}}
  POST /_ctl/reset          counters and faults cleared
  POST /_ctl/fault          arms a fault: {"path": "/x" or "*", "mode": ..., "count": 1 (-1:
                            always), "after": bytes, "status": 500, "rate": bytes/s,
                            "seconds": 3600, "to": URL, "replace_with": "/other"}
      drop     headers, `after` body bytes, `delay` s (0.3) for the client to read them,
               then the connection is reset (RST)
      stall    headers, `after` body bytes, then silence for `seconds` (connection kept)
      short    Content-Length larger than the body: `after` bytes then a clean close
      error    status `status` (default 500) with a small body
      trickle  the body at `rate` bytes per second
      redirect 302 to `to`
      replace_with (any mode): once the faulted response is done, the file at `path` is
               replaced by a copy of `replace_with` (a changed source: new ETag and content)
  GET  /_ctl/faults         armed faults
  GET  /_ctl/requests       the last 200 requests: {path, method, range, ifRange, auth, status}

Usage: dl-server.py [--host 127.0.0.1] [--port 0] [--port-file F] [--root DIR] [--hub DIR]
                    [--cdn-host localhost] [--mode files|s3proxy] ...
Prints "LISTENING <port>" on stdout once ready.
"""
import argparse
import datetime
import email.utils
import hashlib
import hmac
import http.client
import http.server
import json
import os
import shutil
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

LOCK = threading.Lock()
STATS = {}
FAULTS = []
REQUESTS = []
COUNTERS = {"cdnAuth": 0, "sigv4_ok": 0, "sigv4_bad": 0}
ARGS = None
CHUNK = 64 * 1024


def reset():
    with LOCK:
        STATS.clear()
        FAULTS.clear()
        REQUESTS.clear()
        for k in COUNTERS:
            COUNTERS[k] = 0


def stat_for(path):
    s = STATS.get(path)
    if s is None:
        s = STATS[path] = {"requests": 0, "bytes": 0, "statuses": [], "ranges": [], "auth": 0}
    return s


def take_fault(path):
    """The first armed fault for path (or "*"), its count decremented."""
    with LOCK:
        for f in FAULTS:
            if f.get("path") in (path, "*") and f.get("count", 1) != 0:
                if f.get("count", 1) > 0:
                    f["count"] = f.get("count", 1) - 1
                return dict(f)
    return None


def etag_of(st):
    return '"%x-%x"' % (st.st_size, st.st_mtime_ns)


def parse_range(h, size):
    """(start, end_inclusive) or None (no/ignored range) or "bad" (416)."""
    if not h or not h.startswith("bytes=") or "," in h:
        return None
    spec = h[6:].strip()
    a, _, b = spec.partition("-")
    try:
        if a == "":
            n = int(b)
            if n <= 0:
                return "bad"
            return (max(0, size - n), size - 1)
        start = int(a)
        end = int(b) if b else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "bad"
    return (start, min(end, size - 1))


# ---------------------------------------------------------------- SigV4

def _uri_encode(s, keep_slash):
    safe = "-_.~" + ("/" if keep_slash else "")
    return urllib.parse.quote(s, safe=safe)


def sigv4_check(method, raw_path, headers, secret, region):
    """None when the request carries a valid AWS SigV4 Authorization header, else a reason."""
    auth = headers.get("Authorization")
    if not auth or not auth.startswith("AWS4-HMAC-SHA256 "):
        return "no AWS4-HMAC-SHA256 Authorization header"
    parts = {}
    for item in auth[len("AWS4-HMAC-SHA256 "):].split(","):
        k, _, v = item.strip().partition("=")
        parts[k] = v
    try:
        cred = parts["Credential"].split("/")
        signed = parts["SignedHeaders"].split(";")
        sig = parts["Signature"]
    except KeyError as e:
        return "malformed Authorization: %s" % e
    if len(cred) != 5 or cred[2] != region or cred[3] != "s3" or cred[4] != "aws4_request":
        return "bad credential scope %r" % parts["Credential"]
    if cred[0] != ARGS.access_key:
        return "unknown access key"
    amz_date = headers.get("x-amz-date")
    if not amz_date or not amz_date.startswith(cred[1]):
        return "x-amz-date missing or not in the credential's day"
    try:
        t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return "bad x-amz-date"
    if abs((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()) > 900:
        return "request time too skewed"
    if "host" not in signed:
        return "host not signed"
    path, _, query = raw_path.partition("?")
    canon_uri = _uri_encode(urllib.parse.unquote(path), True)
    pairs = []
    if query:
        for item in query.split("&"):
            k, _, v = item.partition("=")
            pairs.append((_uri_encode(urllib.parse.unquote_plus(k), False),
                          _uri_encode(urllib.parse.unquote_plus(v), False)))
    pairs.sort()
    canon_query = "&".join("%s=%s" % kv for kv in pairs)
    canon_headers = ""
    for name in signed:
        v = headers.get(name)
        if v is None:
            return "signed header %s missing" % name
        canon_headers += "%s:%s\n" % (name, " ".join(v.strip().split()))
    payload = headers.get("x-amz-content-sha256") or hashlib.sha256(b"").hexdigest()
    creq = "\n".join([method, canon_uri, canon_query, canon_headers, ";".join(signed), payload])
    scope = "/".join(cred[1:])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for m in (cred[1], cred[2], cred[3], cred[4]):
        k = hmac.new(k, m.encode(), hashlib.sha256).digest()
    want = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, sig):
        return "signature mismatch (canonical request %r)" % creq
    return None


# ---------------------------------------------------------------- handler

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dl-server/1"

    def log_message(self, fmt, *args):
        if ARGS.verbose:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    # -- helpers
    def _record(self, path, status, nbytes, rng=None):
        with LOCK:
            s = stat_for(path)
            s["requests"] += 1
            s["bytes"] += nbytes
            s["statuses"].append(status)
            if rng:
                s["ranges"].append(rng)
            if self.headers.get("Authorization"):
                s["auth"] += 1
            REQUESTS.append({"path": path, "method": self.command, "range": self.headers.get("Range"),
                             "ifRange": self.headers.get("If-Range"),
                             "auth": bool(self.headers.get("Authorization")), "status": status})
            del REQUESTS[:-200]

    def _add_bytes(self, path, n):
        with LOCK:
            stat_for(path)["bytes"] += n

    def _json(self, status, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _abort(self):
        """Resets the connection (RST) without a clean close."""
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    # -- control API
    def _control(self, path):
        if path == "/_ctl/stats":
            with LOCK:
                out = {"paths": json.loads(json.dumps(STATS)),
                       "totalBytes": sum(s["bytes"] for s in STATS.values()),
                       "cdnAuth": COUNTERS["cdnAuth"],
                       "sigv4": {"ok": COUNTERS["sigv4_ok"], "bad": COUNTERS["sigv4_bad"]}}
            return self._json(200, out)
        if path == "/_ctl/reset":
            self._body()
            reset()
            return self._json(200, {"ok": True})
        if path == "/_ctl/fault":
            f = json.loads(self._body() or b"{}")
            f.setdefault("count", 1)
            f.setdefault("path", "*")
            with LOCK:
                FAULTS.append(f)
            return self._json(200, {"ok": True, "fault": f})
        if path == "/_ctl/faults":
            if self.command == "DELETE":
                with LOCK:
                    FAULTS.clear()
            with LOCK:
                return self._json(200, {"faults": list(FAULTS)})
        if path == "/_ctl/requests":
            with LOCK:
                return self._json(200, {"requests": list(REQUESTS)})
        return self._json(404, {"error": "unknown control path"})

    # -- plain files
    def _send_file(self, path, fs_path, extra_headers=None, etag=None):
        try:
            f = open(fs_path, "rb")
        except OSError:
            self._record(path, 404, 0)
            return self._json(404, {"error": "not found"})
        with f:
            st = os.fstat(f.fileno())
            size = st.st_size
            tag = etag or etag_of(st)
            lm = email.utils.formatdate(st.st_mtime, usegmt=True)
            fault = take_fault(path)
            try:
                self._send_file_body(path, f, size, tag, lm, fault, extra_headers or {})
            finally:
                if fault and fault.get("replace_with"):
                    src = os.path.join(ARGS.root, fault["replace_with"].lstrip("/"))
                    tmp = fs_path + ".replace-tmp"
                    shutil.copyfile(src, tmp)
                    os.replace(tmp, fs_path)

    def _send_file_body(self, path, f, size, tag, lm, fault, extra):
        mode = fault.get("mode") if fault else None
        if mode == "error":
            status = int(fault.get("status", 500))
            self._record(path, status, 0)
            body = b"injected error\n"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if mode == "redirect":
            self._record(path, 302, 0)
            self.send_response(302)
            self.send_header("Location", fault["to"])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        rng_h = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if rng_h and if_range and if_range not in (tag, lm):
            rng_h = None  # the source changed: the whole new file
        rng = parse_range(rng_h, size) if rng_h else None
        if rng == "bad":
            self._record(path, 416, 0, rng_h)
            self.send_response(416)
            self.send_header("Content-Range", "bytes */%d" % size)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = (rng if rng else (0, size - 1))
        length = end - start + 1 if size > 0 else 0
        status = 206 if rng else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", tag)
        self.send_header("Last-Modified", lm)
        for k, v in extra.items():
            self.send_header(k, v)
        if rng:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        declared = length + (int(fault.get("extra", 1000)) if mode == "short" else 0)
        self.send_header("Content-Length", str(declared))
        self.end_headers()
        self._record(path, status, 0, rng_h)
        if self.command == "HEAD":
            return
        limit = length
        if mode in ("drop", "stall", "short"):
            limit = min(length, int(fault.get("after", 0)))
        f.seek(start)
        sent = 0
        if mode is None and limit > 0:
            self.wfile.flush()
            while sent < limit:
                n = self.connection.sendfile(f, offset=start + sent, count=limit - sent)
                if not n:
                    break
                sent += n
                self._add_bytes(path, n)
        else:
            rate = int(fault.get("rate", 65536)) if mode == "trickle" else 0
            step = max(1, rate // 10) if rate else CHUNK
            while sent < limit:
                data = f.read(min(step, limit - sent))
                if not data:
                    break
                self.wfile.write(data)
                self.wfile.flush()
                sent += len(data)
                self._add_bytes(path, len(data))
                if rate:
                    time.sleep(0.1)
        if mode == "drop":
            # Let the client read what was sent (the bytes "delivered"), then
            # reset: a reset discards whatever the peer has not read yet.
            self.wfile.flush()
            time.sleep(float(fault.get("delay", 0.3)))
            self._abort()
        elif mode == "stall":
            self.wfile.flush()
            time.sleep(float(fault.get("seconds", 3600)))
            self._abort()
        elif mode == "short":
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    # -- Hub stand-in
    def _hub_repo(self, org, name):
        d = os.path.join(ARGS.hub, org, name)
        info = os.path.join(d, "info.json")
        if not os.path.isfile(info):
            return None, None
        with open(info) as f:
            data = json.load(f)
        return d, data

    def _hub_auth_ok(self, d):
        auth = os.path.join(d, "auth")
        if not os.path.exists(auth):
            return True
        with open(auth) as f:
            token = f.read().strip()
        return self.headers.get("Authorization") == "Bearer " + token

    def _hub_denied(self, path):
        self._record(path, 401, 0)
        return self._json(401, {"error": "Repository Not Found for url: %s." % self.path},
                          {"X-Error-Code": "RepoNotFound",
                           "X-Error-Message": "Invalid username or password."})

    def _hub(self, path, query):
        segs = [urllib.parse.unquote(s) for s in path.split("/")]
        # /api/models/<org>/<name>/revision/<rev>
        if len(segs) >= 7 and segs[1] == "api" and segs[2] == "models" and segs[5] == "revision":
            org, name, rev = segs[3], segs[4], "/".join(segs[6:])
            d, info = self._hub_repo(org, name)
            if not d or not self._hub_auth_ok(d):
                self._hub_denied(path)
                return True
            if rev not in ("main", info["sha"]):
                self._record(path, 404, 0)
                self._json(404, {"error": "Invalid rev id: %s" % rev},
                                  {"X-Error-Code": "RevisionNotFound"})
                return True
            if "true" not in urllib.parse.parse_qs(query).get("blobs", []):
                info["siblings"] = [{"rfilename": s["rfilename"]} for s in info["siblings"]]
            self._record(path, 200, 0)
            self._json(200, info)
            return True
        # /<org>/<name>/resolve/<rev>/<path...>
        if len(segs) >= 6 and segs[3] == "resolve":
            org, name, rev, rel = segs[1], segs[2], segs[4], "/".join(segs[5:])
            d, info = self._hub_repo(org, name)
            if not d or not self._hub_auth_ok(d):
                self._hub_denied(path)
                return True
            if rev not in ("main", info["sha"]):
                self._record(path, 404, 0)
                self._json(404, {"error": "Invalid rev id: %s" % rev},
                                  {"X-Error-Code": "RevisionNotFound"})
                return True
            sib = next((s for s in info["siblings"] if s["rfilename"] == rel), None)
            if not sib:
                self._record(path, 404, 0)
                self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                return True
            common = {"X-Repo-Commit": info["sha"]}
            if "lfs" in sib:
                sha = sib["lfs"]["sha256"]
                loc = "http://%s:%d/_cdn/%s/%s/%s" % (ARGS.cdn_host, self.server.server_port, org, name, sha)
                self._record(path, 302, 0)
                self.send_response(302)
                self.send_header("Location", loc)
                self.send_header("X-Repo-Commit", info["sha"])
                self.send_header("X-Linked-Etag", '"%s"' % sha)
                self.send_header("X-Linked-Size", str(sib["lfs"]["size"]))
                self.send_header("ETag", '"%s"' % sib["blobId"])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True
            self._send_file(path, os.path.join(d, "files", rel), common, '"%s"' % sib["blobId"])
            return True
        # /_cdn/<org>/<name>/<sha256>
        if len(segs) == 5 and segs[1] == "_cdn":
            org, name, sha = segs[2], segs[3], segs[4]
            d, info = self._hub_repo(org, name)
            sib = next((s for s in (info or {}).get("siblings", []) if s.get("lfs", {}).get("sha256") == sha), None)
            if not sib:
                self._record(path, 404, 0)
                self._json(404, {"error": "not found"})
                return True
            if self.headers.get("Authorization"):
                with LOCK:
                    COUNTERS["cdnAuth"] += 1
            self._send_file(path, os.path.join(d, "files", sib["rfilename"]), {}, '"%s"' % sha)
            return True
        return False

    # -- S3 proxy
    def _s3proxy(self, path):
        reason = sigv4_check(self.command, self.path, self.headers, ARGS.secret_key, ARGS.region)
        if reason:
            with LOCK:
                COUNTERS["sigv4_bad"] += 1
            sys.stderr.write("dl-server: SigV4 rejected: %s\n" % reason)
            body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>"
                    "<Message>%s</Message></Error>" % "verification failed").encode()
            self._record(path, 403, 0)
            self._body()
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        with LOCK:
            COUNTERS["sigv4_ok"] += 1
        target = self.path
        if ARGS.max_keys and "list-type=2" in target:
            p, _, q = target.partition("?")
            pairs = [kv for kv in q.split("&") if not kv.startswith("max-keys=")]
            pairs.append("max-keys=%d" % ARGS.max_keys)
            target = p + "?" + "&".join(pairs)
        fault = take_fault(path)
        mode = fault.get("mode") if fault else None
        if mode == "error":
            self._record(path, int(fault.get("status", 500)), 0)
            return self._json(int(fault.get("status", 500)), {"error": "injected"})
        up = urllib.parse.urlsplit(ARGS.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        # Verified here; s3rver gets an anonymous request (it knows only its own access key).
        drop = ("connection", "keep-alive", "authorization", "x-amz-date", "x-amz-content-sha256")
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in drop}
        conn.request(self.command, target, body=self._body() or None, headers=hdrs)
        resp = conn.getresponse()
        self.send_response(resp.status)
        length = None
        for k, v in resp.getheaders():
            if k.lower() in ("connection", "keep-alive", "transfer-encoding"):
                continue
            if k.lower() == "content-length":
                length = int(v)
            self.send_header(k, v)
        data = b""
        if length is None:
            data = resp.read()
            self.send_header("Content-Length", str(len(data)))
            length = len(data)
        self.end_headers()
        self._record(path, resp.status, 0, self.headers.get("Range"))
        limit = length
        if mode in ("drop", "stall"):
            limit = min(length, int(fault.get("after", 0)))
        sent = 0
        if self.command != "HEAD":
            while sent < limit:
                chunk = data[sent:limit] if data else resp.read(min(CHUNK, limit - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
                self._add_bytes(path, len(chunk))
        conn.close()
        if mode == "drop":
            self._abort()
        elif mode == "stall":
            self.wfile.flush()
            time.sleep(float(fault.get("seconds", 3600)))
            self._abort()

    # -- dispatch
    def _dispatch(self):
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        try:
            if path.startswith("/_ctl/"):
                return self._control(path)
            if ARGS.mode == "s3proxy":
                return self._s3proxy(path)
            if self.command not in ("GET", "HEAD"):
                self._body()
                return self._json(405, {"error": "method not allowed"})
            if ARGS.hub and self._hub(path, split.query):
                return
            rel = urllib.parse.unquote(path).lstrip("/")
            fs_path = os.path.realpath(os.path.join(ARGS.root, rel))
            if not fs_path.startswith(os.path.realpath(ARGS.root) + os.sep) or not os.path.isfile(fs_path):
                self._record(path, 404, 0)
                return self._json(404, {"error": "not found"})
            return self._send_file(path, fs_path)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = _dispatch
    do_HEAD = _dispatch
    do_POST = _dispatch
    do_PUT = _dispatch
    do_DELETE = _dispatch


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # Clients that reset their connections are part of the tests.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--root", default=".")
    ap.add_argument("--hub")
    ap.add_argument("--cdn-host", default="localhost")
    ap.add_argument("--mode", choices=("files", "s3proxy"), default="files")
    ap.add_argument("--upstream")
    ap.add_argument("--access-key")
    ap.add_argument("--secret-key")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--max-keys", type=int, default=0)
    ap.add_argument("--verbose", action="store_true")
    ARGS = ap.parse_args()
    if ARGS.mode == "s3proxy" and not (ARGS.upstream and ARGS.access_key and ARGS.secret_key):
        ap.error("s3proxy needs --upstream, --access-key and --secret-key")
    srv = Server((ARGS.host, ARGS.port), Handler)
    port = srv.server_address[1]
    if ARGS.port_file:
        tmp = ARGS.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, ARGS.port_file)
    print("LISTENING %d" % port, flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
