"""The receiving node's HTTP status endpoint (``serve --http 127.0.0.1:9110``), off by default.

Three read-only pages, for Prometheus, a load balancer or an administrator with ``curl``:

- ``/metrics``: the receiver's own Prometheus registry (:mod:`dicomcrypt.net.metrics`);
- ``/healthz``: JSON ``{"ready": ..., "checks": {...}, "queue": {...}}``, status 200 when every
  check passes (keys, models, output folder, downstream), 503 otherwise, naming what failed;
- ``/studies``: JSON per-study counts since start, with how many were forwarded and are queued.

It serves no DICOM data and takes no input but the path; bind it to loopback or a management
network (it has no authentication, like most exporters). Requests are handled in their own
threads, so a slow scraper never blocks the DICOM side.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["StatusServer", "parse_http_address"]

LOG = logging.getLogger("dicomcrypt.serve.http")


def parse_http_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); raises ValueError saying what is expected."""
    host, sep, port_text = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:9110)")
    return host, int(port_text)


class StatusServer:
    """``/metrics``, ``/healthz`` and ``/studies`` on one address, in a background thread."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        registry: CollectorRegistry,
        health: Callable[[], dict[str, Any]],
        studies: Callable[[], dict[str, Any]],
    ) -> None:
        pages: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/healthz": lambda: _json(health(), ok_key="ready"),
            "/studies": lambda: _json(studies()),
        }

        class Handler(BaseHTTPRequestHandler):
            server_version = "dicomcrypt"
            sys_version = ""

            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                page = pages.get(self.path.split("?", 1)[0])
                if page is None:
                    code, kind, body = 404, "text/plain; charset=utf-8", b"not found: /metrics, /healthz, /studies\n"
                else:
                    try:
                        code, kind, body = page()
                    except Exception as exc:  # noqa: BLE001 - a failing check is a 500, never a dead thread
                        LOG.warning("event=http outcome=error path=%s error=%s", self.path[:64], type(exc).__name__)
                        code, kind, body = 500, "text/plain; charset=utf-8", b"internal error (see the log)\n"
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                LOG.debug("event=http %s", format % args)

        server_class = _IPv6Server if ":" in address[0] else ThreadingHTTPServer
        self._server = server_class(address, Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> StatusServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="StatusHTTP", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _json(document: dict[str, Any], ok_key: str | None = None) -> tuple[int, str, bytes]:
    code = 200 if ok_key is None or document.get(ok_key) else 503
    return code, "application/json", json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
