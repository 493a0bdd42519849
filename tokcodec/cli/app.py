"""The `tokcodec` commands: each parses its options and calls the library."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from tokcodec.cli.options import (Bitrate, Bpp, Compile, DecodeModel, Device, Gop, Model, NoAudioDecode,
                                  NoAudioEncode, NoCorrection, NoDetail, Overwrite, Passes, Precision, Quiet,
                                  Rdo, KeyInterval, Refine, Scale, Sharpen)
from tokcodec.cli.policy import errors
from tokcodec.cli.progress import frame_progress, staged_progress, stats_line
from tokcodec.defaults import DEFAULT_KEY_INTERVAL, DEFAULT_PASSES

TARGET_TOLERANCE = 0.1  # encode warns when a target rate is missed by more than this share

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Learned video codec: video <-> 18-bit MAGVIT-v2 tokens in a .tok container.")

HEAVY_COMMANDS = {"encode", "decode", "train", "bench", "batch"}
CODING_COMMANDS = {"encode", "decode", "bench", "batch"}  # train sets its own threads (config)


@app.command()
def encode(
    input: Path = typer.Argument(..., help="Video or image file (anything ffmpeg reads)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .tok file."),
    model: Model = "default",
    gop: Gop = None,
    scale: Scale = None,
    bpp: Bpp = None,
    bitrate: Bitrate = None,
    device: Device = "auto",
    precision: Precision = "auto",
    coder: Optional[int] = typer.Option(None, "--coder", help="Entropy coder id (default: the best available)."),
    passes: Passes = DEFAULT_PASSES,
    rdo: Rdo = None,
    refine: Refine = 0,
    no_correction: NoCorrection = False,
    no_detail: NoDetail = False,
    sharpen: Sharpen = None,
    key_interval: KeyInterval = DEFAULT_KEY_INTERVAL,
    compile: Compile = False,
    frames: Optional[int] = typer.Option(None, "--frames", help="Encode at most this many frames."),
    no_audio: NoAudioEncode = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Encode a video into a .tok file (its first audio stream is kept beside the tokens)."""
    with errors():
        from tokcodec.codec.correction import CorrectionConfig
        from tokcodec.codec.pipeline import encode_video
        from tokcodec.codec.ratecontrol import parse_bitrate
        from tokcodec.io import probe
        target_bitrate = parse_bitrate(bitrate) if bitrate is not None else None
        total = probe(input).frame_count or None
        if frames and total:
            total = min(total, frames)
        stages = [("rate plan", None)] if bpp is not None or bitrate is not None else []
        with staged_progress(stages + [("encode", total)], quiet) as (*plan_advance, advance):
            st = encode_video(input, output, model=model, gop=gop, device=device, precision=precision,
                              scale=scale, coder_id=coder, overwrite=overwrite, progress=advance,
                              max_frames=frames, audio=not no_audio, refine=refine, passes=passes,
                              correction=CorrectionConfig(enabled=not no_correction, detail=not no_detail,
                                                           sharpen=sharpen),
                              compile=compile, rdo=rdo, key_interval=key_interval, bpp=bpp,
                              bitrate=target_bitrate, plan_progress=plan_advance[0] if plan_advance else None)
        settings = f", GOP {st.gop}" if st.gop != 17 else ""
        settings += f", scale {st.scale:g}" if st.scale != 1 else ""
        settings += f", passes {st.passes}" if st.passes else ""
        if st.rdo_range is not None and st.rdo_range[0] != st.rdo_range[1]:
            settings += f", rdo {st.rdo_range[0]:.2f}-{st.rdo_range[1]:.2f} (mean {st.rdo:.2f})"
        elif st.rdo_range is not None:
            settings += f", rdo {st.rdo:.2f}"
        elif st.rdo:
            settings += f", rdo {st.rdo:g}"
        settings += f", refine {st.refine}" if st.refine else ""
        settings += f", correction {st.correction_bytes} bytes" if st.correction_bytes else ", no correction"
        settings += f", sharpen {st.sharpen:g}" if st.sharpen else ""
        settings += f", linked {st.linked_gops}/{st.gops} GOPs" if st.linked_gops else ""
        target = ""
        if st.target_bpp is not None:
            target = (f", video {st.video_bpp:.4f} bpp for a target of {st.target_bpp:.4f} "
                      f"(rate plan {st.plan_seconds:.1f} s)")
        stats_line(f"encoded {st.frames} frames {st.width}x{st.height} -> {st.output}: {st.bytes} bytes, "
                    f"{st.bpp:.4f} bpp, {st.bits_per_token:.2f} bits/token, {st.fps:.1f} fps{target} "
                    f"({st.model}, {st.device} {st.precision}{settings}); audio: {st.audio}", quiet)
        if st.target_bpp is not None and abs(st.video_bpp / st.target_bpp - 1) > TARGET_TOLERANCE:
            advice = ("a smaller --scale or a longer --gop goes lower" if st.video_bpp > st.target_bpp
                      else "a larger --scale or --passes/--refine spend more")
            typer.echo(f"tokcodec: warning: the video took {st.video_bpp:.4f} bpp, "
                       f"{st.video_bpp / st.target_bpp - 1:+.0%} off the target {st.target_bpp:.4f}: "
                       f"beyond what the rate plan reaches on this input ({advice})", err=True)


