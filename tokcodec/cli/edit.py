"""The ``tokcodec cut``, ``concat`` and ``split`` commands: .tok files cut, joined and split
without re-encoding (tokcodec/codec/splice.py). None loads torch or the model, but cut --exact."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from tokcodec.cli.options import Duration, Overwrite, Quiet, StatsJson, read_by
from tokcodec.cli.policy import errors
from tokcodec.cli.progress import json_checked, json_text, stats_line
from tokcodec.cli.stdio import cli_path, input_file
from tokcodec.codec.outputs import STDIO, check_tok_output, remove_dead_parts
from tokcodec.codec.ranges import parse_time
from tokcodec.errors import ArgumentError
from tokcodec.text import plural

if TYPE_CHECKING:
    from tokcodec.codec.stats import EditStats

__all__ = ["cut", "concat", "split"]

Output = Annotated[Path, typer.Option("-o", "--output", parser=cli_path, metavar="<path>",
                                      help="Output .tok file, or - for standard output.")]
OwnWeights = Annotated[Optional[str], typer.Option(
    "--model", "-m", show_default=False, help="Of a file made with weights of your own: that .safetensors file "
    "(its coder-3 prior, beside it, codes the GOPs coded anew); presets need nothing.")]
KeepNoAudio = Annotated[bool, typer.Option("--no-audio", help="Leave the stored audio out.")]
KeepNoMetadata = Annotated[bool, typer.Option("--no-metadata", help="Leave the stored tags and chapters out.")]


def _sizes(st: EditStats) -> str:
    others = [f"{name} {n}" for name, n in (("audio", st.audio_bytes), ("tags", st.tags_bytes)) if n]
    return f"{st.bytes} bytes" + (f" (video {st.video_bytes}, {', '.join(others)}), video" if others else ",")


def _report(st: EditStats, as_json: bool, quiet: bool, line: str) -> None:
    for warning in st.warnings:
        typer.echo(f"tokcodec: warning: {warning}", err=True)
    if as_json:
        typer.echo(json_text(st.to_dict()))
    stats_line(line + f"; audio: {st.audio}; tags: {st.tags}", quiet or as_json)


def cut(
    input: Annotated[Path, typer.Argument(parser=cli_path, help="A .tok file, or - for standard input.",
                                          show_default=False)],
    output: Output,
    start: Annotated[Optional[str], typer.Option(
        "--ss", callback=read_by(parse_time), show_default=False, help="Start at this time: seconds (90, 1.5) or "
        "[HH:]MM:SS[.frac]. The cut starts where the GOP that holds it begins (at most a GOP earlier, as "
        "ffmpeg -c copy starts at the key frame before; the stats line says where), or with --exact there.")] = None,
    duration: Duration = None,
    frames: Annotated[Optional[int], typer.Option(
        "--frames", min=1, show_default=False, help="At most this many frames from the start asked for.")] = None,
    exact: Annotated[bool, typer.Option(
        "--exact", help="Start at --ss itself: the frames from there to the next GOP start are decoded and "
        "encoded again (a second loss for those frames only; loads the model).")] = False,
    model: OwnWeights = None,
    no_audio: KeepNoAudio = False,
    no_metadata: KeepNoMetadata = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    as_json: StatsJson = False,
) -> None:
    """Cut part of a .tok file into a new one without re-encoding (--ss, -t, --frames): the same pictures, no network run."""
    with errors(), input_file(input, "a .tok file", check_output=lambda: json_checked(as_json, output)
                              or check_tok_output(output, overwrite, command="cut")) as src:
        json_checked(as_json, output)
        from tokcodec.codec.splice import cut_file

        st = cut_file(src, output, start=start, duration=duration, frames=frames, exact=exact, model=model,
                      audio=not no_audio, metadata=not no_metadata, overwrite=overwrite)
        if str(output) != STDIO:
            remove_dead_parts(output)
        rate = st.frame_rate
        where = f"from {st.first_frame / rate:.3f} s (frame {st.first_frame}"
        if st.asked_first_frame != st.first_frame:
            where += f": the GOP that holds {st.asked_first_frame / rate:.3f} s, frame {st.asked_first_frame}, starts there"
        recoded = f", {st.recoded_gops} entropy-coded anew (same tokens)" if st.recoded_gops else ""
        if st.encoded_frames:
            recoded += f"; its first {plural(st.encoded_frames, 'frame')} encoded again (--exact)"
        _report(st, as_json, quiet, f"cut {plural(st.frames, 'frame')} {st.width}x{st.height} {where}) of {input} -> "
              f"{'stdout' if str(output) == STDIO else output}: {_sizes(st)} {st.video_bpp:.4f} bpp; "
              f"{plural(st.gops, 'GOP')}{recoded}")


def concat(
    inputs: Annotated[list[Path], typer.Argument(help="Two or more .tok files, in order.", show_default=False)],
    output: Output,
    no_audio: KeepNoAudio = False,
    no_metadata: KeepNoMetadata = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    as_json: StatsJson = False,
) -> None:
    """Join .tok files one after another into one without re-encoding (same size, frame rate, model and colour)."""
    with errors():
        json_checked(as_json, output)
        if any(str(p) == STDIO for p in inputs):
            raise ArgumentError("concat reads its inputs as files: - (standard input) cannot be one of them")
        from tokcodec.codec.splice import concat_files

        st = concat_files(inputs, output, audio=not no_audio, metadata=not no_metadata, overwrite=overwrite)
        if str(output) != STDIO:
            remove_dead_parts(output)
        _report(st, as_json, quiet, f"joined {plural(len(st.inputs), 'file')}: {plural(st.frames, 'frame')} "
              f"{st.width}x{st.height} ({st.duration:.3f} s) -> {'stdout' if str(output) == STDIO else output}: "
              f"{_sizes(st)} {st.video_bpp:.4f} bpp; {plural(st.gops, 'GOP')} copied")


def split(
    input: Annotated[Path, typer.Argument(parser=cli_path, help="A .tok file, or - for standard input.",
                                          show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", metavar="<dir>",
                                         help="Folder for the parts: <name>_000.tok, <name>_001.tok, ...")],
    every: Annotated[Optional[str], typer.Option(
        "--every", callback=read_by(parse_time), show_default=False, help="A part every this long (seconds or "
        "[HH:]MM:SS): each starts at the first GOP start at or after a multiple of it, as ffmpeg's segment "
        "muxer cuts at the key frame after each segment time.")] = None,
    chapters: Annotated[bool, typer.Option("--chapters", help="A part per chapter, each from the start of the GOP "
                                           "that holds the chapter's.")] = False,
    model: OwnWeights = None,
    no_audio: KeepNoAudio = False,
    no_metadata: KeepNoMetadata = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    as_json: StatsJson = False,
) -> None:
    """Split a .tok file into parts without re-encoding (--every N seconds or --chapters), on GOP boundaries: every frame once, as decoded."""
    with errors(), input_file(input, "a .tok file") as src:
        if (every is None) == (not chapters):
            raise ArgumentError("give one of --every SECONDS and --chapters")
        from tokcodec.codec.splice import split_file

        parts = split_file(src, output, every=every, chapters=chapters, model=model, audio=not no_audio,
                           metadata=not no_metadata, overwrite=overwrite, stem=None if str(input) != STDIO else "stdin")
        for st in parts:
            for warning in st.warnings:
                typer.echo(f"tokcodec: warning: {warning}", err=True)
        if as_json:
            typer.echo(json_text([st.to_dict() for st in parts]))
        frames = sum(st.frames for st in parts)
        lengths = [st.duration for st in parts]
        recoded = sum(st.recoded_gops for st in parts)
        stats_line(f"split {'standard input' if str(input) == STDIO else input} into {plural(len(parts), 'part')} in "
                   f"{output}/ ({Path(parts[0].output).name} ...): {plural(frames, 'frame')}, "
                   f"{sum(st.bytes for st in parts)} bytes, parts of {min(lengths):.3f}-{max(lengths):.3f} s from GOP "
                   "starts" + (f"; {plural(recoded, 'GOP')} entropy-coded anew (same tokens)" if recoded else ""),
                   quiet or as_json)
