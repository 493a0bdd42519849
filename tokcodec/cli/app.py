"""The `tokcodec` commands: each parses its options and calls the library."""
from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from tokcodec.cli.options import (AudioBitrate, AudioCodec, Bitrate, Bpp, Compare, Compile, DecodeFrames,
                                  DecodeModel, Deinterlace, Device, Duration, EncodeStart, Gop, GopBatch,
                                  KeyInterval, Model, NoAudioDecode, NoAudioEncode, NoCorrection, NoDetail,
                                  NoMetadataDecode, NoMetadataEncode, Overwrite, Passes, Precision, Quiet, Rdo,
                                  Refine, Scale, Scenecut, SequenceFps, Spool,
                                  Sharpen, Start, StatsJson, TokensGop, TokensPasses, TokensRdo, TokensRefine,
                                  TokensScale, TokensScenecut, audio_choice, read_by)
from tokcodec.cli.edit import concat, cut, split
from tokcodec.cli.policy import errors, expected_errors, reader_gone, stopped
from tokcodec.cli.progress import frame_progress, json_checked, json_text, staged_progress, stats_line
from tokcodec.cli.stdio import cli_path, input_file, reopen_closed_streams
from tokcodec.codec.outputs import STDIO, check_output, check_tok_output, remove_dead_parts
from tokcodec.codec.ranges import parse_time
from tokcodec.defaults import DEFAULT_KEY_INTERVAL, DEFAULT_PASSES, DEFAULT_SCENECUT, DEFAULT_TOKEN_SCENECUT
from tokcodec.env_flags import env_flag
from tokcodec.errors import ArgumentError, InputError, OutputError, why_not_a_file
from tokcodec.text import plural, printable

if TYPE_CHECKING:
    from tokcodec.codec.container import Header
    from tokcodec.codec.stats import DecodeStats, EncodeStats
    from tokcodec.stream_input import StreamedVideo


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Learned video codec: video <-> 18-bit MAGVIT-v2 tokens in a .tok container.")


def version_text() -> str:
    """``tokcodec --version``: this version and those of what a bug report needs (read from the
    installed packages' metadata: nothing heavy is imported)."""
    from importlib import metadata

    from tokcodec import __version__

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    parts = ", ".join(f"{name} {installed(name)}" for name in ("torch", "av", "numpy", "numba"))
    return f"tokcodec {__version__}\nPython {sys.version.split()[0]}, {parts}\n{cpus_text()}"


def cpus_text() -> str:
    """The CPUs tokcodec runs its threads on, and why that many (a bug report about speed)."""
    from tokcodec.cpus import cpu_quota, usable_cpus

    quota = cpu_quota()
    limit = f"CPU quota {quota:g}" if quota is not None else "no CPU quota"
    return f"CPUs: {usable_cpus()} usable of {os.cpu_count() or 1} ({limit})"


def _print_version(value: bool) -> None:
    if value:
        try:
            typer.echo(version_text())
        except BrokenPipeError:  # (click would exit 1 without a word; `--version >&-` says so)
            raise typer.Exit(reader_gone()) from None
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print the version (and torch's, PyAV's, ...) and exit.")) -> None:
    """(Options before the command: --version.)"""


HEAVY_COMMANDS = {"encode", "decode", "train", "bench", "batch", "tokens", "detokenize", "fit-prior"}
#: commands whose imports (torch, numba, typer's models: objects that live for good) run with the
#: garbage collector off, and whose work then runs with what those made frozen out of it: 0.3 s of
#: collections during the imports, and 0.6-0.7 s of them at exit, went on scanning those objects
#: (a 51-frame 640x360 decode: 4.45-4.53 -> 3.74-3.81 s a process, the same bytes)
GC_AFTER_IMPORTS = {"encode", "decode", "tokens", "detokenize"}
CODING_COMMANDS = {"encode", "decode", "bench", "batch", "tokens", "detokenize", "fit-prior"}  # train sets its own threads (config)


