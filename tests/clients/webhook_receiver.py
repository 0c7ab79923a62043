"""A real HTTP receiver for the webhook report tests (Python's http.server).

    webhook_receiver.py PORT_FILE OUT_DIR [--fail N] [--delay SECONDS]

Answers the first N POSTs with 503, then 200, each after SECONDS. Every request is written to
OUT_DIR as N.json: its headers, body (as text), whether it succeeded, and when it arrived.
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port_file, out_dir = sys.argv[1], sys.argv[2]
args = sys.argv[3:]
fail = int(args[args.index("--fail") + 1]) if "--fail" in args else 0
delay = float(args[args.index("--delay") + 1]) if "--delay" in args else 0.0
os.makedirs(out_dir, exist_ok=True)
lock = threading.Lock()
count = [0]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with lock:
            count[0] += 1
            n = count[0]
        time.sleep(delay)
        ok = n > fail
        record = {
            "n": n,
            "ok": ok,
            "received_at": time.time(),
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8"),
        }
        tmp = os.path.join(out_dir, f".{n}.json")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(out_dir, f"{n}.json"))
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
