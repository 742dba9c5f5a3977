"""A local notification inbox: receives Apprise ``json://`` posts and appends them to a file.

The local stack has no mail server or chat tool, so ``pghd run`` points the alerts service at
this receiver and care-team notifications land, one JSON object per line, in
``.local/logs/notifications.jsonl``. Run it with ``python -m deploy.local.inbox PORT FILE``.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["serve"]


def serve(port: int, out: Path) -> None:
    """Serve until killed: 200 for every POSTed JSON body, appended to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                record = json.loads(body or b"{}")
            except ValueError:
                self.send_response(400)
                self.end_headers()
                return
            with lock, out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            return

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
