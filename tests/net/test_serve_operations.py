"""Issue 15, operations of ``serve``: the called AE title is checked (DCMTK ``echoscu -aec``),
every refused association is logged with its reason, and a running ``serve`` process reopens
its log file on SIGHUP (as logrotate's postrotate asks) and keeps serving."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.dciodvfy import require_tool
from helpers.store_clients import dcmtk_env
from net.conftest import free_port, wait_for_port


def _echoscu(port: int, *, calling: str = "SENDER", called: str = "RECEIVER") -> subprocess.CompletedProcess[str]:
    exe = require_tool("echoscu")
    return subprocess.run([exe, "-v", "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
                          capture_output=True, text=True, timeout=60, env=dcmtk_env())


def _rejections(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "outcome=rejected" in r.getMessage()]


@pytest.mark.peer
def test_a_mistyped_called_ae_title_is_rejected_with_the_right_reason(start_receiver, caplog):
    rx = start_receiver(allowed_aets=frozenset({"SENDER"}))
    caplog.set_level(logging.INFO, logger="dicomcrypt.serve")

    typo = _echoscu(rx.port, called="RECEVIER")
    assert typo.returncode != 0
    assert "Association Rejected" in typo.stderr + typo.stdout
    assert "Called AE Title Not Recognized" in typo.stderr + typo.stdout  # A-ASSOCIATE-RJ 1/1/7

    stranger = _echoscu(rx.port, calling="STRANGER")
    assert "Calling AE Title Not Recognized" in stranger.stderr + stranger.stdout  # 1/1/3

    right = _echoscu(rx.port)
    assert right.returncode == 0, right.stdout + right.stderr
    assert "Received Echo Response (Success)" in right.stdout + right.stderr

    typo_line, stranger_line = _rejections(caplog)
    assert "calling_ae=SENDER" in typo_line
    assert "reason=\"called AE title 'RECEVIER' is not ours ('RECEIVER'" in typo_line
    assert "calling_ae=STRANGER" in stranger_line and 'reason="calling AE title not in --allow-aet"' in stranger_line
    assert all(r.levelno == logging.WARNING for r in caplog.records if "outcome=rejected" in r.getMessage())


@pytest.mark.peer
def test_no_require_called_aet_accepts_any_called_title(start_receiver):
    rx = start_receiver(require_called_aet=False)
    done = _echoscu(rx.port, called="ANYTHING")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.peer
def test_sighup_reopens_the_log_file_and_serve_keeps_running(tmp_path, site_key_file):
    port = free_port()
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dicomcrypt", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--key", str(site_key_file), "--out", str(tmp_path / "in"), "--log-file", str(log), "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_for_port(port)
        assert _echoscu(port).returncode == 0
        log.rename(tmp_path / "serve.log.1")  # logrotate's rename, then its postrotate: SIGHUP
        proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: log.exists() and "reopened" in log.read_text())
        assert proc.poll() is None, "SIGHUP must not stop serve"
        assert _echoscu(port).returncode == 0  # still serving; its lines go to the new file
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rotated = [json.loads(line) for line in (tmp_path / "serve.log.1").read_text().splitlines()]
    current = [json.loads(line) for line in log.read_text().splitlines()]
    assert rotated[0]["message"].startswith("listening ") and rotated[0]["time"].endswith("Z")
    assert any(e["fields"].get("outcome") == "accepted" for e in rotated if "fields" in e)
    assert current[0]["message"] == f"SIGHUP received: log file {log} reopened; still serving"
    assert any(e.get("fields", {}).get("outcome") == "released" for e in current)
    assert current[-1]["message"].startswith("stopped ae=RECEIVER")
    assert proc.stdout is not None and proc.stdout.read() == ""  # nothing on stderr: all in the file


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_serve_refuses_what_would_fail_every_instance_with_exit_3(tmp_path: Path, site_key_file, capsys):
    from dicomcrypt.cli.main import main

    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["serve", "--host", "127.0.0.1", "--port", "0", "--key", str(site_key_file),
                 "--out", str(tmp_path / "in"), "--quarantine", str(blocker / "q")]) == 3
    assert f"--quarantine {blocker / 'q'}: cannot write there" in capsys.readouterr().err
