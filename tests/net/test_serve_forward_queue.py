"""Store-and-forward with real parts: ``dicomcrypt serve --forward`` as a process, a real DCMTK
``storescp`` downstream stopped and restarted under it, and ``serve`` itself stopped with a
non-empty queue and restarted. Every instance arrives downstream exactly once."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pydicom
import pytest

from dicomcrypt.files import write_dicom_atomic
from dicomcrypt.net.forward_queue import ForwardQueue
from helpers.dciodvfy import require_tool
from helpers.store_clients import dcmtk_env, storescu
from net.conftest import encrypted_copies, free_port, wait_for_port
from helpers.waiting import wait_until


def healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def start_storescp(background, folder: Path, port: int):
    """DCMTK storescp with unique file names: a second delivery of an instance is a second file."""
    process = background([require_tool("storescp"), "-aet", "PACS", "+uf", "-od", str(folder), str(port)],
                         env=dcmtk_env())
    wait_for_port(port)
    return process


def delivered(folder: Path) -> list[str]:
    """SOP Instance UIDs of every file storescp wrote (one per delivery)."""
    return sorted(str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
                  for path in folder.iterdir() if path.is_file())


@pytest.mark.peer
@pytest.mark.slow
def test_pacs_outage_and_serve_restart_deliver_everything_once(background, site_key, site_key_file, tmp_path,
                                                               capsys):
    from dicomcrypt.cli.main import main

    batches: list[list[Path]] = []
    for b in range(3):
        batch = []
        for n, ds in enumerate(encrypted_copies(site_key, 3)):
            path = tmp_path / "sent" / f"{b}-{n}.dcm"
            write_dicom_atomic(ds, path)
            batch.append(path)
        batches.append(batch)
    sent = sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for b in batches for p in b)
    pacs_dir, spool = tmp_path / "pacs", tmp_path / "spool"
    pacs_dir.mkdir()
    pacs_port = free_port()

    def serve():
        port, http_port = free_port(), free_port()
        argv = [sys.executable, "-m", "dicomcrypt", "serve", "--host", "127.0.0.1", "--port", str(port),
                "--key", str(site_key_file), "--spool", str(spool), "--quarantine", str(tmp_path / "q"),
                "--forward", f"PACS@127.0.0.1:{pacs_port}", "--forward-retry-first", "0.1",
                "--forward-retry-max", "0.5", "--http", f"127.0.0.1:{http_port}"]
        process = background(argv)
        wait_for_port(port)
        return process, port, http_port

    pacs = start_storescp(background, pacs_dir, pacs_port)
    server, port, http_port = serve()
    assert storescu(port, batches[0]).returncode == 0
    wait_until(lambda: len(delivered(pacs_dir)) == 3, what="first batch delivered")

    pacs.stop()  # PACS outage: serve answers success and keeps the instances
    done = storescu(port, batches[1])
    assert done.returncode == 0 and done.stderr.count("Received Store Response (Success)") == 3, done.stderr
    wait_until(lambda: healthz(http_port)[0] == 503, what="/healthz reports the outage")
    code, health = healthz(http_port)
    assert not health["checks"]["downstream"]["ok"] and health["queue"]["depth"] == 3
    pacs = start_storescp(background, pacs_dir, pacs_port)  # the PACS comes back
    wait_until(lambda: len(delivered(pacs_dir)) == 6, what="queued batch delivered after the outage")
    wait_until(lambda: healthz(http_port)[0] == 200, what="/healthz ready again")

    pacs.stop()  # another outage, and serve is stopped with instances still queued
    assert storescu(port, batches[2]).returncode == 0
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0
    capsys.readouterr()
    assert main(["jobs", "queue", str(spool), "--json"]) == 0  # what an administrator reads
    report = json.loads(capsys.readouterr().out)
    assert report["depth"] == 3 and sum(report["by_study"].values()) == 3
    third = sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in batches[2])
    assert sorted(item["sop_instance_uid"] for item in report["oldest"]) == third

    start_storescp(background, pacs_dir, pacs_port)
    server, port, http_port = serve()  # the queue drains after the restart
    wait_until(lambda: len(delivered(pacs_dir)) == 9, what="queue drained after serve restarted")
    wait_until(lambda: healthz(http_port)[1]["queue"]["depth"] == 0, what="queue empty")
    time.sleep(1.0)  # nothing more arrives: exactly once
    assert delivered(pacs_dir) == sent
    assert not any((tmp_path / "q").iterdir())  # made at start, nothing quarantined
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0


def _put_many(spool: Path, offset: int, count: int) -> None:
    queue = ForwardQueue(spool)
    for n in range(count):
        queue.put(b"DICM%d" % (offset + n), study_uid="1.2", sop_instance_uid=f"1.2.{offset + n}")
    queue.close()


def test_queue_takes_inserts_from_several_processes(tmp_path):
    """Restore workers in their own processes all insert into one queue (WAL, busy timeout)."""
    queue = ForwardQueue(tmp_path)  # created by the parent, as the receiver does
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_put_many, args=(tmp_path, 100 * w, 25)) for w in range(3)]
    for worker in workers:
        worker.start()
    _put_many(tmp_path, 1000, 25)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    stats = queue.stats()
    assert (stats.depth, stats.by_study) == (100, {"1.2": 100})
    items = queue.due(limit=200)
    assert sorted(item.path.read_bytes() for item in items) == sorted(
        b"DICM%d" % n for n in [*range(0, 25), *range(100, 125), *range(200, 225), *range(1000, 1025)])
    for item in items[:10]:
        queue.done(item)
    assert queue.stats().depth == 90 and not items[0].path.exists()
    assert pickle.loads(pickle.dumps(queue)).stats().depth == 90  # to a spawned worker: re-opened there


def test_forward_without_a_folder_for_its_queue_does_not_start(site_key_file, tmp_path, capsys):
    from dicomcrypt.cli.main import main

    code = main(["serve", "--port", "0", "--key", str(site_key_file), "--forward", "PACS@127.0.0.1:104"])
    assert code == 3
    assert "--forward keeps a queue on disk: give --out or --spool" in capsys.readouterr().err
    code = main(["serve", "--port", "0", "--key", str(site_key_file), "--out", str(tmp_path / "in"),
                 "--spool", str(tmp_path / "spool")])
    assert code == 3
    assert "--spool holds the forward queue: it needs --forward" in capsys.readouterr().err
    assert not (tmp_path / "in").exists() and not (tmp_path / "spool").exists()
    assert main(["serve", "--http", "localhost", "--key", str(site_key_file), "--out", str(tmp_path / "in")]) == 2
    assert "'localhost' is not HOST:PORT" in capsys.readouterr().err
    assert main(["jobs", "queue", str(tmp_path)]) == 3
    assert "no forward queue in" in capsys.readouterr().err
    (tmp_path / "file").write_bytes(b"")  # a spool that cannot be a folder: refused before listening
    code = main(["serve", "--port", "0", "--key", str(site_key_file), "--forward", "PACS@127.0.0.1:104",
                 "--spool", str(tmp_path / "file" / "spool")])
    assert code == 3
    err = capsys.readouterr().err  # the start-up check names the folder and the reason
    assert "--spool" in err and str(tmp_path / "file" / "spool") in err and "Not a directory" in err
    with socket.socket() as taken:  # the status endpoint's port is taken: refused at start too
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code = main(["serve", "--port", "0", "--key", str(site_key_file), "--out", str(tmp_path / "in"),
                     "--http", f"127.0.0.1:{taken.getsockname()[1]}"])
    assert code == 3
    assert "cannot serve HTTP on 127.0.0.1:" in capsys.readouterr().err
