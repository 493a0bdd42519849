"""`tokcodec batch encode|decode|tokens SRC DST`: the typer sub-app over tokcodec.batch."""
from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from tokcodec.cli.options import (AudioBitrate, AudioCodec, BatchFrames, BatchStart, Bitrate, Bpp, DecodeModel,
                                  Deinterlace, Device, Duration, Gop, KeyInterval, Model, NoAudioDecode,
                                  NoAudioEncode, NoCorrection, NoDetail, NoMetadataDecode, NoMetadataEncode, Passes,
                                  Precision, Rdo, Refine, Scale,
                                  Scenecut, Sharpen, TokensGop, TokensPasses, TokensRdo, TokensRefine, TokensScale,
                                  TokensScenecut, audio_choice)
from tokcodec.cli.policy import errors
from tokcodec.defaults import DEFAULT_KEY_INTERVAL, DEFAULT_PASSES, DEFAULT_SCENECUT, DEFAULT_TOKEN_SCENECUT

batch_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                        help="Encode, decode or tokenize whole folder trees (resumable; local processes or Ray).")

_GLOB = "(path relative to SRC, or file name); repeatable."
Include = Annotated[list[str] | None, typer.Option("--include", help=f"Only files matching this glob {_GLOB}")]
Exclude = Annotated[list[str] | None, typer.Option("--exclude", help=f"Leave out files matching this glob {_GLOB}")]
Workers = Annotated[int | None, typer.Option(
    "--workers", "-j", show_default=False,
    help="Worker processes (Ray: actors), each loading the model once "
         "\\[default: one per CPU core; with cuda one per GPU].")]
Engine = Annotated[str, typer.Option("--engine", help="local, or ray (pip install 'tokcodec\\[ray]').")]
Address = Annotated[str | None, typer.Option(
    "--address", help="Ray cluster address \\[default: RAY_ADDRESS, else a new local Ray instance].")]
Force = Annotated[bool, typer.Option("--force", "-y", help="Redo (overwrite) outputs that are already complete.")]
BatchQuiet = Annotated[bool, typer.Option("-q", "--quiet", help="Print only failures (and the summary if any).")]


def _run(fn: Callable[..., Any], quiet: bool, **kwargs: Any) -> None:
    from tokcodec.batch.progress import default_reporter
    from tokcodec.batch.run import BatchInterrupted

    with errors():
        try:
            summary = fn(reporter=default_reporter(quiet), **kwargs)
        except BatchInterrupted as exc:
            how = "terminated" if exc.signum == signal.SIGTERM else "interrupted"
            typer.echo(f"{exc.summary.line()} ({how}; rerun to resume)", err=True)
            raise typer.Exit(128 + exc.signum) from None  # 130 for Ctrl-C, 143 for SIGTERM
    if not quiet or summary.failed:
        typer.echo(summary.line(), err=True)
    if summary.failed:
        typer.echo(f"tokcodec: error: {summary.failed} file(s) failed, listed in {summary.manifest}", err=True)
        raise typer.Exit(1)


@batch_app.command("encode")
def encode(
    src: Annotated[Path, typer.Argument(help="Folder (searched recursively) or a single file.")],
    dst: Annotated[Path, typer.Argument(help="Output folder: SRC's tree mirrored, .tok appended.")],
    include: Include = None,
    exclude: Exclude = None,
    model: Model = "default",
    gop: Gop = None,
    scale: Scale = None,
    bpp: Bpp = None,
    bitrate: Bitrate = None,
    passes: Passes = DEFAULT_PASSES,
    rdo: Rdo = None,
    refine: Refine = 0,
    no_correction: NoCorrection = False,
    no_detail: NoDetail = False,
    sharpen: Sharpen = None,
    key_interval: KeyInterval = DEFAULT_KEY_INTERVAL,
    start: BatchStart = None,
    duration: Duration = None,
    frames: BatchFrames = None,
    scenecut: Scenecut = DEFAULT_SCENECUT,
    deinterlace: Deinterlace = "auto",
    device: Device = "auto",
    precision: Precision = "auto",
    workers: Workers = None,
    engine: Engine = "local",
    address: Address = None,
    force: Force = False,
    no_audio: NoAudioEncode = False,
    audio_codec: AudioCodec = "auto",
    audio_bitrate: AudioBitrate = None,
    no_metadata: NoMetadataEncode = False,
    quiet: BatchQuiet = False,
) -> None:
    """Encode every video/image under SRC into DST (a/clip.mp4 -> a/clip.mp4.tok).

    Default inputs: video and image files (hidden files and DST itself are left out). Complete outputs newer than their input are skipped, so an interrupted run resumes where it stopped.
    """
    from tokcodec.batch.run import batch_encode
    from tokcodec.codec.ratecontrol import parse_bitrate

    target_bitrate = parse_bitrate(bitrate) if bitrate is not None else None  # (checked when parsed)
    with errors():
        audio = audio_choice(no_audio, audio_codec, audio_bitrate)
    _run(batch_encode, quiet, src=src, dst=dst, include=include or (), exclude=exclude or (),
         model=model, gop=gop, scale=scale, device=device, precision=precision, workers=workers,
         engine=engine, address=address, force=force, audio=audio, refine=refine,
         passes=passes, rdo=rdo, correction=not no_correction, detail=not no_detail,
         sharpen=sharpen, key_interval=key_interval, bpp=bpp, bitrate=target_bitrate, start=start,
         duration=duration, max_frames=frames, deinterlace=deinterlace, scenecut=scenecut,
         metadata=not no_metadata)