@app.command()
def encode(
    input: Path = typer.Argument(..., parser=cli_path,
                                 help="Video or image file (anything ffmpeg reads), a directory of numbered "
                                 "images (an image sequence), or - for standard input (a Y4M stream is encoded "
                                 "as it comes; see --spool)."),
    output: Path = typer.Option(..., "-o", "--output", parser=cli_path, metavar="<path>",
                                help="Output .tok file, or - for standard output."),
    model: Model = "default",
    gop: Gop = None,
    scale: Scale = None,
    bpp: Bpp = None,
    bitrate: Bitrate = None,
    device: Device = "auto",
    precision: Precision = "auto",
    coder: Optional[int] = typer.Option(None, "--coder", help="Entropy coder id, 1 to 4 (docs/FORMAT.md) "
                                        "\\[default: the best the model has: 4, GOPs linked; 3 with "
                                        "--key-interval 1]."),
    passes: Passes = DEFAULT_PASSES,
    rdo: Rdo = None,
    refine: Refine = 0,
    no_correction: NoCorrection = False,
    no_detail: NoDetail = False,
    sharpen: Sharpen = None,
    key_interval: KeyInterval = DEFAULT_KEY_INTERVAL,
    compile: Compile = False,
    start: EncodeStart = None,
    duration: Duration = None,
    frames: Optional[int] = typer.Option(None, "--frames", min=1, help="Encode at most this many frames."),
    scenecut: Scenecut = DEFAULT_SCENECUT,
    deinterlace: Deinterlace = "auto",
    fps: SequenceFps = None,
    no_audio: NoAudioEncode = False,
    audio_codec: AudioCodec = "auto",
    audio_bitrate: AudioBitrate = None,
    no_metadata: NoMetadataEncode = False,
    spool: Spool = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    as_json: StatsJson = False,
) -> None:
    """Encode a video into a .tok file (its first audio stream is kept beside the tokens), or part of it (--ss, -t, --frames)."""
    targeted = bpp is not None or bitrate is not None  # (a rate plan reads the input more than once)
    with errors(), input_file(input, check_output=lambda: json_checked(as_json, output) or
                              check_tok_output(output, overwrite, input), ends_at_interrupt=True,
                              y4m_as_it_comes=not targeted, spool=spool) as src:
        json_checked(as_json, output)
        check_tok_output(output, overwrite, src if isinstance(src, Path) else None)  # (before the input is probed and a bar drawn)
        audio = audio_choice(no_audio, audio_codec, audio_bitrate)
        from tokcodec.codec.correction import CorrectionConfig
        from tokcodec.codec.pipeline import encode_video
        from tokcodec.codec.ratecontrol import parse_bitrate
        target_bitrate = parse_bitrate(bitrate) if bitrate is not None else None
        total = _part_total(src, fps, start, duration, frames)
        stages = [("rate plan", None)] if targeted else []
        with staged_progress(stages + [("encode", total)], quiet or as_json) as (*plan_advance, advance):
            st = encode_video(src, output, model=model, gop=gop, device=device, precision=precision,
                              scale=scale, coder_id=coder, overwrite=overwrite, progress=advance,
                              max_frames=frames, audio=audio, refine=refine, passes=passes,
                              correction=CorrectionConfig(enabled=not no_correction, detail=not no_detail,
                                                           sharpen=sharpen),
                              compile=compile, rdo=rdo, key_interval=key_interval, bpp=bpp,
                              bitrate=target_bitrate, plan_progress=plan_advance[0] if plan_advance else None,
                              start=start, duration=duration, deinterlace=deinterlace, scenecut=scenecut, fps=fps,
                              metadata=not no_metadata)
        if isinstance(src, Path):
            _named_as_given(st, src, input)
        if str(output) != STDIO:
            remove_dead_parts(output)  # (what earlier runs killed outright left, hidden)
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
        settings += f", {plural(st.scene_cuts, 'GOP')} ended at a scene cut" if st.scene_cuts else ""
        settings += ", grey source: decodes grey" if st.grey else ""
        settings += ", deinterlaced" if st.deinterlaced else ""
        target = ""
        if st.target_bpp is not None:
            target = f" (target {st.target_bpp:.4f}, rate plan {st.plan_seconds:.1f} s)"
        # the rates are the video's: the audio's bytes (and the tags') are counted apart, as ffmpeg does
        others = [f"{name} {n}" for name, n in (("audio", st.audio_bytes), ("tags", st.tags_bytes)) if n]
        sizes = f"{st.bytes} bytes" + (f" (video {st.video_bytes}, {', '.join(others)}), video" if others else ",")
        if as_json:
            typer.echo(json_text(st.to_dict()))
        stats_line(f"encoded {plural(st.frames, 'frame')} {st.width}x{st.height} -> {_named(output)}: {sizes} "
                    f"{st.video_bpp:.4f} bpp{target}, {st.video_bits_per_token:.2f} bits/token, {st.fps:.1f} fps "
                    f"({st.model}, {st.device} {st.precision}{settings}); audio: {st.audio}", quiet or as_json)
        for warning in st.warnings:
            typer.echo(f"tokcodec: warning: {warning}", err=True)


def _named_as_given(st: EncodeStats | DecodeStats, src: Path, input: Path) -> None:
    """The stats of a run whose input ``src`` is a pipe's copy in a temporary file (not
    ``input``, as given): its input, warnings and problems name it as given ("stdin")."""
    from tokcodec.codec.stats import DecodeStats

    if src == input:
        return
    st.input = "stdin" if str(input) == STDIO else str(input)
    st.warnings = [w.replace(str(src), st.input) for w in st.warnings]
    if isinstance(st, DecodeStats):
        st.problems = [p.replace(str(src), st.input) for p in st.problems]


def _part_total(src: Path | StreamedVideo, fps: Optional[str], start: Optional[str], duration: Optional[str],
                frames: Optional[int]) -> Optional[int]:
    """The frames an encode of ``src`` (--ss, -t, --frames) will read, for its progress bar (None:
    not known before the end, as a stream's)."""
    from tokcodec.codec.pipeline import input_part, with_rate
    from tokcodec.io import probe
    from tokcodec.stream_input import StreamedVideo

    name = Path(src.name) if isinstance(src, StreamedVideo) else src
    info = src.info if isinstance(src, StreamedVideo) else probe(src)
    _, limit, info = input_part(name, with_rate(info, fps, name), start, duration, frames)
    return _bar_total(info.frame_count, limit)


def _checked(output: Path, overwrite: bool, compare: Optional[Path], as_json: bool = False) -> None:
    """The checks of a video output, made before any work (the library makes them again)."""
    from tokcodec.io import output_kind

    json_checked(as_json, output)
    if compare is not None and str(output) == STDIO:
        raise ArgumentError("--compare reads the decoded video back: give -o a file name, not -")
    output_kind(output)
    check_output(output, overwrite)


def _token_output_checked(output: Path, overwrite: bool) -> None:
    from tokcodec.tokens import check_token_output

    check_token_output(output, overwrite)


