"""Write tests/vectors/wavelet.json: known answers for the wavelet stream (docs/format.md, "Wavelet payload").

Unlike envelope.json these come from dicomcrypt itself (the stream's format is defined by its
integer reference code): they pin the bytes a given image and model produce, so a change to
the transform, the contexts, the token scheme, the tables or the header is seen as a format
change (a new magic/version and new vectors), and a machine that decodes them differently is
caught. Images are generated from formulas, so the file needs no DICOM input. Each vector
records the SHA-256 of the model parameters file it was made with.

Run from the repository root:  PYTHONPATH=$PWD python tests/vectors/make_wavelet_vectors.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("wavelet.json")


def images() -> dict[str, np.ndarray]:
    """Small deterministic frames: signed 12-bit grey with an edge and noise, 8-bit RGB, odd sizes."""
    rows, cols = np.mgrid[0:37, 0:29]
    noise = (rows * 7919 + cols * 104729) % 61 - 30
    grey = ((rows * 40 - cols * 25 + noise + np.where(rows > 18, 900, -400)).clip(-2048, 2047)).astype(np.int16)
    rgb = np.stack([(rows * 6 + noise) % 256, (cols * 8 + 2 * noise) % 256, (rows * cols) % 256], axis=-1)
    return {"grey-37x29-int16": grey[..., None], "rgb-37x29-uint8": rgb.astype(np.uint8)}


def render() -> str:
    from dicomcrypt.codec.registry import load_codec
    from dicomcrypt.codec.wavelet import stream
    from dicomcrypt.codec.wavelet.model import quantiser_for

    vectors = []
    for name, frame in images().items():
        model = load_codec(None, frame.shape[-1])
        colour = frame.shape[-1] == 3
        params = model.params
        exact = stream.encode(frame, colour=colour, lossless=True, tables=params.tables)
        value_range = int(frame.max()) - int(frame.min())
        quantiser = quantiser_for(params, frame.astype(np.int64), params.pixel_step(40, value_range), colour)
        lossy = stream.encode(frame, colour=colour, lossless=False, quantiser=quantiser, tables=params.tables)
        decoded, _ = stream.decode(lossy, frame.shape, params.tables)
        vectors.append({
            "name": name, "model_id": model.info.model_id, "model_sha256": model.info.sha256.hex(),
            "shape": list(frame.shape), "dtype": frame.dtype.str, "pixels": frame.ravel().tolist(),
            "colour": colour, "exact_stream": exact.hex(), "lossy_quality": 40, "lossy_stream": lossy.hex(),
            "lossy_decoded_sha256": hashlib.sha256(decoded.astype("<i8").tobytes()).hexdigest(),
        })
    document = {"format": "dicomcrypt wavelet stream DCW1", "generated_by": "tests/vectors/make_wavelet_vectors.py",
                "vectors": vectors}
    return json.dumps(document, indent=1) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