@batch_app.command("tokens")
def tokens(
    src: Annotated[Path, typer.Argument(help="Folder (searched recursively) or a single file.")],
    dst: Annotated[Path, typer.Argument(help="Output folder: SRC's tree mirrored, .safetensors appended.")],
    include: Include = None,
    exclude: Exclude = None,
    model: Model = "default",
    gop: TokensGop = None,
    scale: TokensScale = None,
    passes: TokensPasses = DEFAULT_PASSES,
    rdo: TokensRdo = None,
    refine: TokensRefine = 0,
    start: BatchStart = None,
    duration: Duration = None,
    frames: BatchFrames = None,
    split: Annotated[int | None, typer.Option("--split", min=1, help="Factorise each token into "
                                                 "sub-tokens of this many bits (e.g. 9), as `tokens --split`.")] = None,
    scenecut: TokensScenecut = DEFAULT_TOKEN_SCENECUT,
    deinterlace: Deinterlace = "auto",
    device: Device = "auto",
    precision: Precision = "auto",
    workers: Workers = None,
    engine: Engine = "local",
    address: Address = None,
    force: Force = False,
    quiet: BatchQuiet = False,
) -> None:
    """Token files for language models of every video/image and .tok under SRC (a/clip.mp4 -> a/clip.mp4.safetensors).

    As `tokcodec tokens` writes them: videos are tokenized as tokens alone (as encode --no-correction, with the options given), the tokens of .tok files exported as they are. Complete outputs newer than their input are skipped, so an interrupted run resumes.
    """
    from tokcodec.batch.run import batch_tokens

    _run(batch_tokens, quiet, src=src, dst=dst, include=include or (), exclude=exclude or (),
         model=model, gop=gop, scale=scale, passes=passes, rdo=rdo, refine=refine, device=device,
         precision=precision, workers=workers, engine=engine, address=address, force=force, start=start,
         duration=duration, max_frames=frames, split_bits=split, deinterlace=deinterlace, scenecut=scenecut)


@batch_app.command("decode")
def decode(
    src: Annotated[Path, typer.Argument(help="Folder of .tok files (searched recursively) or one .tok.")],
    dst: Annotated[Path, typer.Argument(help="Output folder (not SRC); original names are restored.")],
    to: Annotated[str | None, typer.Option(
        "--to", show_default=False,
        help="mkv (lossless FFV1), mp4 (H.264) or y4m \\[default: the original extension when "
             "decode can write it, else mkv].")] = None,
    include: Include = None,
    exclude: Exclude = None,
    model: DecodeModel = None,
    device: Device = "auto",
    precision: Precision = "auto",
    workers: Workers = None,
    engine: Engine = "local",
    address: Address = None,
    force: Force = False,
    no_audio: NoAudioDecode = False,
    no_metadata: NoMetadataDecode = False,
    salvage: Annotated[bool, typer.Option(
        "--salvage", help="Decode the intact GOPs of damaged files: lost frames repeat the last good one "
        "(black before any), and each file's line and manifest record count them.")] = False,
    quiet: BatchQuiet = False,
) -> None:
    """Decode every .tok under SRC into DST (a/clip.mp4.tok -> a/clip.mp4)."""
    from tokcodec.batch.run import batch_decode

    _run(batch_decode, quiet, src=src, dst=dst, to=to, include=include or (), exclude=exclude or (),
         model=model, device=device, precision=precision, workers=workers, engine=engine,
         address=address, force=force, audio=not no_audio, salvage=salvage, metadata=not no_metadata)
