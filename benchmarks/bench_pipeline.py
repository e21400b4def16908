"""Where the time and the bytes go, for a 512x512 CT and a large radiograph.

Not a test: it prints figures measured in this run, beside their peers measured in the same
run (AES-256-GCM on the raw pixels, lossless JPEG-LS of the raw pixels), so ratios mean
something on whatever machine runs it. Medians over repeated runs after a warm-up.

    .venv/bin/python benchmarks/bench_pipeline.py [--repeat 5] [FILE ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pydicom
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dicomcrypt import dicom
from dicomcrypt.codec import normalise, residual
from dicomcrypt.codec.coders import standard
from dicomcrypt.codec.registry import load_model
from dicomcrypt.crypto import Key
from dicomcrypt.envelope import Mode, instance_binding, open_envelope, seal
from dicomcrypt.pipeline import encrypt_instance

DATA = Path(__import__("data_store").__file__).parent / "data"
DEFAULT_FILES = [DATA / "693_UNCR.dcm", DATA / "RG1_UNCR.dcm"]


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: allocator, lazy imports, model load
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_file(path: Path, repeat: int) -> None:
    ds = pydicom.dcmread(path)
    frames, fmt = dicom.read_frames(ds)
    raw = frames.tobytes()
    model = load_model(None, channels=fmt.samples_per_pixel)
    norm = normalise.fit(frames, fmt.padding_value)
    unit = normalise.to_unit(frames, norm)
    key = Key.generate()
    binding = instance_binding("1.2", "1.2.3", "1.2.3.4", "1.2.3.5")

    latent = model.encode(unit, latent_format="u8")
    prediction = normalise.from_unit(model.decode(latent), norm, frames.dtype)
    res = residual.encode_residual(frames, prediction)
    jls = standard.encode_pixels(frames)
    lossless_payload = latent + res
    sealed_lossy = seal(latent, key=key, mode=Mode.LOSSY, model_id=model.info.model_id,
                        model_sha256=model.info.sha256, binding=binding)

    aes = AESGCM(os.urandom(32))
    nonce = os.urandom(12)
    aes_raw_ct = aes.encrypt(nonce, raw, None)
    t = {
        "AES-256-GCM encrypt, raw pixels": median_seconds(lambda: aes.encrypt(nonce, raw, None), repeat),
        "AES-256-GCM decrypt, raw pixels": median_seconds(lambda: aes.decrypt(nonce, aes_raw_ct, None), repeat),
        "encoder (float32)": median_seconds(lambda: model.encode(unit, latent_format="u8"), repeat),
        "seal latent (AES-GCM + key wrap)": median_seconds(
            lambda: seal(latent, key=key, mode=Mode.LOSSY, model_id=model.info.model_id,
                         model_sha256=model.info.sha256, binding=binding), repeat),
        "open latent": median_seconds(lambda: open_envelope(sealed_lossy, keys=[key], binding=binding), repeat),
        "decoder (exact fixed point)": median_seconds(lambda: model.decode(latent), max(1, repeat // 2)),
        "residual encode (JPEG-LS)": median_seconds(lambda: residual.encode_residual(frames, prediction), repeat),
        "JPEG-LS of raw pixels": median_seconds(lambda: standard.encode_pixels(frames), repeat),
    }
    print(f"\n## {path.name}: {fmt.columns}x{fmt.rows}, {fmt.frames} frame(s), {fmt.bits_stored}-bit, "
          f"{len(raw) / 1e3:.0f} kB raw")
    print(f"{'step':<36} {'median ms':>10} {'x AES raw':>10}")
    base = t["AES-256-GCM encrypt, raw pixels"]
    for name, seconds in t.items():
        print(f"{name:<36} {seconds * 1e3:>10.2f} {seconds / base:>10.0f}")
    paper_path = t["encoder (float32)"] + t["seal latent (AES-GCM + key wrap)"]
    print(f"sender, paper's path (encoder + AES):  {paper_path * 1e3:.1f} ms vs AES on raw "
          f"{base * 1e3:.2f} ms -> {paper_path / base:.0f}x slower (the paper claims 72 % faster)")
    # What the pipeline really carries (padding mask, attributes, metadata included).
    sealed = {m: encrypt_instance(ds, key=key, mode=m) for m in ("standard", "lossy", "lossless")}
    print(f"\n{'payload':<36} {'kB':>10} {'/ raw':>8} {'/ JPEG-LS':>10}")
    for name, size in [
        ("raw pixels", len(raw)),
        ("JPEG-LS of raw", len(jls)),
        ("codec only: latent u8 + zstd", len(latent)),
        ("codec only: latent + residual", len(lossless_payload)),
        ("  of which residual", len(res)),
        ("pipeline payload, standard mode", sealed["standard"].metrics["payload_bytes"]),
        ("pipeline payload, lossy mode", sealed["lossy"].metrics["payload_bytes"]),
        ("pipeline payload, lossless mode", sealed["lossless"].metrics["payload_bytes"]),
    ]:
        print(f"{name:<36} {size / 1e3:>10.1f} {size / len(raw):>8.3f} {size / len(jls):>10.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path, default=DEFAULT_FILES)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    for path in args.files:
        bench_file(path, args.repeat)


if __name__ == "__main__":
    main()
