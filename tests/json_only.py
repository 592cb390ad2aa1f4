"""A server from before JSON Lines pages: a real hookstream behind an HTTP proxy that drops every Accept header.

Polling then answers its JSON page whatever the client asked for, as a server without
`application/x-ndjson` pages would, while everything else (errors, ids, epochs) is the real server's.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Hop-by-hop headers (RFC 9110 §7.6.1), and the ones http.client sets itself.
_NOT_FORWARDED = {"accept", "connection", "keep-alive", "transfer-encoding", "host", "content-length"}


class JsonOnlyServer:
    """Forwards 127.0.0.1:`port` to hookstream on `target_port` without the Accept header; keeps connections alive."""

    def __init__(self, target_port: int) -> None:
        target = target_port

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                upstream = http.client.HTTPConnection("127.0.0.1", target, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED}
                    upstream.request("GET", self.path, headers=headers)
                    response = upstream.getresponse()
                    body = response.read()
                finally:
                    upstream.close()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in _NOT_FORWARDED | {"date", "server", "vary"}:
                        self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