def _gop_batch(value: str) -> str:
    """Checks --gop-batch at parse time (a usage error unless "auto" or a whole number >= 1)."""
    if value != "auto" and not (value.isdigit() and int(value) >= 1):
        raise typer.BadParameter(f"'auto' or a whole number >= 1, not {value!r}")
    return value


@app.command()
def decode(
    input: Path = typer.Argument(..., help="A .tok file."),
    output: Path = typer.Option(..., "-o", "--output", help=".mp4 (H.264), .mkv (lossless FFV1), .y4m, .png or a directory of PNGs."),
    model: DecodeModel = None,
    device: Device = "auto",
    precision: Precision = "auto",
    compare: Optional[Path] = typer.Option(None, "--compare", help="Report PSNR and colour drift against this original."),
    no_audio: NoAudioDecode = False,
    salvage: bool = typer.Option(False, "--salvage", help="Decode the intact GOPs of a damaged file; lost "
                                 "frames repeat the last good one (black before it) and are listed."),
    gop_batch: str = typer.Option("auto", "--gop-batch", callback=_gop_batch,
                                  help="GOPs decoded by the network at once, or auto: 1 on CPU, on "
                                  "CUDA as many as half the free memory holds."),
    compile: Compile = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Decode a .tok file back to video (with its audio in .mp4/.mkv outputs)."""
    with errors():
        from tokcodec.codec.pipeline import compare_videos, decode_video, open_tok
        from tokcodec.codec.salvage import open_salvage
        with (open_salvage(input) if salvage else open_tok(input)) as reader:
            total = reader.frame_count
        with frame_progress("decode", total, quiet) as advance:
            st = decode_video(input, output, model=model, device=device, precision=precision,
                              overwrite=overwrite, progress=advance, audio=not no_audio, salvage=salvage,
                              gop_batch=gop_batch if gop_batch == "auto" else int(gop_batch),
                              compile=compile)
        for problem in st.problems:
            typer.echo(f"tokcodec: warning: {problem}", err=True)
        batch = f", {st.gop_batch} GOPs per call" if st.gop_batch > 1 else ""
        line = (f"decoded {st.frames} frames {st.width}x{st.height} -> {st.output}, {st.fps:.1f} fps "
                f"({st.device} {st.precision}{batch}); audio: {st.audio}")
        if st.lost_frames:
            ranges = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in st.lost_frames)
            lost = sum(b - a + 1 for a, b in st.lost_frames)
            line += f"; LOST {lost} frames ({ranges}), filled by repeating the last good frame (black before any)"
        elif salvage:
            line += "; no frames lost"
        if compare is not None:
            cmp = compare_videos(compare, output)
            line += f", PSNR {cmp['psnr']:.2f} dB, colour drift {cmp['colour_drift']:.1f} vs {compare}"
        stats_line(line, quiet)


@app.command()
def info(
    input: Path = typer.Argument(..., help="A .tok file."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show the header, chunks, sizes, bpp and bits per token of a .tok file."""
    with errors():
        from tokcodec.codec.info import file_info
        info = file_info(input)
        if as_json:
            typer.echo(json.dumps(info.to_dict(), indent=2))
            return
        h, later = info.header, info.bits_per_token_later_latent_frames
        lines = [
            f"file        {info.file}  (format {h.version[0]}.{h.version[1]})",
            f"video       {info.width}x{info.height}, {info.frames} frames at "
            f"{h.frame_rate.numerator}/{h.frame_rate.denominator} fps ({info.duration_seconds:.2f} s)",
            f"coded       {h.coded_width}x{h.coded_height} padded to {h.padded_width}x{h.padded_height}, "
            f"GOP {h.gop}, compression {h.temporal_factor}x{h.spatial_factor}x{h.spatial_factor}, "
            f"{h.bits} bits/token",
            f"model       {h.model_name}  sha256 {h.weights_sha256[:16]}...  ({h.precision})"
            + ("  [UNTRAINED weights: output is not a real reconstruction]" if info.untrained_model else ""),
            f"coder       {info.coder} (id {h.coder_id})",
            f"size        {info.bytes} bytes, {info.bpp:.4f} bpp, {info.kbps:.1f} kbit/s",
            f"tokens      {info.tokens}, {info.bits_per_token:.2f} bits/token "
            f"(payload {info.payload_bits_per_token:.2f}; first latent frame "
            f"{info.bits_per_token_first_latent_frame:.2f}"
            + (f", later {later:.2f}" if later is not None else "") + ")",
            "correction  " + (f"{info.correction_bytes} bytes ({100 * info.correction_bytes / max(1, info.bytes):.1f}% "
                              "of the file)" if h.correction else "none (format 1.x: tokens only)"),
            f"chunks      {info.chunks_count}",
        ]
        a = info.audio
        lines.insert(-1, "audio       none" if a is None else
                     f"audio       {a.codec} {a.sample_rate} Hz {a.channels} ch, "
                     f"{a.duration_seconds:.2f} s from {a.start_offset_seconds:+.3f} s, {a.bytes} bytes")
        for c in info.chunks:
            per = " ".join(f"{b:.1f}" for b in c.bits_per_token_by_latent_frame)
            lines.append(f"  #{c.index:<5} frames {c.first_frame}-{c.first_frame + c.frames - 1}  "
                         f"{c.bytes} bytes  {c.bits_per_token:.2f} bits/token  [per latent frame: {per}]"
                         + ("  linked" if c.linked else "")
                         + (f"  + correction {c.correction_bytes} bytes" if h.correction else ""))
        typer.echo("\n".join(lines))


@app.command()
def verify(
    files: list[Path] = typer.Argument(..., help=".tok files to check."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Weights to check the files against "
                                        "(default: the preset each file names)."),
    fast: bool = typer.Option(False, "--fast", help="Check container checksums only, not the coded tokens."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only bad files."),
) -> None:
    """Check every checksum and the weights hash of .tok files without decoding video.
    Exit status 0 when all are good, 1 when any is bad."""
    with errors():
        from tokcodec.codec.verify import verify_file
        bad = 0
        for path in files:
            report = verify_file(path, model=model, tokens=not fast)
            bad += not report.ok
            if as_json:
                typer.echo(json.dumps(report.to_dict()))
            elif report.ok and not quiet:
                typer.echo(f"{path}: OK ({report.frames} frames, {report.chunks} chunks, model {report.model})")
            elif not report.ok:
                typer.echo(f"{path}: BAD: " + "; ".join(report.problems))
        if bad:
            raise typer.Exit(1)


@app.command()
def tokens(
    input: Path = typer.Argument(..., help="A .tok file."),
    output: Path = typer.Option(..., "-o", "--output", help="OUT.npy or OUT.safetensors."),
    split: Optional[int] = typer.Option(None, "--split", help="Factorise each token into sub-tokens of this many bits (e.g. 9)."),
    overwrite: Overwrite = False,
) -> None:
    """Export the token indices without running the decoder network."""
    with errors():
        from tokcodec.tokens import export_tokens
        shape = export_tokens(input, output, split_bits=split, overwrite=overwrite)
        typer.echo(f"wrote tokens {tuple(shape)} -> {output}", err=True)


@app.command()
def models() -> None:
    """List the model presets, their compression and whether trained weights ship."""
    with errors():
        from tokcodec.model.presets import DEFAULT_PRESET, PRESETS
        from tokcodec.model.zoo import kept_versions, parameter_count, shipped_weights_path, weights_exist
        for name, cfg in PRESETS.items():
            t, s, _ = cfg.compression
            trained = "trained weights" if weights_exist(shipped_weights_path(name)) else "untrained"
            if kept := kept_versions(name):
                trained += f" (earlier ones kept for old files: {', '.join(kept)})"
            default = " (default)" if name == DEFAULT_PRESET else ""
            typer.echo(f"{name:10s}{default:10s} {t}x{s}x{s}, {cfg.bits} bits, "
                       f"{parameter_count(cfg) / 1e6:5.2f} M parameters, {trained}: {cfg.description}")


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML, YAML or JSON training config (e.g. a run's train_config.json)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT_DIR/checkpoint.pt (without --config: "
                                "with the settings the run was started with, and the options given)."),
    out_dir: Optional[str] = typer.Option(None, "--out-dir", help="Run directory (checkpoints, metrics.jsonl); default runs/PRESET."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Model preset to train (default: a resumed run's own, else that of --init, "
                                         "else the default preset)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Total optimizer steps."),
    data: Optional[list[str]] = typer.Option(None, "--data", help="'synthetic' and/or folders of videos/images (repeatable)."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="Stop with a checkpoint after this long."),
    init: Optional[str] = typer.Option(None, "--init", help="Start from these weights (preset name or .safetensors), "
                                       "e.g. to fine-tune the shipped model or grow it into a deeper "
                                       "preset (--preset); ignored with --resume."),
    device: Optional[str] = typer.Option(None, "--device", help="auto (CUDA when present), cpu, cuda or cuda:N."),
    quiet: bool = typer.Option(False, "-q", "--quiet"),
) -> None:
    """Train a tokenizer (runs under torchrun with DDP when launched with several processes)."""
    with errors():
        from tokcodec.train.trainer import TrainConfig, resumed_config, train as run_training
        overrides = {k: v for k, v in {"out_dir": out_dir, "preset": preset, "steps": steps,
                                       "sources": tuple(data) if data else None,
                                       "max_minutes": max_minutes, "init_weights": init,
                                       "device": device}.items() if v is not None}
        if config:
            cfg = TrainConfig.from_file(config).updated(overrides)
        elif resume:  # continue the run as it was configured
            cfg = resumed_config(overrides)
        else:
            cfg = TrainConfig().updated(overrides)
        run_training(cfg, resume=resume, progress=not quiet)


@app.command("export-weights")
def export_weights(
    checkpoint: Path = typer.Argument(..., help="A training checkpoint.pt."),
    output: Path = typer.Option(..., "-o", "--output", help="OUT.safetensors"),
    fp32: bool = typer.Option(False, "--fp32", help="Keep fp32 (default: fp16)."),
    raw: bool = typer.Option(False, "--raw", help="The trained weights themselves, not their EMA."),
    overwrite: Overwrite = False,
) -> None:
    """Export a checkpoint's EMA weights (or with --raw the trained weights) as a safetensors file
    usable with --model."""
    with errors():
        from tokcodec.codec.outputs import check_output
        from tokcodec.train.trainer import export_weights
        check_output(output, overwrite)
        digest = export_weights(checkpoint, output, fp16=not fp32, ema=not raw)
        typer.echo(f"wrote {output} (sha256 {digest})", err=True)


def _register_commands() -> None:
    from tokcodec.cli.batch import batch_app
    from tokcodec.cli.bench import bench

    app.command(help="Rate-distortion bench against x265, vvenc, SVT-AV1 and x264 via ffmpeg.")(bench)
    app.add_typer(batch_app, name="batch")


_register_commands()


def _maybe_reexec() -> None:
    """Heavy commands run faster with glibc keeping big buffers mapped (measured 1.3-3.5x here);
    the setting must be in the environment before Python starts, so re-exec once with it."""
    from tokcodec.allocator import ALLOCATOR_POLICY, allocator_environment

    if sys.platform != "linux" or os.environ.get("TOKCODEC_NO_REEXEC") or set(ALLOCATOR_POLICY) <= set(os.environ):
        return
    if len(sys.argv) < 2 or sys.argv[1] not in HEAVY_COMMANDS:
        return
    env = {**allocator_environment(), "TOKCODEC_NO_REEXEC": "1"}
    try:
        os.execve(sys.executable, [sys.executable, "-m", "tokcodec", *sys.argv[1:]], env)
    except OSError:
        pass


def main() -> None:
    _maybe_reexec()
    try:
        if len(sys.argv) > 1 and sys.argv[1] in CODING_COMMANDS:
            from tokcodec.device import use_all_cores

            use_all_cores()
        app()
    except KeyboardInterrupt:  # e.g. during an import, before a command's own handler is active
        typer.echo("tokcodec: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
