"""Lossless mode against the standard mode (JPEG-LS of the same pixels), through the pipeline.

Not a test: prints the table in docs/models.md "Lossless mode". For each file: latent bytes,
pixel-coding bytes (the ``residual`` section), payload bytes, the standard mode's payload,
their ratio, the raw pixel size, which residual predictor each frame used, what the residual
would cost with every frame forced onto the decoder's prediction, and the median of
``--repeat`` lossless encode and decode times (after a warm-up that loads the model), with the
decode time of that forced envelope beside them (what skipping the decoder saves).

    .venv/bin/python benchmarks/lossless_ratio.py [--repeat 3] [FILE ...]
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import pydicom
from pydicom.data import get_testdata_file

from dicomcrypt import dicom
from dicomcrypt.codec import residual
from dicomcrypt.crypto import Key
from dicomcrypt.evaluation.bench import median_time
from dicomcrypt.pipeline import decrypt_instance, encrypt_instance

DEFAULT_FILES = ["693_UNCR.dcm", "MR2_UNCR.dcm", "RG1_UNCR.dcm", "US1_UNCR.dcm"]


def forced_decoder(ds: pydicom.Dataset, key: Key, repeat: int) -> tuple[int, float]:
    """Residual bytes and median decode time with every frame forced onto the decoder's prediction."""
    original = residual.encode
    residual.encode = lambda frames, prediction: original(frames, prediction, predictor=residual.DECODER)
    try:
        sealed = encrypt_instance(ds, key=key, mode="lossless")
    finally:
        residual.encode = original
    decode_s, _ = median_time(lambda: decrypt_instance(sealed.dataset, keys=[key]), repeat)
    return int(sealed.metrics["residual_bytes"]), decode_s


def measure(name: str, key: Key, repeat: int) -> dict[str, object]:
    path = name if "/" in name else get_testdata_file(name)
    ds = pydicom.dcmread(path)
    encode_s, sealed = median_time(lambda: encrypt_instance(ds, key=key, mode="lossless"), repeat)
    decode_s, restored = median_time(lambda: decrypt_instance(sealed.dataset, keys=[key]), repeat)
    exact = np.array_equal(dicom.read_frames(restored.dataset)[0], dicom.read_frames(ds)[0])
    standard_bytes = encrypt_instance(ds, key=key, mode="standard").metrics["payload_bytes"]
    m = sealed.metrics
    frames = int(dicom.read_frames(ds)[0].shape[0])
    none = int(m["predictor_none_frames"])
    chosen = Counter({residual.NONE: none, residual.DECODER: frames - none})
    decoder_bytes, decoder_decode_s = forced_decoder(ds, key, repeat)
    return {
        "file": name.rsplit("/", 1)[-1].removesuffix(".dcm"),
        "latent": int(m["latent_bytes"]),
        "pixels": int(m["residual_bytes"]),
        "payload": int(m["payload_bytes"]),
        "standard": int(standard_bytes),
        "ratio": m["payload_bytes"] / standard_bytes,
        "raw": int(m["pixel_bytes"]),
        "predictor": ", ".join(f"{k} x{v}" for k, v in chosen.items() if v),
        "decoder_residual": decoder_bytes,
        "decoder_decode_s": decoder_decode_s,
        "encode_s": encode_s,
        "decode_s": decode_s,
        "exact": exact,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", default=DEFAULT_FILES)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    key = Key.generate()
    print("| file | latent | pixel coding | payload | standard payload | ratio | raw | predictor "
          "| residual vs decoder | encode | decode | decode, all vs decoder | exact |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.files:
        r = measure(name, key, args.repeat)
        print(f"| {r['file']} | {r['latent']:,} | {r['pixels']:,} | {r['payload']:,} | {r['standard']:,} "
              f"| {r['ratio']:.3f} | {r['raw']:,} | {r['predictor']} | {r['decoder_residual']:,} "
              f"| {r['encode_s'] * 1000:.0f} ms | {r['decode_s'] * 1000:.0f} ms "
              f"| {r['decoder_decode_s'] * 1000:.0f} ms | {r['exact']} |", flush=True)


if __name__ == "__main__":
    main()