def _compared(output: Path, compare: Optional[Path], first_frame: int = 0) -> dict | None:
    """The comparison of a decoded ``output`` (which starts at the original's frame
    ``first_frame``) with its original (--compare), or None."""
    if compare is None:
        return None
    from tokcodec.codec.pipeline import compare_videos

    cmp = compare_videos(compare, output, reference_start=first_frame)
    start = f" from its frame {first_frame}" if first_frame else ""
    if cmp["rates"] is not None:
        theirs, ours = (f"{r:g} fps" for r in cmp["rates"])
        typer.echo(f"tokcodec: warning: --compare: the reference runs at {theirs}, the decode at {ours}; frames "
                   "are paired by number, so these figures compare different moments", err=True)
    elif cmp["longer"] == "reference":
        typer.echo(f"tokcodec: warning: --compare: the reference has more frames than the decode; compared "
                   f"the first {cmp['frames']} of the reference{start} with the decode's {cmp['frames']} (a file "
                   "encoded with --ss starts that far into its original: compare with that part of it)", err=True)
    elif cmp["longer"] == "decoded":
        typer.echo(f"tokcodec: warning: --compare: the decode has more frames than the reference; compared "
                   f"its first {cmp['frames']} with the reference's {cmp['frames']}{start}", err=True)
    # (RGB PSNR, as the bench's PSNR-RGB: ffmpeg's psnr filter reports Y, U and V of limited-range YUV)
    return {**cmp, "reference": str(compare), "reference_start": first_frame}


def _compared_text(compared: dict | None) -> str:
    """The stats line's words for a ``_compared`` result ('' without --compare)."""
    if compared is None:
        return ""
    return (f", PSNR-RGB {compared['psnr']:.2f} dB, colour drift {compared['colour_drift']:.1f} "
            f"vs {compared['reference']}")


def _bar_total(frames: int, limit: int | None) -> int | None:
    """The progress bar's total: the input's frames (0: unknown), at most the part asked for; the
    part alone where the input's count is unknown (`--frames 500` of a stream)."""
    return min(frames, limit) if frames and limit else frames or limit or None


def _decodes_as_it_comes(output: Path, salvage: bool, audio: bool, metadata: bool, frames: Optional[int],
                         header: Header) -> bool:
    """Whether `decode -` takes a .tok of this ``header`` as it comes (else a copy of it, made
    first): not for what needs the whole file first: a salvage, stored audio or tags that go into
    the output (they come after the video), an image output of a stream of unknown length
    (unless --frames 1)."""
    from tokcodec.codec.tok_stream import after_video
    from tokcodec.io import output_kind

    return not (salvage or after_video(header, output, audio, metadata)
                or (output_kind(output) == "image" and not header.frame_count and frames != 1))


def _named(output: Path) -> str:
    if str(output) == STDIO:
        return "stdout"
    return f"{output}/ (a directory of PNGs)" if not output.suffix and output.is_dir() else str(output)


@app.command()
def decode(
    input: Path = typer.Argument(..., parser=cli_path, help="A .tok file, or - for standard input."),
    output: Path = typer.Option(..., "-o", "--output", parser=cli_path, metavar="<path>",
                                help=".mp4 or .mov (H.264), .mkv (lossless FFV1), .y4m, .png, "
                                "a directory of PNGs, or - for a Y4M stream on standard output (| mpv -)."),
    model: DecodeModel = None,
    device: Device = "auto",
    precision: Precision = "auto",
    compare: Compare = None,
    no_audio: NoAudioDecode = False,
    no_metadata: NoMetadataDecode = False,
    salvage: bool = typer.Option(False, "--salvage", help="Decode the intact GOPs of a damaged file; lost "
                                 "frames repeat the last good one (black before it) and are listed."),
    gop_batch: GopBatch = "auto",
    compile: Compile = False,
    start: Start = None,
    duration: Duration = None,
    frames: DecodeFrames = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    as_json: StatsJson = False,
) -> None:
    """Decode a .tok file back to video (with its audio in .mkv/.mp4/.mov outputs), or part of it (--ss, -t, --frames)."""
    part = dict(start=start, duration=duration, frames=frames)
    with errors(), input_file(input, "a .tok file", check_output=lambda: _checked(output, overwrite, compare, as_json),
                              tok_as_it_comes=partial(_decodes_as_it_comes, output, salvage, not no_audio,
                                                      not no_metadata, frames)) as src:
        from tokcodec.codec.pipeline import UNKNOWN_END, check_reference, decode_part, decode_video, open_tok
        from tokcodec.codec.salvage import open_salvage
        from tokcodec.codec.tok_stream import TokStream
        _checked(output, overwrite, compare, as_json)
        streamed = isinstance(src, TokStream)
        with (contextlib.nullcontext(src) if streamed else open_salvage(src) if salvage else open_tok(src)) as reader:
            wanted = decode_part(reader, **part)
            total = None if wanted.stop == UNKNOWN_END else wanted.frames
            if compare is not None:
                check_reference(compare, reader.header.width, reader.header.height)
        with frame_progress("decode", total, quiet or as_json) as advance:
            st = decode_video(src, output, model=model, device=device, precision=precision,
                              overwrite=overwrite, progress=advance, audio=not no_audio, salvage=salvage,
                              gop_batch=gop_batch if gop_batch == "auto" else int(gop_batch),
                              compile=compile, metadata=not no_metadata, **part)
        if not streamed:
            _named_as_given(st, src, input)
        if str(output) != STDIO:
            remove_dead_parts(output)
        lost = sum(b - a + 1 for a, b in st.lost_frames)
        if lost:  # (said even with -q: the output is not the whole video)
            ranges = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in st.lost_frames)
            st.warnings.append(f"LOST {plural(lost, 'frame')} ({ranges}) of {st.frames}, filled by repeating the "
                               "last good frame (black before any)")
        for problem in st.problems + st.warnings:
            typer.echo(f"tokcodec: warning: {problem}", err=True)
        batch = f", {st.gop_batch} GOPs per call" if st.gop_batch > 1 else ""
        first = f" from frame {st.first_frame}" if st.first_frame else ""
        line = (f"decoded {plural(st.frames, 'frame')}{first} {st.width}x{st.height} -> {_named(output)}, {st.fps:.1f} fps "
                f"({st.device} {st.precision}{batch}); audio: {st.audio}"
                + (f"; tags: {st.tags}" if st.tags not in ("none", "written") else ""))
        if lost:
            line += f"; LOST {plural(lost, 'frame')}"
        elif salvage:
            line += "; no frames lost"
        compared = _compared(output, compare, st.first_frame)
        if as_json:
            typer.echo(json_text({**st.to_dict(), "compare": compared}))
        stats_line(line + _compared_text(compared), quiet or as_json)


