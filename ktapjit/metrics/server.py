"""The HTTP side: `/metrics` served from a thread of its own.

The main thread publishes a whole rendering (immutable bytes) and a scrape
sends whichever rendering was the latest when it began: swapping one
reference is atomic, so a scrape never sees a half-made table and never
waits for the event path, nor it for a scrape. Handler threads are daemons
and `close()` does not wait for them, so a client that stalls mid-request
cannot hold ktapjit up at exit.

May import: stdlib.
"""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = "/metrics"
DEFAULT_ADDR = "127.0.0.1"
REQUEST_TIMEOUT_S = 10.0  # a connection idle this long is dropped


class AddressError(ValueError):
    """A --metrics value that is not [ADDR:]PORT."""


def parse_address(text: str) -> tuple[str, int]:
    """`PORT`, `ADDR:PORT` or `[IPV6]:PORT` -> (addr, port)."""
    addr, sep, port = text.rpartition(":")
    if not sep:
        addr = DEFAULT_ADDR
    elif addr.startswith("[") and addr.endswith("]"):
        addr = addr[1:-1]
    elif ":" in addr:
        raise AddressError(f"--metrics {text}: write an IPv6 address in brackets, as [::1]:PORT")
    if not addr:
        raise AddressError(f"--metrics {text}: the address before ':' is empty")
    if not port.isdigit() or int(port) > 65535:
        raise AddressError(f"--metrics {text}: the port must be a number from 0 to 65535")
    return addr, int(port)


class MetricsServer:
    """Serves the latest published text at /metrics until close()."""

    def __init__(self, addr: str, port: int, content_type: str):
        self.body = b""
        self.content_type = content_type
        self.httpd = _Server(addr, port, self)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="ktapjit-metrics", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}{PATH}"

    def publish(self, body: bytes) -> None:
        self.body = body  # one reference swap: a scrape sends the old or the new, whole

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a stalled client must not hold the exit up

    def __init__(self, addr: str, port: int, metrics: MetricsServer):
        self.metrics = metrics
        self.address_family = _family(addr)
        super().__init__((addr, port), _Handler)

    def handle_error(self, request, client_address) -> None:
        """A client gone mid-reply is its own business; anything else is one
        line on stderr, never the stdlib's traceback."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            print(f"ktapjit: metrics: internal error: {type(error).__name__}: {error}", file=sys.stderr)


def _family(addr: str) -> int:
    try:
        infos = socket.getaddrinfo(addr, None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICSERV)
    except socket.gaierror as exc:
        raise OSError(f"unknown address '{addr}' ({exc.strerror})") from None
    return infos[0][0]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT_S
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_POST(self) -> None:
        self._refuse()

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def _answer(self, send_body: bool) -> None:
        if self.path.split("?", 1)[0] != PATH:
            self._reply(404, b"not found: only /metrics is served\n", "text/plain; charset=utf-8", send_body)
            return
        metrics = self.server.metrics
        self._reply(200, metrics.body, metrics.content_type, send_body)

    def _refuse(self) -> None:
        self.close_connection = True
        self._reply(405, b"method not allowed: use GET or HEAD\n", "text/plain; charset=utf-8", True,
                    allow="GET, HEAD")

    def _reply(self, code: int, body: bytes, content_type: str, send_body: bool, allow: str = "") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's signature
        pass  # stderr is the script's and ktapjit's
