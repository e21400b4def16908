"""``dicomcrypt send --recipient``: nodes that exchange only public keys.

The sender holds no secret: it encrypts for the receiver's public recipient string, and the
receiver (``serve --key node.key``, a recipient private key from ``keygen --recipient``) restores.
``standard`` mode and small images: the network and key paths are tested here, not the codec.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from dicomcrypt import KeyRing
from dicomcrypt.cli.main import main
from dicomcrypt.crypto import RecipientKey
from dicomcrypt.dicom import read_frames, read_private_block
from dicomcrypt.files import read_dicom
from dicomcrypt.net.address import parse_peer
from dicomcrypt.net.scu import send
from dicomcrypt.settings import EncryptionSettings
from helpers.store_clients import good_files
from net.conftest import free_port, wait_for_port

IMAGES = ("CT_small.dcm", "MR_small.dcm")


@pytest.fixture
def study(tmp_path: Path) -> Path:
    folder = tmp_path / "study"
    folder.mkdir()
    for name in IMAGES:
        shutil.copyfile(get_testdata_file(name), folder / name)
    return folder


@pytest.fixture
def node_key(tmp_path: Path) -> tuple[Path, str]:
    """A receiving node's recipient key pair, made by ``keygen --recipient``: (private key file, public string)."""
    path = tmp_path / "keys" / "node.key"
    path.parent.mkdir()
    assert main(["keygen", "--recipient", "--out", str(path)]) == 0
    return path, str(RecipientKey.load(path).recipient)


def _assert_restored_value_by_value(study: Path, out: Path) -> None:
    received = {str(ds.SOPInstanceUID): ds for ds in map(read_dicom, good_files(out))}
    assert len(received) == len(IMAGES)
    for name in IMAGES:
        original = read_dicom(study / name)
        restored = received[str(original.SOPInstanceUID)]
        assert read_private_block(restored) is None
        np.testing.assert_array_equal(read_frames(restored)[0], read_frames(original)[0])


@pytest.mark.slow
def test_send_to_a_recipient_string_restored_by_serve_with_its_private_key(
    tmp_path: Path, study: Path, node_key, background, capsys
):
    """No shared secret anywhere: send --recipient only, serve --key <recipient private key>."""
    key_file, recipient = node_key
    port = free_port()
    out = tmp_path / "incoming"
    server = background([sys.executable, "-m", "dicomcrypt", "serve", "--host", "127.0.0.1", "--port", str(port),
                         "--aet", "NODE", "--key", str(key_file), "--out", str(out)])
    wait_for_port(port, timeout=60)

    code = main(["send", "--recipient", recipient, "--mode", "standard", "--jobs", "1", "--aet", "SENDER",
                 f"NODE@127.0.0.1:{port}", str(study)])
    summary = capsys.readouterr().out
    assert code == 0, summary
    assert f"{len(IMAGES)} arrived, 0 failed" in summary
    _assert_restored_value_by_value(study, out)
    server.stop()
    assert key_file.read_text().split()[-1] not in server.output()


@pytest.mark.slow
def test_recipients_file_and_keyring_in_worker_processes(tmp_path: Path, study: Path, start_receiver, site_key):
    """Library path with a process pool: recipients and a keyring must reach the spawned workers."""
    node = RecipientKey.generate()
    other = RecipientKey.generate()
    receiver = start_receiver(keys=KeyRing([node]))
    ring = KeyRing([site_key], encrypt_to=[site_key])
    report = send([study], parse_peer(f"RECEIVER@127.0.0.1:{receiver.port}"), calling_aet="SENDER",
                  settings=EncryptionSettings.build(key=ring, recipients=[str(node.recipient), other.recipient],
                                                    mode="standard"), workers=2)
    assert report.all_arrived, report.summary()
    _assert_restored_value_by_value(study, tmp_path / "received")


def test_receiver_without_a_matching_key_answers_c002_and_the_summary_says_so(
    tmp_path: Path, study: Path, node_key, start_receiver, capsys
):
    key_file, recipient = node_key
    receiver = start_receiver(keys=KeyRing([RecipientKey.generate()]))  # matches no stanza
    recipients_file = tmp_path / "recipients.txt"
    recipients_file.write_text(f"# the receiving node\n{recipient}\n")
    code = main(["send", "--recipients-file", str(recipients_file), "--mode", "standard", "--jobs", "1",
                 f"RECEIVER@127.0.0.1:{receiver.port}", str(study / IMAGES[0])])
    summary = capsys.readouterr().out
    assert code == 1, summary
    assert "0 arrived, 1 failed" in summary
    key_id = RecipientKey.load(key_file).key_id
    assert f"peer answered 0xC002 (failure: Cannot Understand): no key for key id {key_id}" in summary
    assert not good_files(tmp_path / "received")


def test_malformed_recipient_exits_3_before_connecting(tmp_path: Path, study: Path, node_key, start_receiver, capsys):
    receiver = start_receiver()
    peer = f"RECEIVER@127.0.0.1:{receiver.port}"
    _, recipient = node_key
    bad = recipient[:-1] + ("q" if recipient[-1] != "q" else "p")  # checksum no longer matches
    assert main(["send", "--recipient", bad, "--mode", "standard", peer, str(study)]) == 3
    err = capsys.readouterr().err
    assert "recipient" in err
    assert receiver.studies() == {}
    assert not (tmp_path / "received").exists() or not good_files(tmp_path / "received")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--recipient", "{r}", "--recipient", "{r}"], "the same recipient was given twice"),
        (["--key", "{k}"], "is a recipient private key; encrypt with its public recipient string"),
    ],
)
def test_send_refuses_like_encrypt(study: Path, node_key, extra, expected, capsys):
    key_file, recipient = node_key
    argv = [a.format(r=recipient, k=key_file) for a in extra]
    assert main(["send", *argv, f"X@127.0.0.1:{free_port()}", str(study)]) == 3
    assert expected in capsys.readouterr().err
    assert main(["encrypt", *argv, str(study), str(study.parent / "out")]) == 3
    assert expected in capsys.readouterr().err


def test_too_many_stanzas_refused(study: Path, capsys):
    argv = [arg for _ in range(17) for arg in ("-r", str(RecipientKey.generate().recipient))]
    assert main(["send", *argv, f"X@127.0.0.1:{free_port()}", str(study)]) == 3
    assert "an envelope holds at most 16 key stanzas" in capsys.readouterr().err


def test_send_config_table_takes_recipients(tmp_path: Path, study: Path, node_key, start_receiver, capsys):
    key_file, recipient = node_key
    receiver = start_receiver(keys=KeyRing.load(key_file))
    recipients_file = tmp_path / "more.txt"
    recipients_file.write_text(str(RecipientKey.generate().recipient) + "\n")
    config = tmp_path / "send.toml"
    config.write_text(f'[send]\nrecipient = ["{recipient}"]\nrecipients-file = "{recipients_file}"\n'
                      'mode = "standard"\njobs = 1\n')
    code = main(["send", "--config", str(config), f"RECEIVER@127.0.0.1:{receiver.port}", str(study)])
    assert code == 0, capsys.readouterr().out
    _assert_restored_value_by_value(study, tmp_path / "received")


def test_serve_key_accepts_a_recipient_private_key_folder(tmp_path: Path, node_key):
    """``serve --key`` goes through KeyRing.load, which tells recipient private keys from site keys."""
    key_file, recipient = node_key
    ring = KeyRing.load([key_file.parent])
    assert ring.get(RecipientKey.load(key_file).key_id) is not None
    assert str(RecipientKey.load(key_file).recipient) == recipient

