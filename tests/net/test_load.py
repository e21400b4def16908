"""Load: several ``dicomcrypt send`` processes at once into one receiver, a few hundred instances,
every one accounted for on the receiving side by count and by pixel digest.

The instances are real CT and MR images with new UIDs and one pixel changed per instance, so
every instance has its own digest and a mix-up between two of them would show. ``standard``
mode keeps the codec out of the way: the subject is concurrency in the network path. The time
limit is a generous bound against hangs, not a speed claim (speed: benchmarks/bench_network.py).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from dicomcrypt.dicom import read_frames, write_frames
from dicomcrypt.files import read_dicom, write_dicom_atomic
from dicomcrypt.pipeline import pixel_digest
from helpers.corpus import sample
from helpers.study import derived_copy, pixels

pytestmark = pytest.mark.slow  # several sender processes against one receiver

SENDERS = 4
STUDIES_PER_SENDER = 3
INSTANCES_PER_STUDY = 25  # 4 x 3 x 25 = 300 instances
TIME_LIMIT_S = 600


def _make_sender_folders(root: Path) -> dict[str, str]:
    """Write each sender's studies; returns ``{SOP Instance UID: pixel digest}``."""
    sources = [read_dicom(sample("CT_small.dcm")), read_dicom(sample("MR_small.dcm"))]
    expected = {}
    n = 0
    for sender in range(SENDERS):
        for _ in range(STUDIES_PER_SENDER):
            study_uid = generate_uid()
            for i in range(INSTANCES_PER_STUDY):
                source = sources[n % len(sources)]
                ds = derived_copy(source, study_uid=study_uid)
                frames, fmt = read_frames(ds)
                frames = frames.copy()
                frames[0, 0, 0, 0] = n % 1000  # one pixel makes each instance unique
                write_frames(ds, frames, fmt)
                expected[str(ds.SOPInstanceUID)] = pixel_digest(frames)
                write_dicom_atomic(ds, root / f"sender{sender}" / study_uid / f"{i:03d}.dcm")
                n += 1
    return expected


def test_concurrent_senders_every_instance_accounted_for(tmp_path: Path, start_receiver, site_key_file):
    expected = _make_sender_folders(tmp_path / "outgoing")
    assert len(expected) == SENDERS * STUDIES_PER_SENDER * INSTANCES_PER_STUDY
    receiver = start_receiver(max_associations=SENDERS + 2)
    peer = f"RECEIVER@127.0.0.1:{receiver.port}"

    started = time.monotonic()
    senders = [
        subprocess.Popen(
            [sys.executable, "-m", "dicomcrypt", "send", "--key", str(site_key_file), "--mode", "standard",
             "--jobs", "1", "--aet", f"SENDER{i}", "-q", peer, str(tmp_path / "outgoing" / f"sender{i}")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(SENDERS)
    ]
    try:
        for process in senders:
            output, _ = process.communicate(timeout=max(1.0, TIME_LIMIT_S - (time.monotonic() - started)))
            assert process.returncode == 0, output
    finally:
        for process in senders:
            if process.poll() is None:
                process.kill()
                process.wait()

    filed = {}
    for path in receiver.config.out.rglob("*.dcm"):
        assert "quarantine" not in path.parts, f"quarantined: {path}"
        ds = read_dicom(path)
        filed[str(ds.SOPInstanceUID)] = pixel_digest(pixels(ds))
    assert len(filed) == len(expected)
    assert filed == expected

    studies = receiver.studies()
    assert len(studies) == SENDERS * STUDIES_PER_SENDER
    assert all(c.stored == INSTANCES_PER_STUDY and c.refused == 0 for c in studies.values())
