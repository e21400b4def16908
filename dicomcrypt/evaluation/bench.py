"""The paper's Table 3, measured honestly: AES on the raw pixels against encoder + AES on the latent.

For each image (the middle frame of a multi-frame object unless told otherwise):

- sender: AES-256-GCM (our envelope: fresh data key, key wrap, AEAD) over the raw stored pixels,
  against normalise + encoder + quantised latent, then the same envelope over the latent;
- receiver: opening each envelope, and the exact fixed-point decoder back to stored integers;
- sizes, of the whole object (every frame): the raw pixels, the real payloads that
  ``encrypt_instance`` seals in the lossy, lossless and standard modes (so whatever the pipeline
  and the model choose -- e.g. a coarser latent for lossless -- is what is measured), and plain
  lossless JPEG-LS of the pixels, with its coding time (timed on the benchmarked frames).

Every timing is the median of ``repeat`` runs after one warm-up run, in this process, with
torch's default thread count. Payload sizes include the payload's metadata and the attribute
snapshot (1-2 kB), as on the wire.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomcrypt import dicom
from dicomcrypt.codec import normalise
from dicomcrypt.codec.coders import standard
from dicomcrypt.crypto import Key
from dicomcrypt.envelope import Mode, instance_binding, open_envelope, seal
from dicomcrypt.evaluation.evaluate import prepare, reconstruct

_NO_MODEL = bytes(32)

# design.md section 1: the paper's Table 3 (224x224x3 fundus images, its own machine).
PAPER_TABLE3 = {"aes_raw_encrypt_s": 0.05, "aes_raw_decrypt_s": 0.05, "ae_aes_encrypt_s": 0.016,
                "ae_aes_decrypt_s": 0.017}


@dataclass(frozen=True)
class BenchRow:
    """Medians for one image (seconds, bytes)."""

    file: str
    modality: str
    geometry: str  # columns x rows x frames x samples
    bits_stored: int
    model_id: str
    repeat: int
    timed_raw_bytes: int  # the frames the timings are for
    raw_bytes: int  # every frame
    lossy_bytes: int
    lossless_bytes: int
    standard_bytes: int
    jpegls_bytes: int
    aes_raw_encrypt_s: float
    aes_raw_decrypt_s: float
    encoder_s: float
    aes_latent_encrypt_s: float
    aes_latent_decrypt_s: float
    decoder_s: float
    jpegls_encode_s: float

    @property
    def ae_aes_encrypt_s(self) -> float:
        """The paper's "AE + AES" sender time: encoder, then AES on the latent."""
        return self.encoder_s + self.aes_latent_encrypt_s

    @property
    def ae_aes_decrypt_s(self) -> float:
        """Receiver: AES on the latent, then the decoder."""
        return self.aes_latent_decrypt_s + self.decoder_s

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data.update(
            ae_aes_encrypt_s=self.ae_aes_encrypt_s,
            ae_aes_decrypt_s=self.ae_aes_decrypt_s,
            encrypt_ratio_ae_over_aes=self.ae_aes_encrypt_s / self.aes_raw_encrypt_s,
            decrypt_ratio_ae_over_aes=self.ae_aes_decrypt_s / self.aes_raw_decrypt_s,
            lossy_vs_raw=self.lossy_bytes / self.raw_bytes,
            lossy_vs_jpegls=self.lossy_bytes / self.jpegls_bytes,
            lossless_vs_raw=self.lossless_bytes / self.raw_bytes,
            lossless_vs_jpegls=self.lossless_bytes / self.jpegls_bytes,
        )
        return data


