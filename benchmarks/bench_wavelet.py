"""The wavelet codec against JPEG-LS, JPEG 2000 and JPEG-XL on the held-out pydicom-data images.

Not a test: prints one table per run (docs/codec.md quotes it). For each image: exact sizes
(ours, JPEG-LS, JPEG-XL lossless effort 7); lossy at each quality asked (default: the model's
default), its payload bytes (pixels section + padding mask), PSNR over range, SSIM, CT brain-window
MAE, and the smallest JPEG 2000 and JPEG-XL streams that reach the same PSNR (bisection on
their quality settings, same pixels); encode and decode times after a warm-up.

    PYTHONPATH=$PWD python benchmarks/bench_wavelet.py [--quality Q ...] [--images 693_UNCR.dcm ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

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
        exact = _run(frames, fmt, "lossless", None)
        jls, jxl = _jpeg_ls(frames), _jpeg_xl_lossless(frames)
        print(f"| {name} | exact | {exact['bytes']} | inf | 1 | 0 | {jls} | - | {jxl} | "
              f"{exact['bytes'] / min(jls, jxl):.3f} | {exact['enc']:.0f} | {exact['dec']:.0f} |")
        for quality in args.quality:
            lossy = _run(frames, fmt, "lossy", quality)
            from dicomcrypt.quality import compare

            q = compare(frames, lossy["frames"], rescale=rescale)
            j2k = jxl_lossy = None
            if not args.no_anchors:
                j2k = _anchor(frames, q.psnr_db, _j2k)
                jxl_lossy = _anchor(frames, q.psnr_db, _jxl)
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

    ds = pydicom.dcmread(get_testdata_file(name))
    frames, fmt = dicom.read_frames(ds)
    rescale = None
    if getattr(ds, "Modality", "") == "CT":
        rescale = (float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0)))
    return frames, fmt, rescale


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


def _unsigned(frames):
    from dicomcrypt.codec.lossless import to_unsigned

    image = to_unsigned(frames[0])
    return image[..., 0] if image.shape[-1] == 1 else image


def _jpeg_ls(frames) -> int:
    import imagecodecs

    return len(imagecodecs.jpegls_encode(_unsigned(frames)))


def _jpeg_xl_lossless(frames) -> int:
    import imagecodecs

    return len(imagecodecs.jpegxl_encode(_unsigned(frames), lossless=True, effort=7))


def _j2k(image, setting):
    import imagecodecs

    data = imagecodecs.jpeg2k_encode(image, level=setting)
    return data, imagecodecs.jpeg2k_decode(data)


def _jxl(image, setting):
    import imagecodecs

    data = imagecodecs.jpegxl_encode(image, distance=setting, effort=7)
    return data, imagecodecs.jpegxl_decode(data)


def _anchor(frames, target_psnr, codec) -> int | None:
    """Smallest stream of ``codec`` reaching ``target_psnr`` (bisection on its setting)."""
    from dicomcrypt.quality import psnr_db

    image = _unsigned(frames)
    reference = image.astype(np.float64)
    value_range = float(reference.max() - reference.min()) or 1.0
    if codec is _j2k:
        low, high, better_high = 20.0, 120.0, True
    else:
        low, high, better_high = 0.01, 15.0, False
    best = None
    for _ in range(18):
        mid = (low + high) / 2
        data, decoded = codec(image, mid)
        psnr = psnr_db(float(np.mean((decoded.astype(np.float64) - reference) ** 2)), value_range)
        if psnr >= target_psnr:
            best = len(data) if best is None else min(best, len(data))
            if better_high:
                high = mid
            else:
                low = mid
        elif better_high:
            low = mid
        else:
            high = mid
    return best


if __name__ == "__main__":
    main()
