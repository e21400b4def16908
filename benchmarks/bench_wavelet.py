"""The wavelet codec against JPEG-LS, JPEG 2000 and JPEG-XL on the held-out pydicom-data images.

Not a test: prints one table per run (docs/codec.md quotes it). For each image: exact sizes
(ours, JPEG-LS, JPEG-XL lossless effort 7); lossy at each quality asked (default: the model's
default), its payload bytes (pixels section + padding mask), PSNR over range, SSIM, CT brain-window
MAE, and the smallest JPEG 2000 and JPEG-XL streams that reach the same PSNR on the same pixels
(:func:`dicomcrypt.evaluation.anchors.smallest_reaching`, every stream decoded back); encode and
decode times of the coder alone (no envelope, no DICOM) after a warm-up, the best of
``--repeat`` runs.

A second table gives the exact mode at each ``--effort`` (bytes, the codings the frames chose,
encode and decode ms) beside JPEG-LS alone and JPEG-XL lossless effort 7 alone, timed the same
way (one thread, as the coder runs them).

    PYTHONPATH=$PWD python benchmarks/bench_wavelet.py [--quality Q ...] [--images 693_UNCR.dcm ...]
        [--efforts fast balanced smallest] [--repeat N] [--clock wall|cpu] [--no-anchors]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from dicomcrypt.codec.coders.wavelet import DEFAULT_EFFORT
from dicomcrypt.evaluation import anchors
from dicomcrypt.settings import EFFORTS

IMAGES = ("693_UNCR.dcm", "MR2_UNCR.dcm", "RG1_UNCR.dcm", "US1_UNCR.dcm")
_CLOCK = time.perf_counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=int, nargs="*", default=[None])
    parser.add_argument("--images", nargs="*", default=list(IMAGES))
    parser.add_argument("--no-anchors", action="store_true", help="skip the JPEG 2000 / JPEG-XL search")
    parser.add_argument("--efforts", nargs="*", default=list(EFFORTS), choices=EFFORTS,
                        help="exact-mode efforts for the second table (none: skip it)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after the warm-up; the best is shown")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time, or this process's CPU time (steadier on a shared machine)")
    args = parser.parse_args()
    global _CLOCK
    _CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    ratios = []
    print("| image | mode | ours bytes | PSNR dB | SSIM | brain MAE HU | JPEG-LS | JPEG 2000 | JPEG-XL | ours/best "
          "| enc ms | dec ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.images:
        frames, fmt, rescale = _read(name)
        pixels = anchors.prepare(frames)
        exact = _run(frames, fmt, "lossless", None, repeat=args.repeat)
        jls = anchors.lossless(pixels, anchors.JPEGLS_NEAR).nbytes
        jxl = anchors.lossless(pixels, anchors.JPEGXL).nbytes
        print(f"| {name} | exact | {exact['bytes']} | inf | 1 | 0 | {jls} | - | {jxl} | "
              f"{exact['bytes'] / min(jls, jxl):.3f} | {exact['enc']:.0f} | {exact['dec']:.0f} |")
        for quality in args.quality:
            lossy = _run(frames, fmt, "lossy", quality, repeat=args.repeat)
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
    if args.efforts:
        _effort_table(args.images, args.efforts, args.repeat)


def _effort_table(images: list[str], efforts: list[str], repeat: int) -> None:
    """Exact mode per effort against JPEG-LS and JPEG-XL effort 7 alone: bytes, enc ms, dec ms."""
    import imagecodecs

    from dicomcrypt.codec import lossless

    print()
    print("| image | exact coding | bytes | / JPEG-LS | frames coded as | enc ms | dec ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in images:
        frames, fmt, _rescale = _read(name)
        stored = [lossless.to_unsigned(frame) for frame in frames]
        planes = [s[..., 0] if s.shape[-1] == 1 else s for s in stored]
        jls_records = [lossless.encode_record(s) for s in stored]
        jls = len(lossless.pack_records(jls_records))
        enc = _best(lambda: [lossless.encode_record(s) for s in stored], repeat)
        dec = _best(lambda: [imagecodecs.jpegls_decode(r[5:]) for r in jls_records], repeat)
        print(f"| {name} | JPEG-LS alone | {jls} | 1.000 | - | {enc:.0f} | {dec:.0f} |")
        jxl_streams = [imagecodecs.jpegxl_encode(p, lossless=True, effort=7, numthreads=1) for p in planes]
        jxl = sum(len(x) + 5 for x in jxl_streams) + 4  # as records: coding byte, length, and the count
        enc = _best(lambda: [imagecodecs.jpegxl_encode(p, lossless=True, effort=7, numthreads=1) for p in planes],
                    repeat)
        dec = _best(lambda: [imagecodecs.jpegxl_decode(x, numthreads=1) for x in jxl_streams], repeat)
        print(f"| {name} | JPEG-XL e7 alone | {jxl} | {jxl / jls:.3f} | - | {enc:.0f} | {dec:.0f} |")
        for effort in efforts:
            run = _run(frames, fmt, "lossless", None, repeat=repeat, effort=effort)
            chosen = ", ".join(f"{k.removesuffix('_frames')} {v:.0f}" for k, v in sorted(run["metrics"].items())
                               if k.endswith("_frames"))
            label = f"--effort {effort}" + (" (default)" if effort == DEFAULT_EFFORT else "")
            print(f"| {name} | {label} | {run['bytes']} | {run['bytes'] / jls:.3f} | {chosen} | {run['enc']:.0f} "
                  f"| {run['dec']:.0f} |")


def _best(action, repeat: int) -> float:
    """Milliseconds of the fastest of ``repeat`` runs after one warm-up."""
    action()
    times = []
    for _ in range(max(repeat, 1)):
        started = _CLOCK()
        action()
        times.append(_CLOCK() - started)
    return min(times) * 1000


def _read(name: str):
    import pydicom
    from pydicom.data import get_testdata_file

    from dicomcrypt import dicom
    from dicomcrypt.roundtrip import ct_rescale

    ds = pydicom.dcmread(get_testdata_file(name))
    frames, fmt = dicom.read_frames(ds)
    return frames, fmt, ct_rescale(ds)


def _run(frames, fmt, mode, quality, *, repeat=1, effort=None):
    from dicomcrypt.codec.coders import CodingContext, coder_for
    from dicomcrypt.codec.registry import load_codec
    from dicomcrypt.envelope import Mode
    from dicomcrypt.payload import PayloadMeta

    coder = coder_for(Mode[mode.upper()])
    model = load_codec(None, fmt.samples_per_pixel)
    encode = _best(lambda: coder.pack(frames, fmt, CodingContext(model, quality=quality, effort=effort)), repeat)
    context = CodingContext(model, quality=quality, effort=effort)
    packed = coder.pack(frames, fmt, context)
    meta = PayloadMeta.build(pixel_format=fmt, shape=frames.shape, dtype=frames.dtype, **packed.meta)
    decode = _best(lambda: coder.unpack(packed.sections, meta, CodingContext(model)), repeat)
    restored = coder.unpack(packed.sections, meta, CodingContext(model))
    if mode == "lossless":
        assert np.array_equal(restored, frames)
    size = sum(len(packed.sections[s]) for s in ("pixels", "padding") if s in packed.sections)
    return {"bytes": size, "enc": encode, "dec": decode, "frames": restored, "metrics": context.metrics}


if __name__ == "__main__":
    main()