app.command()(cut)   # (after decode in --help: the other commands that read a .tok)
app.command()(concat)
app.command()(split)


@app.command()
def info(
    inputs: list[Path] = typer.Argument(..., parser=cli_path,
                                        help="Files: .tok, token files (.npy, .safetensors) or weights files."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (a list for several files)."),
) -> None:
    """Show the header, chunks, sizes, bpp and bits per token of a .tok file (of a token file: its shape and what it records; of a weights file: its model, training record and priors)."""
    with errors():
        shown: list[tuple[dict, str]] = []
        failed = 0
        for input in inputs:
            try:
                shown.append(_info_of(input))
            except (*expected_errors(), OSError) as exc:
                if len(inputs) == 1:
                    raise
                typer.echo(f"tokcodec: error: {exc}", err=True)  # the others are still shown
                failed += 1
        if as_json:
            docs = [d for d, _ in shown]
            typer.echo(json.dumps(docs[0] if len(inputs) == 1 else docs, indent=2))
        elif shown:
            typer.echo(printable("\n\n".join(text for _, text in shown)))
        if failed:
            raise typer.Exit(1)


def _info_of(input: Path) -> tuple[dict, str]:
    """``info`` of one file: what --json prints, and the text."""
    if str(input) == STDIO:
        raise InputError("-: info reads a file, not standard input: give its path")
    if input.suffix.lower() == ".safetensors" and input.is_file():
        weights = _weights_info(input)
        if weights is not None:
            return weights
    if input.suffix.lower() in (".npy", ".safetensors"):
        return _token_file_info(input)
    return _tok_info(input)


def _tok_info(input: Path) -> tuple[dict, str]:
    from tokcodec.codec.info import file_info
    info = file_info(input)
    h, later = info.header, info.bits_per_token_later_latent_frames
    lines = [
        f"file        {info.file}  (format {h.version[0]}.{h.version[1]})",
        f"video       {info.width}x{info.height}, {plural(info.frames, 'frame')} at "
        f"{h.frame_rate.numerator}/{h.frame_rate.denominator} fps ({info.duration_seconds:.2f} s)"
        + (", grey (decodes grey)" if h.grey else ""),
        f"coded       {h.coded_width}x{h.coded_height} padded to {h.padded_width}x{h.padded_height}, "
        f"GOP {h.gop}, compression {h.temporal_factor}x{h.spatial_factor}x{h.spatial_factor}, "
        f"{h.bits} bits/token",
        f"model       {h.model_name}  sha256 {h.weights_sha256[:16]}...  ({h.precision})"
        + ("  [UNTRAINED weights: output is not a real reconstruction]" if info.untrained_model else ""),
        f"coder       {info.coder} (id {h.coder_id})" + _without_prior(info),
        f"size        {info.bytes} bytes, "
        + (f"{info.kbps:.1f} kbit/s; video {info.video_bytes} bytes, " if info.video_bytes != info.bytes else "")
        + f"{info.video_bpp:.4f} bpp, {info.video_kbps:.1f} kbit/s",
        f"tokens      {info.tokens}, {info.video_bits_per_token:.2f} bits/token "
        f"(payload {info.payload_bits_per_token:.2f}; first latent frame "
        f"{info.bits_per_token_first_latent_frame:.2f}"
        + (f", later {later:.2f}" if later is not None else "") + ")",
        "correction  " + (f"{info.correction_bytes} bytes ({100 * info.correction_bytes / max(1, info.video_bytes):.1f}% "
                          "of the video)" if h.correction else "none (format 1.x: tokens only)"),
        f"chunks      {info.chunks_count}",
    ]
    a = info.audio
    lines.insert(-1, "audio       none" if a is None else
                 f"audio       {a.codec} {a.sample_rate} Hz {a.channels} ch, "
                 f"{a.duration_seconds:.2f} s from {a.start_offset_seconds:+.3f} s, {a.bytes} bytes")
    if info.tags_damaged:
        lines.insert(-1, f"tags        DAMAGED: {info.tags_damaged}")
    for i, line in enumerate(info.tags.summary() if info.tags else []):
        lines.insert(-1, f"{'tags' if i == 0 else '':<12}{line}")
    for c in info.chunks:
        per = " ".join(f"{b:.1f}" for b in c.bits_per_token_by_latent_frame)
        lines.append(f"  #{c.index:<5} frames {c.first_frame}-{c.first_frame + c.frames - 1}  "
                     f"{c.bytes} bytes  {c.bits_per_token:.2f} bits/token  [per latent frame: {per}]"
                     + ("  linked" if c.linked else "")
                     + (f"  + correction {c.correction_bytes} bytes" if h.correction else ""))
    return info.to_dict(), "\n".join(lines)


def _without_prior(info) -> str:
    """The coder line's note on chunks coded by coder 2 inside coders 3 and 4's payloads."""
    n = sum(c.without_prior for c in info.chunks)
    if not n:
        return ""
    return (f"; {n} of {info.chunks_count} chunks by coder 2 inside (near-static content, or weights "
            "without a coder-3 prior: tokcodec fit-prior)")


def _runs(values: list[int]) -> str:
    """[5, 5, 5, 3] -> '5 x3, 3': a long list of GOP lengths in a line."""
    parts: list[list[int]] = []
    for v in values:
        if parts and parts[-1][0] == v:
            parts[-1][1] += 1
        else:
            parts.append([v, 1])
    return ", ".join(f"{v} x{n}" if n > 1 else str(v) for v, n in parts)


def _weights_info(path: Path) -> tuple[dict, str] | None:
    """``info`` of a tokcodec weights file (None when the file is not one)."""
    from tokcodec.model.zoo import weights_info

    d = weights_info(path)
    if d is None:
        return None
    meta = d["metadata"]
    lines = [f"file        {d['file']}  (tokcodec weights{', shipped' if d['shipped'] else ''})",
             f"model       preset {d['preset']}, {d['parameters'] / 1e6:.2f} M parameters ({', '.join(d['dtypes'])}), "
             f"sha256 {d['sha256'][:16]}...",
             "training    " + ", ".join(f"{k} {v}" for k, v in meta.items()) if meta else "training    not recorded"]
    if d["shipped"]:
        lines.append("prior       shipped with it (weights/SHA256SUMS)")
    elif not d["priors"]:
        lines.append(f"prior       none beside it: `tokcodec fit-prior {path}` fits one (without it, larger files)")
    for prior in [] if d["shipped"] else d["priors"]:
        role = "current" if prior["current"] else "kept"
        lines.append(f"prior       {prior['file']}  ({role}; key {prior['key'] or '-'}; {prior['note']})")
    return d, "\n".join(lines)


def _token_file_info(path: Path) -> tuple[dict, str]:
    from tokcodec.tokens import read_token_file

    d = read_token_file(path, header_only=True).to_dict()
    unknown = "not recorded"
    split = f", sub-tokens of {d['split_bits']} bits" if d["split_bits"] else ""
    lines = [f"file        {d['file']}  (token file)",
             f"tokens      {' x '.join(map(str, d['shape']))} {d['dtype']}{split}, "
             + (f"{d['bits']} bits/token" if d["bits"] else "bits not recorded"),
             "GOPs        " + (f"{d['gops']}: latent frames {_runs(d['gop_latent_frames'])}"
                               + (f", frames {_runs(d['gop_frames'])}" if d["gop_frames"] else "")
                               if d["gops"] is not None else f"{unknown} (decoded in GOPs of --gop frames)"),
             "model       " + (f"{d['model']}  sha256 {d['weights_sha256'][:16]}..." if d["weights_sha256"]
                               else f"{unknown} (decoded by --model)"),
             "video       " + (f"{d['size'][0]}x{d['size'][1]}" if d["size"] else unknown)
             + (f", {d['frames']} frames" if d["frames"] is not None else "")
             + (f" at {d['frame_rate']} fps" if d["frame_rate"] else "")]
    latent, th, tw = d["shape"][:3]
    coded = f" (coded {d['coded_size'][0]}x{d['coded_size'][1]})" if d["coded_size"] else ""
    rate = f", {d['tokens_per_second']:,.0f} a second of video" if d["tokens_per_second"] else ""
    lines.append(f"grid        {tw}x{th} tokens a latent frame{coded}, {latent * th * tw:,} tokens{rate}")
    made = d["made"]
    if made:
        lines.append("made        " + ", ".join(f"{k} {v}" for k, v in made.items()))
    return d, "\n".join(lines)


def _tok_files(paths: list[Path]) -> list[Path]:
    """``paths`` with each folder replaced by the .tok files under it (a batch's tree), sorted;
    a folder without one is an error."""
    out: list[Path] = []
    for path in paths:
        if not os.path.isdir(path):  # (Path.is_dir raises where a name is too long: verify says so)
            out.append(path)
            continue
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".tok" and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        # (hidden files and folders left out, as batch leaves them: its temporary files, .Trash)
        if not found:
            raise InputError(f"{path}: a folder without .tok files")
        out.extend(found)
    return out


@app.command(short_help="Check every checksum and the weights hash of .tok files, without decoding video.")
def verify(
    files: list[Path] = typer.Argument(..., parser=cli_path,
                                       help=".tok files to check, or folders: every .tok under them."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Weights to check the files against "
                                        "(default: the preset each file names)."),
    fast: bool = typer.Option(False, "--fast", help="Check container checksums only, not the coded tokens."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file, a line each (JSON Lines)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only bad files (with --json too)."),
) -> None:
    """Check every checksum and the weights hash of .tok files without decoding video.
    Exit status 0 when all are good, 1 when any is bad (a missing file or weights that cannot be
    read included: its line says why), 2 when verify itself failed (a folder without .tok files,
    an unexpected error)."""
    with errors(code=2):
        if any(str(f) == STDIO for f in files):  # (as info: a .tok is checked where it lies)
            raise InputError("-: verify reads files, not standard input: give their paths")
        from tokcodec.codec.verify import verify_file
        bad = 0
        for path in _tok_files(files):
            report = verify_file(path, model=model, tokens=not fast)
            bad += not report.ok
            if report.ok and quiet:
                continue
            if as_json:
                typer.echo(json.dumps(report.to_dict()))
            elif report.ok:
                typer.echo(f"{path}: OK ({plural(report.frames, 'frame')}, {plural(report.chunks, 'chunk')}, "
                           f"model {report.model})")
            else:
                typer.echo(f"{path}: BAD: " + "; ".join(p.removeprefix(f"{path}: ") for p in report.problems))
        if bad:
            raise typer.Exit(1)


@app.command()
def tokens(
    input: Path = typer.Argument(..., parser=cli_path,
                                 help="A .tok file, or a video, image or image sequence (a directory of "
                                 "numbered images) to tokenize (as tokens alone, encode --no-correction); - for "
                                 "standard input."),
    output: Path = typer.Option(..., "-o", "--output", parser=cli_path, metavar="<path>",
                                help="OUT.npy or OUT.safetensors (which also records "
                                "what detokenize needs: GOPs, model, frame rate, size)."),
    split: Optional[int] = typer.Option(None, "--split", min=1, help="Factorise each token into sub-tokens of this many bits (e.g. 9)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", show_default=False,
                                        help="Of a video: preset name or a .safetensors weights file \\[default: default]. "
                                             "Of a .tok made with weights of your own: that file (its coder-3 "
                                             "prior lies beside it)."),
    gop: TokensGop = None,
    scale: TokensScale = None,
    passes: TokensPasses = None,
    rdo: TokensRdo = None,
    refine: TokensRefine = 0,
    start: Optional[str] = typer.Option(None, "--ss", callback=read_by(parse_time), show_default=False,
                                        help="Of a video: start at this time, as encode --ss."),
    duration: Optional[str] = typer.Option(None, "-t", "--duration", callback=read_by(parse_time),
                                           show_default=False, help="Of a video: this long, as encode -t."),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, help="Of a video: tokenize at most this many frames."),
    scenecut: TokensScenecut = DEFAULT_TOKEN_SCENECUT,
    deinterlace: Deinterlace = "auto",
    fps: SequenceFps = None,
    device: Device = "auto",
    precision: Precision = "auto",
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Token indices for language models: of a .tok file (no network run), or of a video."""
    with errors(), input_file(input, "a video or a .tok file",
                              check_output=lambda: _token_output_checked(output, overwrite), y4m_as_it_comes=True) as src:
        from tokcodec.codec.container import is_tok_file
        from tokcodec.tokens import bare_array_warning, check_token_output, token_file_of, tokenize, write_token_file
        if isinstance(src, Path) and is_tok_file(src):
            given = [name for name, value in (("--gop", gop), ("--scale", scale),
                                              ("--passes", passes), ("--rdo", rdo), ("--refine", refine or None),
                                              ("--ss", start), ("-t", duration), ("--frames", frames),
                                              ("--deinterlace", None if deinterlace == "auto" else deinterlace),
                                              ("--scenecut", None if scenecut == DEFAULT_TOKEN_SCENECUT else scenecut),
                                              ("--fps", fps))
                     if value is not None]
            if given:
                verb = "applies" if len(given) == 1 else "apply"
                raise ArgumentError(f"{input} is a .tok file: {', '.join(given)} {verb} only to a video, image or "
                                 "image sequence input")
            check_token_output(output, overwrite)  # (before the file is read)
            tokenized = token_file_of(src, model)
            shape = write_token_file(tokenized, output, split_bits=split, overwrite=overwrite)
        else:
            check_token_output(output, overwrite)
            if split is not None and not Path(model or "").suffix:  # a preset: check --split before the encode
                from tokcodec.model.presets import get_preset
                from tokcodec.tokens import check_split
                check_split(get_preset(model or "default").bits, split)
            total = _part_total(src, fps, start, duration, frames)
            with frame_progress("tokenize", total, quiet) as advance:
                tokenized = tokenize(src, model=model or "default", gop=gop, scale=scale, passes=passes,
                                     rdo=rdo, refine=refine, max_frames=frames, device=device, precision=precision, progress=advance,
                                     start=start, duration=duration, deinterlace=deinterlace, scenecut=scenecut,
                                     fps=fps)
            shape = write_token_file(tokenized, output, split_bits=split, overwrite=overwrite)
            for warning in tokenized.warnings:
                typer.echo(f"tokcodec: warning: {warning}", err=True)
        if (bare := bare_array_warning(tokenized, output)) is not None:
            typer.echo(f"tokcodec: warning: {bare}", err=True)
        if not quiet:
            typer.echo(f"wrote tokens {tuple(shape)} -> {output}", err=True)


@app.command()
def detokenize(
    input: Path = typer.Argument(..., parser=cli_path,
                                 help="Tokens: OUT.safetensors as `tokcodec tokens` writes it, or a .npy "
                                 "array (latent frames, h, w) of token indices, e.g. a language model's; - for standard input."),
    output: Path = typer.Option(..., "-o", "--output", parser=cli_path, metavar="<path>",
                                help=".mp4 or .mov (H.264), .mkv (lossless FFV1), .y4m, .png, "
                                "a directory of PNGs, or - for a Y4M stream on standard output (| mpv -)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", show_default=False,
                                        help="Weights \\[default: those the file records, else the default preset]."),
    gop: Optional[int] = typer.Option(None, "--gop", show_default=False,
                                      help="Frames per GOP of a bare array (1 + 4k) \\[default: 17, encode's]."),
    split: Optional[int] = typer.Option(None, "--split", help="The last axis holds sub-tokens of this many bits "
                                        "(as `tokens --split` writes them)."),
    fps: Optional[str] = typer.Option(None, "--fps", show_default=False,
                                      help="Frame rate, e.g. 25 or 30000/1001 \\[default: the file's, else 25]."),
    device: Device = "auto",
    precision: Precision = "auto",
    gop_batch: GopBatch = "auto",
    compare: Compare = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Decode token indices back to video without a .tok file (the network alone: no correction layer, so below `decode` of the same file)."""
    with errors(), input_file(input, "tokens", check_output=lambda: _checked(output, overwrite, compare)) as src:
        from tokcodec.codec.pipeline import check_reference
        from tokcodec.tokens import detokenize as detokenize_file, read_token_file
        _checked(output, overwrite, compare)
        tokens = read_token_file(src)
        if compare is not None:  # (before the decode, as decode checks it: it failed after)
            check_reference(compare, *(tokens.size or (None, None)))
        total = sum(tokens.gop_frames) if tokens.gop_frames else None
        with frame_progress("decode", total, quiet) as advance:
            st = detokenize_file(tokens, output, model=model, gop=gop, split_bits=split, frame_rate=fps,
                                 device=device, precision=precision, overwrite=overwrite, progress=advance,
                                 gop_batch=gop_batch if gop_batch == "auto" else int(gop_batch))
        for warning in st.warnings:
            typer.echo(f"tokcodec: warning: {warning}", err=True)
        line = (f"decoded {plural(st.frames, 'frame')} {st.width}x{st.height} from tokens -> {_named(output)}, "
                f"{st.fps:.1f} fps ({st.device} {st.precision})")
        stats_line(line + _compared_text(_compared(output, compare)), quiet)


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
    val_data: Optional[list[str]] = typer.Option(None, "--val-data", help="Your own held-out videos/images (files "
                                                 "or folders, repeatable; never trained on): validated too."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="Stop with a checkpoint after this long."),
    init: Optional[str] = typer.Option(None, "--init", help="Start from these weights (preset name or .safetensors), "
                                       "e.g. to fine-tune the shipped model or grow it into a deeper "
                                       "preset (--preset); ignored with --resume."),
    device: Optional[str] = typer.Option(None, "--device", help="auto (CUDA when present), cpu, cuda or cuda:N."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar or progress lines."),
) -> None:
    """Train a tokenizer (runs under torchrun with DDP when launched with several processes)."""
    with errors():
        from tokcodec.train.trainer import TrainConfig, resumed_config, train as run_training
        overrides = {k: v for k, v in {"out_dir": out_dir, "preset": preset, "steps": steps,
                                       "sources": tuple(data) if data else None,
                                       "val_data": tuple(val_data) if val_data else None,
                                       "max_minutes": max_minutes, "init_weights": init,
                                       "device": device}.items() if v is not None}
        if config:
            cfg = TrainConfig.from_file(config).updated(overrides)
        elif resume:  # continue the run as it was configured
            cfg = resumed_config(overrides)
        else:
            cfg = TrainConfig().updated(overrides)
        trainer = run_training(cfg, resume=resume, progress=not quiet)
    if trainer.stopped_by is not None:  # (saved, but not finished: as a shell reports a signal)
        raise typer.Exit(128 + trainer.stopped_by)


@app.command("export-weights", short_help="Export a checkpoint's weights as a safetensors file for --model.")
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
        from tokcodec.train.trainer import export_weights, read_checkpoint
        if output.suffix != ".safetensors":
            raise OutputError(f"{output}: weights are written as NAME.safetensors (what --model takes)")
        check_output(output, overwrite)
        state = read_checkpoint(checkpoint)
        digest = export_weights(checkpoint, output, fp16=not fp32, ema=not raw, state=state)
        typer.echo(f"wrote {output} (sha256 {digest}); `tokcodec fit-prior {output} --data DIR` fits its "
                   "coder-3 prior, without which its files are larger", err=True)
        steps = int(state["step"])
        try:
            run = json.loads(state.get("train_config") or "{}")
        except ValueError:
            run = {}
        held = float(run.get("ema_decay", 0.999)) ** steps
        if not raw and state.get("init_weights") and not run.get("ema_warmup") and held >= 0.01:
            typer.echo(f"tokcodec: note: after {steps} steps from {state['init_weights']}, the EMA still holds "
                       f"{held:.0%} of those weights; --raw exports the trained weights themselves "
                       "(compare both)", err=True)


@app.command("fit-prior", short_help="Fit coder 3's prior for weights of your own (small files, --rdo).")
def fit_prior(
    weights: Path = typer.Argument(..., help="Weights of your own (.safetensors, e.g. from export-weights)."),
    data: Optional[list[Path]] = typer.Option(None, "--data", show_default=False, metavar="PATH",
                                              help="Videos and images like those you will code (files or "
                                                   "folders; repeatable): windows of them are fitted on "
                                                   "too. Recommended."),
    clips: int = typer.Option(32, "--clips", min=1, help="Windows of 17 frames taken from --data."),
    synthetic: int = typer.Option(76, "--synthetic", min=0, help="Procedural clips over the bundled photos "
                                  "(28 of every 76 at 640x360, the rest at 128x128); 0 for --data alone."),
    epochs: int = typer.Option(8, "--epochs", min=1, help="Passes over the tokens."),
    quiet: Quiet = False,
) -> None:
    """Fit coder 3's learned prior for weights of your own, so that their files code as small as
    the shipped models' (without one, tokens are coded by coder 2: larger files, and no --rdo).
    It is written beside the weights (MODEL.coder3.safetensors), where encode and decode look for
    it; a prior it replaces is kept (MODEL.coder3-KEY.safetensors) so files coded with it still
    decode. A few minutes on a CPU."""
    with errors():
        from tokcodec.codec.prior_fit import PriorFitConfig
        from tokcodec.codec.prior_fit import fit_prior as fit
        from tokcodec.model.zoo import WEIGHTS_DIR

        from tokcodec.model.presets import PRESETS, resolve_name

        problem = why_not_a_file(weights)
        if problem and resolve_name(str(weights)) in PRESETS:
            raise InputError(f"{weights}: the presets come with their priors; fit-prior takes a weights file "
                             "of your own (.safetensors)")
        if problem:
            raise InputError(f"{weights}: {problem}")
        if weights.suffix != ".safetensors":
            raise InputError(f"{weights}: not a .safetensors weights file")
        if weights.resolve().parent == WEIGHTS_DIR.resolve():
            raise InputError(f"{weights}: the shipped weights come with their priors (maintainers re-fit "
                             "them with python -m tokcodec.codec.prior_fit)")
        near = round(synthetic * 28 / 76)
        cfg = PriorFitConfig(weights=str(weights), clips360=near, clips128=synthetic - near,
                             data=tuple(data or ()), clips_data=clips, epochs=epochs)
        if not cfg.data and not synthetic:
            raise InputError("nothing to fit on: give --data, or procedural clips (--synthetic)")
        fit(cfg, log=(lambda _: None) if quiet else (lambda line: typer.echo(line, err=True)))


def _register_commands() -> None:
    from tokcodec.cli.batch import batch_app
    from tokcodec.cli.bench import bench

    app.command(help="Rate-distortion bench against x265, vvenc, SVT-AV1 and x264 via ffmpeg.")(bench)
    app.add_typer(batch_app, name="batch")


_register_commands()


def _maybe_reexec() -> None:
    """Heavy commands run faster with glibc keeping big buffers mapped (measured 1.3-3.5x here)
    and, on a busy machine, with torch's threads sleeping rather than spinning when they wait
    (tokcodec/startup.py); the settings must be in the environment before Python starts, so
    re-exec once with them (and TOKCODEC_NO_REEXEC=1, so once only)."""
    from tokcodec.startup import has_startup_environment, startup_environment

    if sys.platform != "linux" or env_flag("TOKCODEC_NO_REEXEC") or has_startup_environment():
        return
    if len(sys.argv) < 2 or sys.argv[1] not in HEAVY_COMMANDS:
        return
    env = {**startup_environment(), "TOKCODEC_NO_REEXEC": "1"}
    try:
        os.execve(sys.executable, [sys.executable, "-c", reexec_code(), *sys.argv[1:]], env)
    except OSError:
        pass


def reexec_code() -> str:
    """What the re-exec runs: this very tokcodec's CLI. `python -m tokcodec` put the current
    folder first on the path, so a `tokcodec.py` there ran instead (and exited 0, nothing
    written); the folder this package was imported from goes first now, in place of the
    current folder that `-c` puts there."""
    import tokcodec

    home = str(Path(tokcodec.__file__).resolve().parent.parent)
    return (f"import sys; sys.path[:sys.path[:1] == ['']] = [{home!r}]; "
            "from tokcodec.cli import main; main()")


#: columns --help is laid out in, at least: narrower, rich cut option names to fit (`--outp…`,
#: `--no-c…` at 40, a braille display's width); the terminal wraps its lines instead
HELP_MIN_WIDTH = 80


def help_at_least(columns: int) -> None:
    import shutil

    if os.environ.get("TERMINAL_WIDTH") or shutil.get_terminal_size().columns >= columns:
        return  # (rich not imported for nothing: 0.05-0.08 s of every command)
    import typer.rich_utils

    if typer.rich_utils.MAX_WIDTH is None:
        typer.rich_utils.MAX_WIDTH = columns


def main() -> None:
    _maybe_reexec()
    from tokcodec.interrupts import terminate_as_interrupt

    reopen_closed_streams()
    terminate_as_interrupt()
    help_at_least(HELP_MIN_WIDTH)
    if len(sys.argv) > 1 and sys.argv[1] in GC_AFTER_IMPORTS:
        gc.disable()  # (back on as the work begins: cli.progress.collect_from_here)
    try:
        if len(sys.argv) > 1 and sys.argv[1] in CODING_COMMANDS:
            from tokcodec.device import use_all_cores

            use_all_cores()
        # (prog_name: not "python -m tokcodec", which the re-exec above runs)
        code = app(prog_name="tokcodec", standalone_mode=False)
    except KeyboardInterrupt as exc:  # e.g. during an import, before a command's own handler is active
        sys.exit(stopped(exc))
    except typer.TyperException as exc:  # typer's own click: usage errors (exit status 2)
        if type(exc).__name__ == "NoArgsIsHelpError" or not hasattr(exc, "format_message"):
            exc.show()  # (`tokcodec`, `tokcodec batch`: the help)
        else:  # one line, as every other error
            ctx = getattr(exc, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            typer.echo(f"tokcodec: error: {exc.format_message()}{where}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # (click's own: Ctrl-C or SIGTERM while it parsed)
            sys.exit(stopped(exc.__context__))
        typer.echo("tokcodec: aborted", err=True)
        sys.exit(1)
    gc.freeze()  # (what is left, all of it, is not scanned again as the interpreter shuts down)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
