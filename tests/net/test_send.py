"""``dicomcrypt send`` against real peers on loopback: DCMTK ``storescp`` (plain TCP and TLS)
and, where a test needs a peer that answers chosen failure statuses or reports what it
negotiated, a pynetdicom Storage SCP started in the test.

Encryption runs in ``standard`` mode (no autoencoder) except where the process pool is the
point: what is tested here is the network path, not the codec.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts, evt

from dicomcrypt import KeyRing, decrypt_dataset
from dicomcrypt.cli.main import main
from dicomcrypt.dicom import read_frames, read_private_block
from dicomcrypt.files import read_dicom, write_dicom_atomic
from dicomcrypt.errors import AssociationError
from dicomcrypt.net.address import parse_peer
from dicomcrypt.net.contexts import MAX_CONTEXTS, NATIVE, plan_groups
from dicomcrypt.errors import PlaintextRefusedError
from dicomcrypt.net.scu import send
from dicomcrypt.settings import EncryptionSettings
from helpers.dciodvfy import require_tool

from net.conftest import dcmtk_env, free_port, wait_for_port

PRIVATE_GROUP = 0x0011


# --------------------------------------------------------------------------- peers


@pytest.fixture
def storescp(tmp_path: Path, background):
    """Factory: DCMTK storescp on a free port writing to a fresh folder; returns (peer, folder)."""
    exe = require_tool("storescp")

    def start(*options: str, aet: str = "STORESCP") -> tuple[str, Path]:
        out = tmp_path / f"storescp-{len(list(tmp_path.glob('storescp-*')))}"
        out.mkdir()
        port = free_port()
        background([exe, "-aet", aet, "--output-directory", str(out), *options, str(port)], env=dcmtk_env())
        wait_for_port(port)
        return f"{aet}@127.0.0.1:{port}", out

    return start


class RecordingSCP:
    """A pynetdicom Storage SCP that keeps what it received and answers chosen statuses.

    ``answers[sop_instance_uid]`` is a list of statuses to answer in turn (then success).
    """

    def __init__(self, answers: dict[str, list[int]] | None = None) -> None:
        self.answers = {uid: list(codes) for uid, codes in (answers or {}).items()}
        self.received: dict[str, pydicom.Dataset] = {}
        self.calling_aets: set[str] = set()
        self.associations: set[int] = set()
        self.attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        ae = AE(ae_title="RECORDER")
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context("1.2.840.10008.1.1")
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.peer = f"RECORDER@127.0.0.1:{self.server.server_address[1]}"

    def _store(self, event) -> int | tuple[int, str]:
        ds = event.dataset
        ds.file_meta = event.file_meta
        uid = str(ds.SOPInstanceUID)
        with self._lock:
            self.calling_aets.add(event.assoc.requestor.ae_title)
            self.associations.add(id(event.assoc))
            self.attempts[uid] = self.attempts.get(uid, 0) + 1
            pending = self.answers.get(uid)
            if pending:
                return pending.pop(0)
            self.received[uid] = ds
        return 0x0000

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def recording_scp():
    started: list[RecordingSCP] = []

    def start(answers: dict[str, list[int]] | None = None) -> RecordingSCP:
        scp = RecordingSCP(answers)
        started.append(scp)
        return scp

    yield start
    for scp in started:
        scp.stop()


# --------------------------------------------------------------------------- inputs


def _study(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(get_testdata_file(name), folder / name)
    return folder


def _received(folder: Path) -> dict[str, pydicom.Dataset]:
    return {str(ds.SOPInstanceUID): ds for ds in (read_dicom(p) for p in sorted(folder.iterdir()) if p.is_file())}


def _private_elements(ds: pydicom.Dataset) -> dict[int, bytes | str]:
    """Every element of group 0x0011 (creator + our block), as raw bytes or text."""
    return {int(elem.tag): elem.value for elem in ds if elem.tag.group == PRIVATE_GROUP}


def _pixels(ds: pydicom.Dataset) -> np.ndarray:
    return read_frames(ds)[0]


# --------------------------------------------------------------------------- DCMTK storescp


@pytest.mark.peer
def test_send_encrypts_a_study_on_the_fly_to_storescp(tmp_path: Path, storescp, site_key, site_key_file, capsys):
    peer, out = storescp()
    study = _study(tmp_path / "study", "CT_small.dcm", "MR_small.dcm", "rtplan.dcm")
    code = main(["send", "--key", str(site_key_file), "--aet", "SENDER", "--mode", "standard", "--jobs", "1",
                 peer, str(study)])
    summary = capsys.readouterr().out
    assert code == 0, summary
    assert "3 arrived, 0 failed" in summary
    assert "1 non-image passed through" in summary

    received = _received(out)
    originals = {str(ds.SOPInstanceUID): ds for ds in (read_dicom(p) for p in study.iterdir())}
    assert set(received) == set(originals)
    for uid, ds in received.items():
        original = originals[uid]
        if "PixelData" not in original:  # RT Plan: passed through, unchanged
            assert read_private_block(ds) is None
            assert ds.BeamSequence[0].BeamName == original.BeamSequence[0].BeamName
            continue
        info = read_private_block(ds)
        assert info is not None and info.mode == "STANDARD" and info.key_ids == (site_key.key_id,)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        restored = decrypt_dataset(ds, keys=KeyRing([site_key]))
        np.testing.assert_array_equal(_pixels(restored), _pixels(original))


@pytest.mark.peer
@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian], ids=["explicit", "implicit"])
def test_already_encrypted_files_arrive_with_private_elements_byte_identical(
    tmp_path: Path, storescp, encrypted_files, syntax
):
    """Files encrypted earlier are sent as they are; the receiver gets our block unchanged."""
    peer, out = storescp()
    folder = tmp_path / "to-send"
    for path in encrypted_files.encrypted:
        ds = read_dicom(path)
        if syntax == ImplicitVRLittleEndian:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        write_dicom_atomic(ds, folder / path.name)
    assert main(["send", "--aet", "SENDER", "-q", peer, str(folder)]) == 0  # no key needed

    received = _received(out)
    assert len(received) == len(encrypted_files.encrypted)
    for path in encrypted_files.encrypted:
        sent = read_dicom(path)
        got = received[str(sent.SOPInstanceUID)]
        assert _private_elements(got) == _private_elements(sent)
        assert read_private_block(got).envelope == read_private_block(sent).envelope
        assert got.PixelData == sent.PixelData  # the placeholder travels unchanged too


@pytest.mark.peer
def test_plain_jpeg2000_falls_back_to_explicit_little_endian(tmp_path: Path, storescp):
    """storescp accepts only uncompressed syntaxes by default: the SCU decompresses."""
    peer, out = storescp()
    study = _study(tmp_path / "plain", "JPEG2000.dcm")
    assert main(["send", "--plain", "-q", peer, str(study)]) == 0
    (got,) = _received(out).values()
    assert not got.file_meta.TransferSyntaxUID.is_compressed
    np.testing.assert_array_equal(got.pixel_array, read_dicom(study / "JPEG2000.dcm").pixel_array)


def test_plain_images_without_a_key_are_refused_before_connecting(tmp_path: Path, capsys):
    study = _study(tmp_path / "plain", "CT_small.dcm", "rtplan.dcm")
    port = free_port()  # nothing listens: the refusal must come first
    assert main(["send", f"ANY@127.0.0.1:{port}", str(study)]) == 3
    err = capsys.readouterr().err
    assert "refusing to send pixels in clear" in err and "CT_small.dcm" in err
    with pytest.raises(PlaintextRefusedError):
        send([study], parse_peer(f"ANY@127.0.0.1:{port}"), calling_aet="SENDER")


@pytest.mark.peer
def test_refused_association_sends_nothing_and_says_why(tmp_path: Path, storescp, site_key_file, capsys):
    peer, out = storescp("--refuse")
    study = _study(tmp_path / "study", "CT_small.dcm")
    assert main(["send", "--key", str(site_key_file), "--mode", "standard", "--jobs", "1", peer, str(study)]) == 3
    err = capsys.readouterr().err
    assert peer.split("@")[1] in err
    # storescp --refuse sends A-ASSOCIATE-RJ and closes at once; on a loaded machine pynetdicom
    # sometimes sees the close first and reports an abort, so either wording is right.
    assert "rejected by the peer" in err or "not accepted: the peer ended the negotiation" in err
    assert not list(out.iterdir())


def test_unreachable_peer(tmp_path: Path, site_key_file, capsys):
    study = _study(tmp_path / "study", "CT_small.dcm")
    port = free_port()
    assert main(["send", "--key", str(site_key_file), "--jobs", "1", f"NOBODY@127.0.0.1:{port}", str(study)]) == 3
    assert "cannot connect to 127.0.0.1" in capsys.readouterr().err


@pytest.mark.peer
def test_mutual_tls_to_storescp(tmp_path: Path, storescp, pki, site_key, site_key_file, capsys):
    peer, out = storescp("+tls", str(pki.server_key), str(pki.server_cert), "+cf", str(pki.ca), "--require-peer-cert")
    study = _study(tmp_path / "study", "CT_small.dcm")
    tls = ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key)]
    assert main(["echo", *tls, peer]) == 0
    assert "over TLS: 0x0000 Success" in capsys.readouterr().out
    assert main(["send", *tls, "--key", str(site_key_file), "--mode", "standard", "--jobs", "1", "-q",
                 peer, str(study)]) == 0
    (got,) = _received(out).values()
    restored = decrypt_dataset(got, keys=KeyRing([site_key]))
    np.testing.assert_array_equal(_pixels(restored), _pixels(read_dicom(study / "CT_small.dcm")))
    # plain TCP to the TLS port, and TLS without trusting the server's CA, both fail to associate
    assert main(["echo", "--timeout", "5", peer]) == 3
    assert main(["echo", "--tls", peer]) == 3
    assert "TLS handshake failed" in capsys.readouterr().err


# --------------------------------------------------------------------------- pynetdicom SCP


@pytest.mark.slow
def test_failure_statuses_are_reported_per_study_and_retried_from_the_failed_list(
    tmp_path: Path, recording_scp, site_key_file, capsys
):
    study = _study(tmp_path / "study", "CT_small.dcm", "MR_small.dcm")
    ct_uid = str(read_dicom(study / "CT_small.dcm").SOPInstanceUID)
    mr_uid = str(read_dicom(study / "MR_small.dcm").SOPInstanceUID)
    # CT: refused for good (0xC000 cannot understand); MR: out of resources twice, then stored
    scp = recording_scp({ct_uid: [0xC000], mr_uid: [0xA700, 0xA700]})
    failed_list = tmp_path / "failed.txt"
    args = ["send", "--key", str(site_key_file), "--mode", "standard", "--jobs", "1", "--aet", "SENDER"]
    assert main([*args, "--failed-list", str(failed_list), scp.peer, str(study)]) == 1
    out = capsys.readouterr().out
    assert "1 arrived, 1 failed" in out
    assert "peer answered 0xC000" in out and "CT_small.dcm" in out
    assert scp.attempts == {ct_uid: 1, mr_uid: 3}  # the A7xx refusals were retried, C000 was not
    assert failed_list.read_text().splitlines() == [str(study / "CT_small.dcm")]

    assert main([*args, "--retry-failed", str(failed_list), "--failed-list", str(failed_list), scp.peer]) == 0
    assert set(scp.received) == {ct_uid, mr_uid}
    assert failed_list.read_text() == ""


def test_config_file_and_parallel_associations(tmp_path: Path, recording_scp, site_key, site_key_file, capsys):
    study = tmp_path / "study"
    source = read_dicom(get_testdata_file("CT_small.dcm"))
    for i in range(6):  # six instances of one series, new UIDs
        ds = source.copy()
        ds.SOPInstanceUID = f"{source.SOPInstanceUID}.{i + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        write_dicom_atomic(ds, study / f"{i}.dcm")
    config = tmp_path / "dicomcrypt.toml"
    config.write_text(
        f'[send]\naet = "CONFIGURED"\nkey = "{site_key_file}"\nmode = "standard"\njobs = 1\nassociations = 3\n'
    )
    scp = recording_scp()
    assert main(["send", "--config", str(config), "-q", scp.peer, str(study)]) == 0
    assert scp.calling_aets == {"CONFIGURED"}
    assert len(scp.associations) == 3
    assert len(scp.received) == 6
    for ds in scp.received.values():
        assert read_private_block(ds).mode == "STANDARD"
        np.testing.assert_array_equal(_pixels(decrypt_dataset(ds, keys=[site_key])), _pixels(source))

    config.write_text('[send]\nassociatons = 2\n')
    assert main(["send", "--config", str(config), scp.peer, str(study)]) == 3
    assert "unknown setting 'associatons'" in capsys.readouterr().err


@pytest.mark.slow
def test_worker_processes_encrypt_lossless_while_sending(tmp_path: Path, recording_scp, site_key):
    """The default path of the CLI: a spawned process pool running the autoencoder."""
    study = _study(tmp_path / "study", "MR_small.dcm", "CT_small.dcm")
    scp = recording_scp()
    seen = []
    settings = EncryptionSettings.build(key=site_key, mode="lossless")
    report = send([study], parse_peer(scp.peer), calling_aet="SENDER", settings=settings, workers=2,
                  progress=seen.append)
    assert report.all_arrived, report.summary()
    assert len(seen) == 2 and {r.mode for r in report.results} == {"lossless"}
    for path in study.iterdir():
        original = read_dicom(path)
        got = scp.received[str(original.SOPInstanceUID)]
        np.testing.assert_array_equal(_pixels(decrypt_dataset(got, keys=[site_key])), _pixels(original))


def test_sealed_instances_go_to_the_wire_unparsed_and_the_spool_is_removed(
    tmp_path: Path, recording_scp, site_key, monkeypatch
):
    """Issue 14: the sealed file is streamed by pynetdicom (the peer accepted Explicit VR LE in
    its own context); decoding it in the sender would be the old triple encode, so it fails here."""
    from dicomcrypt.net import outbox, scu

    spools: list[Path] = []

    def spool_in_tmp() -> str:
        spools.append(tmp_path / f"spool{len(spools)}")
        spools[-1].mkdir(mode=0o700)
        return str(spools[-1])

    def never(self):
        raise AssertionError("the sender decoded a file it could stream")

    monkeypatch.setattr(outbox, "make_spool", spool_in_tmp)
    monkeypatch.setattr(scu._Prepared, "dataset", never)
    study = _study(tmp_path / "study", "MR_small.dcm", "CT_small.dcm")
    scp = recording_scp()
    settings = EncryptionSettings.build(key=site_key, mode="standard")
    report = send([study], parse_peer(scp.peer), calling_aet="S", settings=settings, workers=1, associations=2)
    assert report.all_arrived, report.summary()
    for path in study.iterdir():
        original = read_dicom(path)
        got = scp.received[str(original.SOPInstanceUID)]
        assert got.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        np.testing.assert_array_equal(_pixels(decrypt_dataset(got, keys=[site_key])), _pixels(original))
    assert spools and not any(spool.exists() for spool in spools)


def test_first_association_failure_raises(tmp_path: Path, site_key):
    study = _study(tmp_path / "study", "CT_small.dcm")
    settings = EncryptionSettings.build(key=site_key, mode="standard")
    with pytest.raises(AssociationError, match="cannot connect"):
        send([study], parse_peer(f"X@127.0.0.1:{free_port()}"), calling_aet="S", settings=settings)


def test_unsendable_files_are_reported_and_the_rest_is_sent(tmp_path: Path, recording_scp, site_key):
    study = _study(tmp_path / "study", "CT_small.dcm")
    (study / "notes.txt").write_text("not DICOM")
    scp = recording_scp()
    settings = EncryptionSettings.build(key=site_key, mode="standard")
    report = send([study], parse_peer(scp.peer), calling_aet="S", settings=settings)
    assert len(scp.received) == 1
    (failed,) = report.failed
    assert failed.path.endswith("notes.txt") and "not a DICOM file" in failed.error
    assert not report.all_arrived


# --------------------------------------------------------------------------- contexts


def test_contexts_offer_each_files_syntax_plus_the_native_fallback():
    # Explicit VR LE gets a context of its own too (issue 14): a peer that accepts it lets the
    # file go to the wire unparsed, where pynetdicom would pick Implicit from the fallback
    jpeg2000 = "1.2.840.10008.1.2.4.90"
    (group,) = plan_groups({"1.2.840.10008.5.1.4.1.1.7": {jpeg2000, str(ExplicitVRLittleEndian)}})
    assert [c.transfer_syntaxes for c in group] == [(ExplicitVRLittleEndian,), (jpeg2000,), NATIVE]


def test_contexts_are_split_at_128_without_splitting_a_sop_class():
    needs = {f"1.2.3.{i}": {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90"} for i in range(100)}  # 300
    groups = plan_groups(needs)
    assert [len(g) for g in groups] == [126, 126, 48]
    assert all(len(g) <= MAX_CONTEXTS for g in groups)
    for group in groups:
        classes = {c.abstract_syntax for c in group}
        assert all(sum(c.abstract_syntax == k for c in group) == 3 for k in classes)


# --------------------------------------------------------------------------- our receiver


def test_our_receiver_rejects_an_unknown_calling_ae(tmp_path: Path, start_receiver, site_key_file, capsys):
    receiver = start_receiver(allowed_aets=frozenset({"TRUSTED"}))
    peer = f"RECEIVER@127.0.0.1:{receiver.port}"
    study = _study(tmp_path / "study", "CT_small.dcm")
    args = ["send", "--key", str(site_key_file), "--mode", "standard", "--jobs", "1"]
    assert main([*args, "--aet", "STRANGER", peer, str(study)]) == 3
    assert "rejected by the peer (rejected permanent, Service User): Calling AE title not recognised" in (
        capsys.readouterr().err
    )
    assert main([*args, "--aet", "TRUSTED", "-v", peer, str(study)]) == 0
    out = capsys.readouterr().out
    assert f"sent    {study / 'CT_small.dcm'} (encrypted standard)" in out
    assert receiver.studies()[str(read_dicom(study / "CT_small.dcm").StudyInstanceUID)].stored == 1


@pytest.mark.peer
@pytest.mark.slow
def test_ctrl_c_finishes_the_instance_in_flight_and_lists_the_rest(tmp_path: Path, storescp, site_key_file):
    import signal
    import subprocess
    import sys
    import time

    peer, out = storescp("--sleep-after", "1")  # one answer per second
    study = tmp_path / "study"
    source = read_dicom(get_testdata_file("CT_small.dcm"))
    for i in range(8):
        ds = source.copy()
        ds.SOPInstanceUID = f"{source.SOPInstanceUID}.{i + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        write_dicom_atomic(ds, study / f"{i}.dcm")
    failed_list = tmp_path / "failed.txt"
    sender = subprocess.Popen(
        [sys.executable, "-m", "dicomcrypt", "send", "--key", str(site_key_file), "--mode", "standard",
         "--jobs", "1", "--failed-list", str(failed_list), peer, str(study)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(out.iterdir()) and time.monotonic() < deadline:  # mid-send, whatever the load
            time.sleep(0.1)
        sender.send_signal(signal.SIGINT)
        output, _ = sender.communicate(timeout=30)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    assert sender.returncode == 130, output
    assert "interrupted" in output
    arrived = len(list(out.iterdir()))
    not_arrived = failed_list.read_text().splitlines()
    assert 0 < arrived < 8
    assert arrived + len(not_arrived) == 8  # every instance is either on the peer or in the list


def test_warning_statuses_count_as_arrived(tmp_path: Path, recording_scp, site_key):
    study = _study(tmp_path / "study", "CT_small.dcm", "MR_small.dcm")
    ct_uid = str(read_dicom(study / "CT_small.dcm").SOPInstanceUID)
    mr_uid = str(read_dicom(study / "MR_small.dcm").SOPInstanceUID)
    scp = recording_scp({ct_uid: [0xB000], mr_uid: [0x0107]})  # stored with coercion / attribute list warning
    settings = EncryptionSettings.build(key=site_key, mode="standard")
    report = send([study], parse_peer(scp.peer), calling_aet="S", settings=settings)
    assert report.all_arrived and all(r.warning for r in report.results)
    assert report.summary().count("1 with a warning status") == 2  # CT and MR are two studies
