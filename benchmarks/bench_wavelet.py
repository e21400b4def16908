"""The wavelet codec against JPEG-LS, JPEG 2000 and JPEG-XL on the held-out pydicom-data images.

Not a test: prints one table per run (docs/codec.md quotes it). For each image: exact sizes
(ours, JPEG-LS, JPEG-XL lossless effort 7); lossy at each quality asked (default: the model's
default), its payload bytes (pixels section + padding mask), PSNR over range, SSIM, CT brain-window
MAE, and the smallest JPEG 2000 and JPEG-XL streams that reach the same PSNR on the same pixels
(:func:`dicomcrypt.evaluation.anchors.smallest_reaching`, every stream decoded back); encode and
decode times of the coder alone (no envelope, no DICOM) after a warm-up.

    PYTHONPATH=$PWD python benchmarks/bench_wavelet.py [--quality Q ...] [--images 693_UNCR.dcm ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from dicomcrypt.evaluation import anchors

IMAGES = ("693_UNCR.dcm", "MR2_UNCR.dcm", "RG1_UNCR.dcm", "US1_UNCR.dcm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=int, nargs="*", default=[None])
    parser.add_argument("--images", nargs="*", default=list(IMAGES))
    parser.add_argument("--no-anchors", action="store_true", help="skip the JPEG 2000 / JPEG-XL search")
    args = parser.parse_args()
    ratios = []
    print("| image | mode | ours bytes | PSNR dB | SSIM | brain MAE HU | JPEG-LS | JPEG 2000 | JPEG-XL | ours/best "
          "| enc ms | dec ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.images:
        frames, fmt, rescale = _read(name)
        pixels = anchors.prepare(frames)
        exact = _run(frames, fmt, "lossless", None)
        jls = anchors.lossless(pixels, anchors.JPEGLS_NEAR).nbytes
        jxl = anchors.lossless(pixels, anchors.JPEGXL).nbytes
        print(f"| {name} | exact | {exact['bytes']} | inf | 1 | 0 | {jls} | - | {jxl} | "
              f"{exact['bytes'] / min(jls, jxl):.3f} | {exact['enc']:.0f} | {exact['dec']:.0f} |")
        for quality in args.quality:
            lossy = _run(frames, fmt, "lossy", quality)
            from dicomcrypt.quality import compare

            q = compare(frames, lossy["frames"], rescale=rescale)
            j2k = jxl_lossy = None
            if not args.no_anchors:
                j2k = anchors.smallest_reaching(pixels, anchors.JPEG2000, q.psnr_db).nbytes
                jxl_lossy = anchors.smallest_reaching(pixels, anchors.JPEGXL, q.psnr_db).nbytes
            best = min(v for v in (j2k, jxl_lossy) if v) if (j2k or jxl_lossy) else None
            ratio = lossy["bytes"] / best if best else float("nan")
            ratios.append(ratio)
            hu = "-" if q.window_mae_hu is None else f"{q.window_mae_hu:.2f}"
            print(f"| {name} | lossy q={quality or 'default'} | {lossy['bytes']} | {q.psnr_db:.2f} | {q.ssim:.4f} "
                  f"| {hu} | - | {j2k} | {jxl_lossy} | {ratio:.3f} | {lossy['enc']:.0f} | {lossy['dec']:.0f} |")
    if ratios and not args.no_anchors:
        print(f"median ours / best anchor (lossy): {statistics.median(ratios):.3f}")


def _read(name: str):
    import pydicom
    from pydicom.data import get_testdata_file

    from dicomcrypt import dicom
    from dicomcrypt.roundtrip import ct_rescale

    ds = pydicom.dcmread(get_testdata_file(name))
    frames, fmt = dicom.read_frames(ds)
    return frames, fmt, ct_rescale(ds)


def _run(frames, fmt, mode, quality):
    from dicomcrypt.codec.coders import CodingContext, coder_for
    from dicomcrypt.codec.registry import load_codec
    from dicomcrypt.envelope import Mode
    from dicomcrypt.payload import PayloadMeta

    coder = coder_for(Mode[mode.upper()])
    model = load_codec(None, fmt.samples_per_pixel)
    coder.pack(frames, fmt, CodingContext(model, quality=quality))  # warm-up
    started = time.perf_counter()
    packed = coder.pack(frames, fmt, CodingContext(model, quality=quality))
    encode = time.perf_counter() - started
    meta = PayloadMeta.build(pixel_format=fmt, shape=frames.shape, dtype=frames.dtype, **packed.meta)
    started = time.perf_counter()
    restored = coder.unpack(packed.sections, meta, CodingContext(model))
    decode = time.perf_counter() - started
    if mode == "lossless":
        assert np.array_equal(restored, frames)
    size = sum(len(packed.sections[s]) for s in ("pixels", "padding") if s in packed.sections)
    return {"bytes": size, "enc": encode * 1000, "dec": decode * 1000, "frames": restored}


if __name__ == "__main__":
    main()
