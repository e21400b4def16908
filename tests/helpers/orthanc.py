"""A real Orthanc on loopback for tests: config written by the test, PID-owned, REST via urllib.

Usage::

    from helpers.orthanc import start_orthanc

    server = start_orthanc(tmp_path, dicomcrypt={"Mode": "restore", "KeyFiles": [str(key_file)]})
    try:
        server.post_instance(data)             # REST upload
        server.store_scu(paths)                # DCMTK storescu -> C-STORE
        server.instance_ids()
    finally:
        server.stop()

``dicomcrypt=None`` starts a plain Orthanc (no plugin): a downstream PACS for gateway tests.
With settings, the Debian Python plugin loads a script written by ``dicomcrypt orthanc-script``'s
own code, with this source tree ahead of the venv so Orthanc runs the code under test.
A missing Orthanc or plugin skips, and fails under CI (``helpers.dciodvfy.require_tool``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.dciodvfy import require_tool

__all__ = ["OrthancServer", "free_port", "start_orthanc", "require_python_plugin"]

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 90.0  # the plugin imports torch and warms up the models before Orthanc answers


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_python_plugin() -> Path:
    """Orthanc's Python plugin (.so); skip, or fail under CI, if it is not installed."""
    import pytest

    from dicomcrypt.integrations.orthanc_config import find_python_plugin

    plugin = find_python_plugin()
    if plugin is not None:
        return plugin
    if os.environ.get("CI"):
        pytest.fail("Orthanc's Python plugin (Debian package orthanc-python) is required under CI")
    pytest.skip("Orthanc's Python plugin (orthanc-python) is not installed")
    raise AssertionError("unreachable")


@dataclass
class OrthancServer:
    """One Orthanc process and how to talk to it."""

    process: subprocess.Popen[bytes]
    http_port: int
    dicom_port: int
    aet: str
    workdir: Path
    log_path: Path
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    # -- REST ----------------------------------------------------------------------------

    def request(self, method: str, path: str, data: bytes | None = None,
                content_type: str = "application/dicom") -> tuple[int, bytes]:
        """(HTTP status, body); HTTP errors are returned, not raised."""
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=120) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def get_json(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, f"GET {path}: HTTP {status}: {body[:300]!r}\n{self.log_tail()}"
        return json.loads(body)

    def get_bytes(self, path: str) -> bytes:
        status, body = self.request("GET", path)
        assert status == 200, f"GET {path}: HTTP {status}\n{self.log_tail()}"
        return body

    def post_instance(self, data: bytes) -> tuple[int, Any]:
        """POST /instances: (HTTP status, parsed answer or raw text)."""
        status, body = self.request("POST", "/instances", data)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode("utf-8", "replace")

    def instance_ids(self) -> list[str]:
        return self.get_json("/instances")

    def instance_file(self, orthanc_id: str) -> bytes:
        return self.get_bytes(f"/instances/{orthanc_id}/file")

    def find_instance(self, sop_instance_uid: str) -> str | None:
        """Orthanc's id of the instance with this SOP Instance UID, or None."""
        status, body = self.request(
            "POST", "/tools/lookup", sop_instance_uid.encode(), content_type="text/plain"
        )
        assert status == 200, f"lookup: HTTP {status}"
        found = [item["ID"] for item in json.loads(body) if item.get("Type") == "Instance"]
        return found[0] if found else None

    # -- DIMSE ---------------------------------------------------------------------------

    def store_scu(self, paths: Sequence[Path], *, calling_aet: str = "STORESCU", halt: bool = True,
                  timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """DCMTK storescu (verbose, TCP_NODELAY=1) sending ``paths`` on one association.

        storescu stops at the first refused instance unless ``halt=False`` (its ``--no-halt``).
        """
        exe = require_tool("storescu")
        env = dict(os.environ, TCP_NODELAY="1")
        return subprocess.run(
            [exe, "-v", *([] if halt else ["--no-halt"]), "-aet", calling_aet, "-aec", self.aet, "127.0.0.1",
             str(self.dicom_port), *[str(p) for p in paths]],
            capture_output=True, text=True, timeout=timeout, env=env,
        )

    # -- process -------------------------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "--- Orthanc log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (Orthanc shuts down cleanly), then SIGKILL; by PID only."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)


def _plugin_config(workdir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Script and configuration entries exactly as ``dicomcrypt orthanc-script`` writes them.

    The script puts this source tree ahead of the venv so Orthanc runs the code under test;
    ``settings`` then replaces the "DicomCrypt" section (keys the command has no option for).
    """
    import contextlib
    import io

    from dicomcrypt.cli.main import main

    plugin = require_python_plugin()
    script = workdir / "dicomcrypt_orthanc.py"
    argv = ["orthanc-script", "--out", str(script), "--source", str(REPO_ROOT), "--plugin", str(plugin),
            "--mode", settings.get("Mode", "restore"), "--force"]
    for key in settings.get("KeyFiles", []):
        argv += ["--key", key]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    assert code == 0, f"dicomcrypt orthanc-script failed ({code}): {stderr.getvalue()}"
    snippet = json.loads(stdout.getvalue())
    snippet["DicomCrypt"] = dict(settings)
    return snippet


def start_orthanc(
    workdir: Path,
    *,
    dicomcrypt: dict[str, Any] | None = None,
    extra_config: dict[str, Any] | None = None,
    aet: str = "ORTHANC",
    timeout: float = STARTUP_TIMEOUT,
) -> OrthancServer:
    """Start Orthanc on free loopback ports and wait until ``GET /system`` answers."""
    exe = require_tool("Orthanc")
    workdir.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    while dicom_port == http_port:
        dicom_port = free_port()
    config: dict[str, Any] = {
        "Name": "dicomcrypt-test",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpServerEnabled": True,
        "DicomServerEnabled": True,
        "DicomAlwaysAllowStore": True,
        "DicomCheckCalledAet": False,
        "StorageCompression": False,
        "HttpThreadsCount": 8,
        "DicomThreadsCount": 4,
    }
    if dicomcrypt is not None:
        config.update(_plugin_config(workdir, dicomcrypt))
    config.update(extra_config or {})
    config_path = workdir / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = workdir / "orthanc.log"
    with open(log_path, "wb") as log:
        # TCP_NODELAY=1: Orthanc's DCMTK, like storescu, otherwise stalls on Nagle + delayed ACK.
        process = subprocess.Popen(
            [exe, "--verbose", str(config_path)], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=workdir, env=dict(os.environ, TCP_NODELAY="1"),
        )
    server = OrthancServer(process, http_port, dicom_port, aet, workdir, log_path, config)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with code {process.returncode} at startup\n{server.log_tail(200)}")
        try:
            status, _ = server.request("GET", "/system")
            if status == 200:
                return server
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"Orthanc did not answer within {timeout:.0f} s\n{server.log_tail()}")
        time.sleep(0.2)