def median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time of ``repeat`` calls after one warm-up call; returns (seconds, last result)."""
    result = fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def bench_file(path: Path, name: str, *, model_id: str | None, key: Key, repeat: int = 5,
               frames: str = "middle") -> BenchRow:
    """Time and size one image; raises :class:`InvalidInputError` subclasses when the autoencoder
    cannot take it (see :func:`dicomcrypt.evaluation.evaluate.prepare`)."""
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    image = prepare(path, name, model_id=model_id, frames=frames)
    original, codec, fmt = image.original, image.codec, image.fmt
    binding = instance_binding(*dicom.uids(image.ds))
    raw = original.tobytes()
    model = {"model_id": codec.info.model_id, "model_sha256": codec.info.sha256}

    aes_raw_encrypt_s, raw_envelope = median_time(
        lambda: seal(raw, key=key, mode=Mode.STANDARD, model_id="", model_sha256=_NO_MODEL, binding=binding), repeat)
    aes_raw_decrypt_s, _ = median_time(lambda: open_envelope(raw_envelope, keys=key, binding=binding), repeat)

    norm = normalise.fit(original, fmt.padding_value)
    encoder_s, latent = median_time(lambda: codec.encode(normalise.to_unit(original, norm)), repeat)
    aes_latent_encrypt_s, latent_envelope = median_time(
        lambda: seal(latent, key=key, mode=Mode.LOSSY, binding=binding, **model), repeat)
    aes_latent_decrypt_s, _ = median_time(lambda: open_envelope(latent_envelope, keys=key, binding=binding), repeat)
    decoder_s, _ = median_time(lambda: reconstruct(codec, latent, norm, original), repeat)

    jpegls_encode_s, _ = median_time(lambda: standard.encode_pixels(original), repeat)
    every_frame, _ = dicom.read_frames(image.ds)
    sizes = {mode: payload_bytes(image.ds, mode, model_id=codec.info.model_id, key=key)
             for mode in ("lossy", "lossless", "standard")}

    return BenchRow(
        file=name,
        modality=str(image.ds.get("Modality", "")),
        geometry=f"{fmt.columns}x{fmt.rows}x{len(image.chosen)}x{fmt.samples_per_pixel}",
        bits_stored=fmt.bits_stored,
        model_id=codec.info.model_id,
        repeat=repeat,
        timed_raw_bytes=len(raw),
        raw_bytes=int(every_frame.nbytes),
        lossy_bytes=sizes["lossy"],
        lossless_bytes=sizes["lossless"],
        standard_bytes=sizes["standard"],
        jpegls_bytes=len(standard.encode_pixels(every_frame)),
        aes_raw_encrypt_s=aes_raw_encrypt_s,
        aes_raw_decrypt_s=aes_raw_decrypt_s,
        encoder_s=encoder_s,
        aes_latent_encrypt_s=aes_latent_encrypt_s,
        aes_latent_decrypt_s=aes_latent_decrypt_s,
        decoder_s=decoder_s,
        jpegls_encode_s=jpegls_encode_s,
    )


def payload_bytes(ds: Any, mode: str, *, model_id: str, key: Key) -> int:
    """Size of the plaintext payload the pipeline seals for ``ds`` in ``mode``."""
    from dicomcrypt.errors import UnsupportedImageError
    from dicomcrypt.pipeline import encrypt_instance

    outcome = encrypt_instance(ds, key=key, mode=mode, model=model_id if mode != "standard" else None)
    if outcome.mode != mode:
        raise UnsupportedImageError(f"the pipeline used {outcome.mode} instead of {mode}: {outcome.note}")
    return int(outcome.metrics["payload_bytes"])


HEADER = (
    f"{'file':<28} {'model':<16} {'WxHxFxC':<16} {'AES raw':>9} {'enc+AES':>9} {'ratio':>7}"
    f" {'AES raw':>9} {'AES+dec':>9}"
    f" {'ratio':>7} {'raw kB':>8} {'lossy':>13} {'lossless':>13} {'JPEG-LS kB':>10}"
)
SUBHEADER = f"{'':<28} {'':<16} {'':<16} {'sender (ms)':^27} {'receiver (ms)':^27} {'':>8} {'kB (x JPEG-LS)':^27}"


def format_row(row: BenchRow) -> str:
    """One line of the printed table: times in ms, ratio = AE path over plain AES."""
    def ms(seconds: float) -> str:
        return f"{seconds * 1e3:9.3f}"

    def size(n: int) -> str:
        return f"{n / 1e3:7.1f} ({n / row.jpegls_bytes:.2f})"

    return (
        f"{row.file[-28:]:<28} {row.model_id[:16]:<16} {row.geometry:<16}"
        f" {ms(row.aes_raw_encrypt_s)} {ms(row.ae_aes_encrypt_s)}"
        f" {row.ae_aes_encrypt_s / row.aes_raw_encrypt_s:6.0f}x {ms(row.aes_raw_decrypt_s)} {ms(row.ae_aes_decrypt_s)}"
        f" {row.ae_aes_decrypt_s / row.aes_raw_decrypt_s:6.0f}x {row.raw_bytes / 1e3:8.1f} {size(row.lossy_bytes):>13}"
        f" {size(row.lossless_bytes):>13} {row.jpegls_bytes / 1e3:10.1f}"
    )
