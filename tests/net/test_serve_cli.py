"""``dicomcrypt serve`` as a process: config file, structured logs, SIGTERM during a transfer."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pydicom
import pytest

from dicomcrypt import KeyRing, decrypt_dataset
from dicomcrypt.cli.main import main
from dicomcrypt.files import write_dicom_atomic
from helpers.corpus import read_quietly, sample
from helpers.dciodvfy import require_tool
from helpers.store_clients import dcmtk_env, good_files, storescu
from net.conftest import encrypted_copies, free_port, wait_for_port

pytestmark = pytest.mark.slow  # starts `dicomcrypt serve` processes and signals them


def serve(background, *options: str):
    argv = [sys.executable, "-m", "dicomcrypt", "serve", "--host", "127.0.0.1", *options]
    return background(argv)



@pytest.mark.peer
def test_config_file_logs_and_sigterm(background, encrypted_files, site_key, site_key_file, tmp_path):
    port = free_port()
    out = tmp_path / "incoming"
    config = tmp_path / "serve.toml"
    config.write_text(
        f'[serve]\nport = {port}\naet = "CFGRECEIVER"\nkey = ["{site_key_file}"]\nout = "{out}"\n'
        'allow-aet = ["SENDER"]\n'
    )
    server = serve(background, "--config", str(config))
    wait_for_port(port)

    done = storescu(port, encrypted_files.encrypted, called="CFGRECEIVER")
    assert done.returncode == 0, done.stdout + done.stderr
    refused = storescu(port, encrypted_files.encrypted[:1], calling="STRANGER", called="CFGRECEIVER")
    assert "Association Rejected" in refused.stdout + refused.stderr

    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    log = server.output()
    store_lines = [line for line in log.splitlines() if "event=store" in line]
    assert len(store_lines) == len(encrypted_files.encrypted)
    for path, line in zip(encrypted_files.plain, store_lines):
        original = read_quietly(path)
        assert "calling_ae=SENDER" in line and "outcome=restored" in line and "status=0x0000" in line
        assert f"study={original.StudyInstanceUID}" in line
        assert str(original.PatientName) not in log
    assert "outcome=rejected calling_ae=STRANGER" in log
    assert site_key_file.read_bytes().hex() not in log
    assert len(good_files(out)) == len(encrypted_files.encrypted)


@pytest.mark.peer
def test_sigterm_mid_transfer_finishes_in_flight_and_exits_0(background, site_key, site_key_file, tmp_path):
    files = []
    for n, ds in enumerate(encrypted_copies(site_key, 40)):
        path = tmp_path / "sent" / f"{n:03}.dcm"
        write_dicom_atomic(ds, path)
        files.append(path)
    port = free_port()
    out = tmp_path / "incoming"
    server = serve(background, "--port", str(port), "--key", str(site_key_file), "--out", str(out))
    wait_for_port(port)

    sender = subprocess.Popen(
        [require_tool("storescu"), "-aet", "SENDER", "-aec", "RECEIVER", "127.0.0.1", str(port), *map(str, files)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dcmtk_env(),
    )
    deadline = time.monotonic() + 30
    while not good_files(out) and time.monotonic() < deadline:
        time.sleep(0.01)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0
    sender.wait(timeout=60)

    filed = good_files(out)
    assert filed, "nothing arrived before SIGTERM"
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporary leftovers
    base = read_quietly(sample("CT_small.dcm"))
    for path in filed:  # every filed instance is complete and correct
        np.testing.assert_array_equal(pydicom.dcmread(path).pixel_array, base.pixel_array)
    log = server.output()
    assert log.count("outcome=restored") == len(filed)
    assert "stopped ae=RECEIVER" in log


def test_refuses_to_start_on_bad_settings(tmp_path, site_key_file, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[serve]\nprot = 104\n')
    assert main(["serve", "--config", str(bad), "--key", str(site_key_file), "--out", str(tmp_path)]) == 3
    assert "unknown setting 'prot'" in capsys.readouterr().err
    assert main(["serve", "--out", str(tmp_path)]) == 3  # restoring without a key
    assert "needs at least one key" in capsys.readouterr().err
    assert main(["serve", "--key", str(site_key_file), "--tls-cert", str(tmp_path / "none.pem"),
                 "--tls-key", str(tmp_path / "none.key"), "--out", str(tmp_path)]) == 3


def test_port_in_use_is_reported(start_receiver, site_key_file, tmp_path, capsys):
    rx = start_receiver()
    assert main(["serve", "--host", "127.0.0.1", "--port", str(rx.port), "--key", str(site_key_file),
                 "--out", str(tmp_path / "x")]) == 3
    assert "cannot listen" in capsys.readouterr().err


def test_vault_restored_by_decrypt(start_receiver, encrypted_files, site_key, tmp_path):
    """What a vault keeps restores offline with the key, pixel for pixel."""
    from helpers.store_clients import store

    rx = start_receiver(store="encrypted", keys=None, out=tmp_path / "vault")
    for path in encrypted_files.encrypted:
        assert store(rx.port, path).Status == 0x0000
    kept = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, good_files(tmp_path / "vault"))}
    for path in encrypted_files.plain:
        original = read_quietly(path)
        restored = decrypt_dataset(kept[str(original.SOPInstanceUID)], keys=KeyRing([site_key]))
        np.testing.assert_array_equal(restored.pixel_array, original.pixel_array)
