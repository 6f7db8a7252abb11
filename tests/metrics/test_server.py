"""The /metrics server over real loopback sockets: what each request gets,
and a close() that a stalled client cannot hold up."""

import http.client
import socket
import time

import pytest

from ktapjit.metrics.exposition import CONTENT_TYPE
from ktapjit.metrics.server import MetricsServer


@pytest.fixture
def server():
    s = MetricsServer("127.0.0.1", 0, CONTENT_TYPE)
    s.publish(b"# TYPE ktapjit_n gauge\nktapjit_n 1\n")
    yield s
    s.close()


def request(server, method: str, path: str):
    host, port = server.httpd.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


REQUESTS = [
    ("GET", "/metrics", 200, b"# TYPE ktapjit_n gauge\nktapjit_n 1\n"),
    ("GET", "/metrics?name[]=x", 200, b"# TYPE ktapjit_n gauge\nktapjit_n 1\n"),
    ("HEAD", "/metrics", 200, b""),
    ("GET", "/", 404, b"not found: only /metrics is served\n"),
    ("GET", "/metrics/x", 404, b"not found: only /metrics is served\n"),
    ("HEAD", "/other", 404, b""),
    ("POST", "/metrics", 405, b"method not allowed: use GET or HEAD\n"),
    ("PUT", "/metrics", 405, b"method not allowed: use GET or HEAD\n"),
    ("DELETE", "/", 405, b"method not allowed: use GET or HEAD\n"),
]


@pytest.mark.parametrize("method, path, status, body", REQUESTS)
def test_requests(server, method, path, status, body):
    got_status, headers, got_body = request(server, method, path)
    assert (got_status, got_body) == (status, body)
    if status == 200:
        assert headers["Content-Type"] == CONTENT_TYPE
        assert headers["Content-Length"] == "35"
    if status == 405:
        assert headers["Allow"] == "GET, HEAD"


def test_a_scrape_sees_the_latest_publication_whole(server):
    server.publish(b"a\n")
    server.publish(b"b\n")
    assert request(server, "GET", "/metrics")[2] == b"b\n"


def test_url_names_the_bound_port(server):
    assert server.url == f"http://127.0.0.1:{server.httpd.server_address[1]}/metrics"


def test_close_with_a_stalled_request_in_flight_returns_at_once():
    s = MetricsServer("127.0.0.1", 0, CONTENT_TYPE)
    client = socket.create_connection(s.httpd.server_address[:2])
    try:
        client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
        time.sleep(0.2)  # its handler thread is reading it now
        started = time.monotonic()
        s.close()
        assert time.monotonic() - started < 2.0
        with pytest.raises(OSError):
            socket.create_connection(s.httpd.server_address[:2], timeout=1).close()
    finally:
        client.close()
