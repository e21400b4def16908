"""The whole job over a real network, on one machine: the demo and an acceptance check.

For each mode, a receiving node (:class:`~dicomcrypt.net.scp.Receiver`) starts on a free
loopback port and files what it restores into a temporary folder; the SCU
(:func:`~dicomcrypt.net.scu.send`) encrypts every file on the fly and sends it; then each
original is compared with what the receiver filed, with :func:`dicomcrypt.quality.compare`.
Rows are :class:`dicomcrypt.roundtrip.RoundTripRow`, so ``dicomcrypt roundtrip --network``
prints the same report as the local round trip. Nothing is kept: the folders are temporary.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dicomcrypt import dicom, quality
from dicomcrypt.crypto import Key, KeyRing
from dicomcrypt.errors import DicomCryptError
from dicomcrypt.files import read_dicom
from dicomcrypt.net.address import Peer
from dicomcrypt.net.outbox import expand
from dicomcrypt.net.send_report import InstanceResult, describe_failure
from dicomcrypt.roundtrip import RoundTripRow, ct_rescale, jpeg2000_same_psnr

__all__ = ["run"]

AE_TITLE = "LOOPBACK"
ASSOCIATIONS = 2
"""The receiver restores each association's instances in that association's thread: two let
it decode two instances at once while the sender's workers encode the next ones."""


def run(
    root: Path, *, key: Key, modes: Iterable[str] = ("lossless", "lossy"), workers: int = 1
) -> Iterator[RoundTripRow]:
    """Send every file under ``root`` to a loopback receiver in each mode; a row per file and mode.

    ``encrypt_s`` is the sender's encryption time; ``restore_s`` is the C-STORE round trip
    (network, verification, decryption, decoding and the fsynced write: the receiver answers
    only once the instance is filed).
    """
    from dicomcrypt.net.scp import Receiver, ReceiverConfig
    from dicomcrypt.net.scu import send
    from dicomcrypt.settings import EncryptionSettings

    # Largest first: the long encodes start at once and the small files fill the gaps, so the
    # sender's workers and the receiver's decoders stay busy together until the end.
    files = sorted(expand([root]), key=lambda p: p.stat().st_size, reverse=True)
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix=f"dicomcrypt-loopback-{mode}-") as tmp:
            out = Path(tmp) / "received"
            receiver = Receiver(
                ReceiverConfig(ae_title=AE_TITLE, host="127.0.0.1", port=0, keys=KeyRing([key]), out=out)
            ).start()
            try:
                peer = Peer(AE_TITLE, "127.0.0.1", receiver.port)
                report = send(files, peer, calling_aet="DEMO", settings=EncryptionSettings.build(key=key, mode=mode),
                              workers=workers, associations=ASSOCIATIONS)
            finally:
                receiver.stop()
            filed = _filed_by_source(out)
            for result in sorted(report.results, key=lambda r: r.path):
                yield _row(root, mode, result, filed)


def _filed_by_source(out: Path) -> dict[str, Path]:
    """Filed instances by the SOP Instance UID they came from (a lossy restore has a new UID and
    names its source in the Source Image Sequence)."""
    filed: dict[str, Path] = {}
    for path in out.rglob("*.dcm"):
        if "quarantine" in path.relative_to(out).parts:
            continue
        ds = read_dicom(path)
        source = ds.get("SourceImageSequence")
        if ds.get("LossyImageCompression") == "01" and source:
            filed[str(source[0].ReferencedSOPInstanceUID)] = path
        else:
            filed.setdefault(str(ds.SOPInstanceUID), path)
    return filed


def _row(root: Path, mode: str, result: InstanceResult, filed: dict[str, Path]) -> RoundTripRow:
    path = Path(result.path)
    name = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    base: dict[str, Any] = {
        "path": name,
        "requested": mode,
        "modality": result.modality,
        "original_bytes": path.stat().st_size,
        "encrypted_bytes": result.bytes_sent,
        "payload_bytes": result.envelope_bytes,
        "encrypt_s": result.seal_seconds,
        "restore_s": result.send_seconds,
        "note": result.note,
    }
    if not result.arrived:
        return RoundTripRow(error=describe_failure(result), **base)
    if result.treatment == "not an image":
        return RoundTripRow(action="passed through", **{**base, "note": "no pixel data: not an image"})
    stored = filed.get(result.sop_instance_uid)
    if stored is None:
        return RoundTripRow(error="the receiver answered success but filed nothing under this UID", **base)
    try:
        original, restored = read_dicom(path), read_dicom(stored)
        before, fmt = dicom.read_frames(original)
        after, _ = dicom.read_frames(restored)
        compared = quality.compare(before, after, rescale=ct_rescale(original))
    except (DicomCryptError, ValueError) as exc:
        return RoundTripRow(error=f"{type(exc).__name__}: {exc}", **base)
    return RoundTripRow(
        geometry=f"{fmt.columns}x{fmt.rows}x{fmt.frames}x{fmt.samples_per_pixel}",
        mode=result.mode,
        action="restored",
        quality=compared,
        jpeg2000_bytes=jpeg2000_same_psnr(before, compared) if result.mode == "lossy" else None,
        **base,
    )
