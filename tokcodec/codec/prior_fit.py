"""Fit coder 3's prior (a small MLP over causal token features) for one tokenizer, offline.

Tokens come from procedural clips over ``TRAIN_IMAGES`` (the same camera motions as the
validation clips), with ``--corpus`` windows of the real corpus's training videos, and with
``data`` windows of any videos and images (``tokcodec fit-prior --data``); held-out images and
videos are never used here. The MLP is fitted in float with torch, then rounded to the integers
coder 3 computes with. The result is written with the weights' SHA-256 in its metadata: for a
shipped preset as ``tokcodec/weights/<preset>.coder3.safetensors`` (listed in SHA256SUMS), for
weights of your own beside them as ``MODEL.coder3.safetensors`` (``context_coder3.prior_path``),
where encode and decode look for it; a prior replaced there is kept as
``MODEL.coder3-KEY.safetensors``, so files coded with it still decode.

Weights of your own: ``tokcodec fit-prior mine.safetensors --data videos/`` (cli/app.py). From
Python: ``fit_prior(PriorFitConfig(weights="default", corpus=Path("data/real")))``. A shipped
preset's prior, from a shell (until December 2026 this was ``bench/fit_coder_prior.py``)::

    nice -n 19 python -m tokcodec.codec.prior_fit                     # shipped default model
    nice -n 19 python -m tokcodec.codec.prior_fit --corpus data/real   # + real video windows
    nice -n 19 python -m tokcodec.codec.prior_fit --clips360 28 --hidden 32 --epochs 8
    nice -n 19 python -m tokcodec.codec.prior_fit --tokens-cache /tmp/tok --report-validation
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from tokcodec.codec import context_coder3 as c3
from tokcodec.codec import lattice
from tokcodec.errors import FormatError, InputError, ModelError

W1_SCALE = 256              # first-layer weights and biases in 1/256
W2_SCALE = 256              # second-layer weights: activation (1/16) x 1/256 = 1/4096 nat
LOGIT_SCALE = 4096


# --------------------------------------------------------------------------- tokens


def training_tokens(weights: str, size: tuple[int, int], count: int, seed: int) -> tuple[np.ndarray, str]:
    """(count, t, h, w) tokens of procedural training clips, and the weights' SHA-256."""
    import torch

    from tokcodec.model.zoo import load_tokenizer
    from tokcodec.train.synthetic import TRAIN_IMAGES, SynthConfig, _scene, load_images

    loaded = load_tokenizer(weights, "cpu")
    model = loaded.tokenizer.eval()
    images = load_images(TRAIN_IMAGES)
    cfg = SynthConfig(frames=17, height=size[0], width=size[1], cut_probability=0.0,
                      noise_probability=0.0, blur_probability=0.0)
    rng = np.random.default_rng(seed)
    out = []
    with torch.no_grad():
        for i in range(count):
            clip = _scene(rng, (images[i % len(images)],), cfg, 17)
            u8 = (clip.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
            x = torch.from_numpy(u8).float().div(127.5).sub(1.0).permute(3, 0, 1, 2)[None]
            out.append(model.encode_indices(x)[0].numpy().astype(np.int64))
    return np.stack(out), loaded.sha256


def real_tokens(weights: str, corpus: Path, count: int, seed: int, frames: int = 17) -> list[np.ndarray]:
    """(1, t, h, w) tokens of ``count`` random windows of the real corpus's training videos (never
    its held-out ones), each at its own size cropped to at most 360x640 (multiples of 8)."""
    import torch

    from tokcodec.model.zoo import load_tokenizer
    from tokcodec.train.real import RealVideos

    model = load_tokenizer(weights, "cpu").tokenizer.eval()
    videos = RealVideos(corpus)
    rng = np.random.default_rng(seed)
    out = []
    with torch.no_grad():
        for _ in range(count):
            video = videos.videos[rng.choice(len(videos.videos), p=videos.p)]
            t, h, w, _ = video.shape
            if t < frames:
                continue
            ch, cw = min(h, 360) // 8 * 8, min(w, 640) // 8 * 8
            t0 = int(rng.integers(0, t - frames + 1))
            y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            clip = np.ascontiguousarray(video[t0:t0 + frames, y0:y0 + ch, x0:x0 + cw])
            x = torch.from_numpy(clip).float().div(127.5).sub(1.0).permute(3, 0, 1, 2)[None]
            out.append(model.encode_indices(x).numpy().astype(np.int64))
    return out


def data_tokens(weights: str, paths: tuple[Path, ...], count: int, seed: int, frames: int = 17,
                log=print) -> list[np.ndarray]:
    """(1, t, h, w) tokens of ``count`` windows of your own videos and images (``paths``): a file
    drawn at random, ``frames`` frames from a random start (an image: itself), cropped at random
    to at most 360x640 (multiples of the model's spatial factor). Files that cannot be read are
    skipped with a word."""
    import torch

    from tokcodec.errors import TokcodecError
    from tokcodec.io import media_files
    from tokcodec.model.zoo import load_tokenizer
    from tokcodec.train.data import random_window

    files = media_files(paths)
    loaded = load_tokenizer(weights, "cpu")
    model, step = loaded.tokenizer.eval(), loaded.config.temporal_factor
    rng = np.random.default_rng(seed)
    lengths: dict[Path, int] = {}
    out = []
    tries = 0
    with torch.no_grad():
        while len(out) < count and tries < 4 * count:
            tries += 1
            path = files[int(rng.integers(len(files)))]
            try:
                read, start = random_window(path, frames, rng, lengths)
            except TokcodecError as exc:
                read, start = [], 0
                log(f"skipped {path}: {exc}")
            if not read and start > 0:  # fewer frames than its container said: start earlier next time
                continue
            if not read:
                files.remove(path)
                if not files:
                    break
                continue
            clip = np.stack(read)
            t, h, w, _ = clip.shape
            f = loaded.config.spatial_factor
            ch, cw = min(h, 360) // f * f, min(w, 640) // f * f
            if ch < f or cw < f:
                continue
            t = 1 + (t - 1) // step * step  # (1 + s*k frames: no padded frames in the statistics)
            y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            clip = np.ascontiguousarray(clip[:t, y0:y0 + ch, x0:x0 + cw])
            x = torch.from_numpy(clip).float().div(127.5).sub(1.0).permute(3, 0, 1, 2)[None]
            out.append(model.encode_indices(x).numpy().astype(np.int64))
    if not out:
        raise InputError(f"no frames could be read from {', '.join(map(str, paths))}")
    return out


def validation_tokens(weights: str, size: tuple[int, int]) -> np.ndarray:
    import torch

    from tokcodec.model.zoo import load_tokenizer
    from tokcodec.train.data import validation_clips

    model = load_tokenizer(weights, "cpu").tokenizer.eval()
    out = []
    with torch.no_grad():
        for clip in validation_clips(height=size[0], width=size[1], count=8):
            x = torch.from_numpy(clip).float().div(127.5).sub(1.0).permute(3, 0, 1, 2)[None]
            out.append(model.encode_indices(x)[0].numpy().astype(np.int64))
    return np.stack(out)


# --------------------------------------------------------------------------- features


def gop_features(gop: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features (n, F) float32, bits (n, bits) uint8 and latent frame index (n,) of one GOP, in
    coder 3's coding order, built with coder 3's own functions."""
    t, h, w = gop.shape
    geo = lattice.geometry(h, w, c3.LEVELS_PER_PASS)
    xs, ys, fs = [], [], []
    prev = None
    for f in range(t):
        motion = (0, 0) if f == 0 else lattice.search_motion(gop[f - 1], gop[f], 4)
        prev_feats, has = c3.prev_features(geo, bits, prev, motion)
        planes = lattice.unpack_bits(gop[f].reshape(-1)[geo.order], bits)
        signs = np.zeros((h * w + 1, bits), np.float32)
        signs[:-1] = planes * 2.0 - 1.0
        for i, ps in enumerate(geo.passes):
            xs.append(c3.features(geo, ps, i, signs, prev_feats, has, f == 0))
            ys.append(planes[ps.start:ps.stop])
            fs.append(np.full(ps.stop - ps.start, f))
        rm = np.empty_like(planes)
        rm[geo.order] = planes
        prev = rm
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(fs)


def dataset(tokens: list[np.ndarray], bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [gop_features(g, bits) for arr in tokens for g in arr]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


# --------------------------------------------------------------------------- fitting


def fit(x: np.ndarray, y: np.ndarray, bits: int, hidden: int, epochs: int, seed: int,
        log=print) -> dict[str, np.ndarray]:
    """Float MLP with a first-group -> second-group linear term; returns float arrays."""
    import torch

    torch.manual_seed(seed)
    g = (bits + 1) // 2
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    l1 = torch.nn.Linear(x.shape[1], hidden + bits)      # ReLU units, then the linear logits
    l2 = torch.nn.Linear(hidden, bits)
    ar = torch.nn.Parameter(torch.zeros(g, bits - g))
    params = list(l1.parameters()) + list(l2.parameters()) + [ar]
    opt = torch.optim.Adam(params, 3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * (len(x) // 2048 + 1))

    def logits(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        z1 = l1(xb)
        z = l2(torch.relu(z1[:, :hidden]).clamp(max=(c3.ACT_MAX + 1) / 16)) + z1[:, hidden:]
        return torch.cat([z[:, :g], z[:, g:] + (2 * yb[:, :g] - 1) @ ar], 1)

    bce = torch.nn.functional.binary_cross_entropy_with_logits
    for epoch in range(epochs):
        perm = torch.randperm(len(x))
        total = 0.0
        for k in range(0, len(x), 2048):
            idx = perm[k:k + 2048]
            opt.zero_grad()
            loss = bce(logits(xt[idx], yt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log(f"epoch {epoch + 1}/{epochs}: {total / len(x) * bits / math.log(2):.3f} bits/token (float, training)")
    return {"w1": l1.weight.detach().numpy().T, "b1": l1.bias.detach().numpy(),
            "w2": l2.weight.detach().numpy().T, "b2": l2.bias.detach().numpy(), "ar": ar.detach().numpy()}


def quantise(fl: dict[str, np.ndarray], bits: int) -> dict[str, np.ndarray]:
    """Float MLP -> the integer arrays of a prior file (see coder 3's docstring for the units)."""
    centre = (np.arange(-c3.LOGIT_RANGE, c3.LOGIT_RANGE + 1) + 0.5) / (1 << (12 - c3.LOGIT_SHIFT))
    prob = np.rint(lattice.PROB_ONE / (1 + np.exp(-centre))).clip(1, lattice.PROB_ONE - 1)
    return {
        "w1": np.clip(np.rint(fl["w1"] * W1_SCALE), -2047, 2047).astype(np.int32),
        "b1": np.clip(np.rint(fl["b1"] * W1_SCALE), -(1 << 20), 1 << 20).astype(np.int32),
        "w2": np.clip(np.rint(fl["w2"] * W2_SCALE), -(1 << 20), 1 << 20).astype(np.int32),
        "b2": np.rint(fl["b2"] * LOGIT_SCALE).astype(np.int64),
        "ar": np.rint(fl["ar"] * LOGIT_SCALE).astype(np.int64),
        "prob": prob.astype(np.int64),
        "bits": np.array([bits], np.int64),
    }


def save(arrays: dict[str, np.ndarray], sha256: str, path: Path) -> None:
    """Write the prior file; written among the shipped weights, also (re)write its line of
    weights/SHA256SUMS, since coder 3 only uses shipped priors that match it."""
    import hashlib

    from safetensors.numpy import save as save_bytes

    from tokcodec.model.weights_delta import canonical_safetensors

    data = save_bytes({k: np.ascontiguousarray(v) for k, v in arrays.items()},
                      metadata={"format": c3.PRIOR_FORMAT, "model_sha256": sha256})
    path.write_bytes(canonical_safetensors(data))  # (a prior's key is its file's hash: one per contents)
    path.chmod(0o644)
    if path.parent.resolve() == c3.WEIGHTS_DIR.resolve():
        sums = c3.WEIGHTS_DIR / "SHA256SUMS"
        lines = [ln for ln in sums.read_text().splitlines() if ln.split()[1:] != [path.name]] if sums.exists() else []
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}")
        sums.write_text("\n".join(lines) + "\n")


def refuse_to_orphan(path: Path, sha256: str) -> None:
    """Stop before replacing the shipped prior of other weights that still ship: files coded with
    those weights name that prior, so overwriting it would make them undecodable. (When a preset is
    retrained, its old weights and prior are kept as PRESET-SHA8[.coder3].safetensors first.)"""
    from safetensors import safe_open

    from tokcodec.model.zoo import shipped_digests

    if not path.exists() or path.parent.resolve() != c3.WEIGHTS_DIR.resolve():
        return
    with safe_open(str(path), "np") as fh:
        previous = (fh.metadata() or {}).get("model_sha256", "")
    kept = [name for name, digest in shipped_digests().items() if digest == previous and previous != sha256]
    if kept:
        raise ModelError(f"{path} is the prior of the shipped {kept[0]} ({previous[:16]}...), which files "
                         f"may have been coded with: keep both as {kept[0].split('.')[0].split('-')[0]}-"
                         f"{previous[:8]}[.coder3].safetensors first (and list them in SHA256SUMS), "
                         "or pass --force")


def coder2_rate(tokens: list[np.ndarray], bits: int) -> float:
    """Bits/token of coder 2 (what codes a model's tokens without a prior) over (t, h, w) grids."""
    from tokcodec.codec.context_coder import ContextCoder

    coder = ContextCoder()
    return sum(8 * len(coder.encode(g, bits)) for g in tokens) / sum(g.size for g in tokens)


def coded_rate(tokens: np.ndarray | list[np.ndarray], bits: int, sha256: str) -> tuple[float, float, float]:
    """(overall, first latent frame, later) bits/token of coder 3 with the prior just written
    (known to this process: shipped, or beside the weights)."""
    coder = c3.ContextCoder3(model_sha256=sha256)
    total = first = cells = n = 0
    for gop in tokens:
        payload = coder.encode(gop, bits)
        assert np.array_equal(coder.decode(payload, gop.shape, bits), gop)
        fb = coder.frame_bits(payload, gop.shape, bits)
        total, first = total + sum(fb), first + fb[0]
        cells, n = cells + gop[0].size, n + gop.size
    return total / n, first / cells, (total - first) / max(1, n - cells)


def _size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


@dataclass(frozen=True)
class PriorFitConfig:
    weights: str = "default"           # tokenizer: preset name or .safetensors file
    clips360: int = 28                 # procedural training clips at 360x640
    clips128: int = 48                 # procedural training clips at 128x128
    corpus: Path | None = None         # also fit on windows of this real corpus's training videos
    clips_real: int = 32               # real video windows with corpus
    data: tuple[Path, ...] = ()        # also fit on windows of these videos and images (folders searched)
    clips_data: int = 32               # windows of data
    hidden: int = 32
    epochs: int = 8
    seed: int = 7
    tokens_cache: Path | None = None   # folder to keep/reuse the token arrays in
    report_validation: bool = False    # also print the rate on the held-out validation clips
    output: Path | None = None         # default: beside a weights file of your own (prior_path), else
    #                                    tokcodec/weights/<preset>.coder3.safetensors
    force: bool = False                # replace the prior of other shipped weights


@dataclass(frozen=True)
class FittedPrior:
    path: Path                         # the prior written
    kept: Path | None                  # the prior it replaced, kept under its key for old files
    tokens: int                        # tokens fitted on
    coder3_bits: float                 # bits/token with it, on a sample of the fitting tokens
    coder2_bits: float                 # ... and without it (coder 2, what codes without a prior)


def fit_prior(cfg: PriorFitConfig, log=print) -> FittedPrior:
    """Fit, round and write coder 3's prior for ``cfg.weights``. A prior written into the
    package's weights folder is listed in SHA256SUMS; one written beside weights of your own
    keeps the prior it replaces (as MODEL.coder3-KEY.safetensors), so files coded with that one
    still decode."""
    from tokcodec.model.presets import resolve_name
    from tokcodec.model.zoo import is_weights_file, load_tokenizer, weights_sha256

    own = is_weights_file(cfg.weights)
    stem = Path(cfg.weights).stem if own else resolve_name(cfg.weights)
    out = cfg.output or (c3.prior_path(Path(cfg.weights)) if own else c3.WEIGHTS_DIR / f"{stem}.coder3.safetensors")
    sha = weights_sha256(cfg.weights)
    if not cfg.force:  # before the minutes of fitting
        refuse_to_orphan(out, sha)
    if cfg.data:
        from tokcodec.io import media_files

        media_files(cfg.data)  # (a --data without videos fails now, not after the procedural clips)
    sets = []
    for size, count in (((360, 640), cfg.clips360), ((128, 128), cfg.clips128)):
        if count <= 0:
            continue
        cache = cfg.tokens_cache / f"train{size[0]}.npy" if cfg.tokens_cache else None
        if cache is not None and cache.exists():
            arr = np.load(cache)
        else:
            log(f"tokens of {count} procedural clips at {size[1]}x{size[0]}")
            arr, _ = training_tokens(cfg.weights, size, count, cfg.seed)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.save(cache, arr)
        sets.append(arr.astype(np.int64))
    if cfg.corpus is not None:
        sets += real_tokens(cfg.weights, cfg.corpus, cfg.clips_real, cfg.seed)
    if cfg.data:
        log(f"tokens of {cfg.clips_data} windows of {', '.join(map(str, cfg.data))}")
        sets += data_tokens(cfg.weights, cfg.data, cfg.clips_data, cfg.seed, log=log)
    if not sets:
        raise ValueError("nothing to fit on: no procedural clips and no data")
    bits = int(load_tokenizer(cfg.weights, "cpu").config.bits)
    x, y, _ = dataset(sets, bits)
    log(f"fitting on {len(x)} tokens, {x.shape[1]} features, model {sha[:16]}...")
    arrays = quantise(fit(x, y, bits, cfg.hidden, cfg.epochs, cfg.seed, log), bits)
    kept = None
    if own and cfg.output is None:  # beside your weights: the new prior is whole before the old one moves
        part = out.with_name(out.name + ".part")
        save(arrays, sha, part)
        kept = keep_replaced(out, sha, c3.load_prior(part).key)
        part.replace(out)
    else:
        save(arrays, sha, out)
    log(f"wrote {out}" + (f"; the prior it replaces is kept as {kept} (files coded with it still decode)"
                          if kept else ""))
    if out.parent.resolve() == c3.WEIGHTS_DIR.resolve():
        c3.shipped_priors.cache_clear()
    elif own:
        c3.use_priors_beside(Path(cfg.weights), sha)
    sample = [g for arr in sets for g in arr][::max(1, sum(map(len, sets)) // 8)][:8]
    coder3 = coder2 = math.nan
    in_use = c3.prior_for_model(sha)
    if in_use is not None and in_use.key == c3.load_prior(out).key:  # (an -o elsewhere is not in use)
        coder3, coder2 = coded_rate(sample, bits, sha)[0], coder2_rate(sample, bits)
        change = f"{1 - coder3 / coder2:.0%} fewer" if coder3 <= coder2 else f"{coder3 / coder2 - 1:.0%} more"
        log(f"coder 3 with it: {coder3:.3f} bits/token; coder 2, without it: {coder2:.3f} "
            f"({change} bits; on {len(sample)} of the clips it was fitted on)")
    if out.parent.resolve() == c3.WEIGHTS_DIR.resolve():
        for name, arr in zip(("360x640", "128x128", "real"), sets):
            log(f"coded, training {name}: %.3f bits/token (first %.3f, later %.3f)" % coded_rate(arr[:4], bits, sha))
        if cfg.report_validation:
            for size in ((360, 640), (128, 128)):
                cache = cfg.tokens_cache / f"val{size[0]}.npy" if cfg.tokens_cache else None
                val = np.load(cache) if cache is not None and cache.exists() else validation_tokens(cfg.weights, size)
                log(f"coded, validation {size[0]}x{size[1]}: %.3f bits/token (first %.3f, later %.3f)"
                    % coded_rate(val.astype(np.int64), bits, sha))
    return FittedPrior(out, kept, len(x), coder3, coder2)


def keep_replaced(path: Path, sha256: str, new_key: bytes) -> Path | None:
    """Before a prior beside weights of your own is replaced: rename it to the name an earlier
    fit is kept under (MODEL.coder3-KEY.safetensors), when it was fitted for these weights (files
    coded with them may name it) and differs from the new one (key ``new_key``). A prior of other
    weights is simply replaced."""
    try:
        previous = c3.load_prior(path)
    except (OSError, FormatError):
        return None
    if previous.model_sha256 != sha256 or previous.key == new_key:
        return None
    kept = c3.kept_prior_path(path.with_name(path.name.removesuffix(c3.PRIOR_SUFFIX) + ".safetensors"), previous.key)
    path.replace(kept)
    return kept


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tokcodec.codec.prior_fit", description=__doc__.split("\n\n")[0])
    defaults = PriorFitConfig()
    for f in fields(PriorFitConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            ap.add_argument(flag, action="store_true")
        elif f.name == "output":
            ap.add_argument("-o", flag, type=Path)
        elif f.name in ("corpus", "tokens_cache"):
            ap.add_argument(flag, type=Path)
        elif f.name == "data":
            ap.add_argument(flag, type=Path, nargs="+", default=())
        else:
            ap.add_argument(flag, type=type(default), default=default)
    args = ap.parse_args(argv)
    import torch

    from tokcodec.errors import TokcodecError

    torch.set_num_threads(1)  # (a maintainer's fit runs beside training: one core)
    args.data = tuple(args.data)
    try:
        fit_prior(PriorFitConfig(**{f.name: getattr(args, f.name) for f in fields(PriorFitConfig)}))
    except TokcodecError as exc:
        print(f"tokcodec: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
