"""Options that several commands share (encode, decode, batch encode/decode), declared once.
Help texts say what an option does; measured effects live in the docs, where they are dated."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from tokcodec.audio_choice import AudioChoice
from tokcodec.codec.ranges import parse_time
from tokcodec.codec.ratecontrol import MAX_TARGET_BPP, MIN_TARGET_BPP, parse_bitrate
from tokcodec.defaults import (DEFAULT_PASSES, DEFAULT_RDO, DEFAULT_SHARPEN, MAX_KEY_INTERVAL, MAX_PASSES, MAX_RDO,
                               MAX_SCALE, MAX_SCENECUT, MAX_SHARPEN, MIN_SCALE, check_deinterlace, check_device_name,
                               check_precision_name)
from tokcodec.errors import ArgumentError, TokcodecError

Model = Annotated[str, typer.Option("--model", "-m", help="Preset name or a .safetensors weights file.")]
DecodeModel = Annotated[Optional[str], typer.Option(
    "--model", "-m", show_default=False, help="Weights to use \\[default: the preset named in each file].")]
Gop = Annotated[Optional[int], typer.Option(
    "--gop", show_default=False, help="Frames per GOP (1 + 4k; every --key-interval-th GOP decodes on its "
    "own); longer: smaller files (33: about 30% fewer bits), more memory. \\[default: 17; with "
    "--bpp/--bitrate and no --scale, the rate plan's choice]")]
TokensGop = Annotated[Optional[int], typer.Option(
    "--gop", show_default=False, help="Of a video: frames per GOP (1 + 4k) \\[default: 17].")]
TokensScale = Annotated[Optional[float], typer.Option(
    "--scale", min=MIN_SCALE, max=MAX_SCALE, show_default=False,
    help="Of a video: tokenize at this multiple of the size \\[default: 1].")]
Scale = Annotated[Optional[float], typer.Option(
    "--scale", min=MIN_SCALE, max=MAX_SCALE, show_default=False, help="Tokenize at this multiple of the "
    "size: below 1 fewer bits and a softer picture, above 1 more detail for more bits and a slower encode "
    "and decode (1.25: about 1.5x the time); decode restores the size. \\[default: 1; with "
    "--bpp/--bitrate and no --gop, the rate plan's choice]")]
Refine = Annotated[int, typer.Option(
    "--refine", min=0, help="Search each GOP's tokens with the decoder in the loop for N steps: closer "
    "pictures, same format and decode speed, a much slower encode that needs more memory "
    "(docs/usage.md).")]
Passes = Annotated[int, typer.Option(
    "--passes", min=0, max=MAX_PASSES, help="Closed-loop encoder passes per GOP: re-encode the source plus "
    "what the decoder missed. Closer pictures for somewhat more bits, same format and decode speed; "
    "each pass costs about one more encode and decode, so the default encodes several times slower "
    "than 0, the one-shot encoder (docs/usage.md).")]
Rdo = Annotated[Optional[float], typer.Option(
    "--rdo", min=0, max=MAX_RDO, show_default=False, help="Rate-distortion trade of the token bits: where "
    "the encoder is unsure of a bit, take the value the entropy coder expects when that saves enough bits. "
    "Larger is fewer bits for a softer picture (a rate knob, like a CRF); 0 keeps the encoder's own bits. "
    f"Same format and decode speed (docs/usage.md). \\[default: {DEFAULT_RDO:g}]")]
TokensPasses = Annotated[Optional[int], typer.Option(
    "--passes", min=0, max=MAX_PASSES, show_default=False,
    help=f"Of a video: closed-loop encoder passes, as encode --passes \\[default: {DEFAULT_PASSES}].")]
TokensRdo = Annotated[Optional[float], typer.Option(
    "--rdo", min=0, max=MAX_RDO, show_default=False,
    help=f"Of a video: rate-distortion trade of the token bits, as encode --rdo \\[default: {DEFAULT_RDO:g}].")]
TokensRefine = Annotated[int, typer.Option(
    "--refine", min=0, help="Of a video: decoder-in-the-loop search steps per GOP, as encode --refine (slow).")]
Bpp = Annotated[Optional[float], typer.Option(
    "--bpp", min=MIN_TARGET_BPP, max=MAX_TARGET_BPP, show_default=False, help="Target rate in bits per "
    "pixel, met on average over the file (audio not counted): a probe of a few GOPs picks --gop and "
    "--scale where they are not given, and each GOP's --rdo follows the budget (docs/usage.md).")]
def read_by(parse: Callable[[str], object]) -> Callable[[Optional[str]], Optional[str]]:
    """A parse-time check of a text option: a usage error unless ``parse`` reads the value (the
    command parses it again where it uses it)."""
    def check(value: Optional[str]) -> Optional[str]:
        if value is not None:
            try:
                parse(value)
            except (ValueError, TokcodecError) as exc:
                raise typer.BadParameter(str(exc)) from None
        return value
    return check


Bitrate = Annotated[Optional[str], typer.Option(
    "--bitrate", "-b", show_default=False, callback=read_by(parse_bitrate), help="Target rate in bits per second of video, as ffmpeg's -b:v "
    "takes it (300k, 1.5M): --bpp at the input's frame rate and size.")]
NoCorrection = Annotated[bool, typer.Option(
    "--no-correction", help="Send tokens only, no correction grid beside them: faster encoding, "
    "lower fidelity, .tok format 1.x that older tokcodec versions read, with --key-interval 1 "
    "(docs/usage.md).")]
NoDetail = Annotated[bool, typer.Option(
    "--no-detail", help="Correction offsets only, no detail gains: lower fidelity, .tok format 2.0 "
    "that tokcodec versions from before the gains read, with --key-interval 1 (docs/usage.md).")]
Sharpen = Annotated[Optional[float], typer.Option(
    "--sharpen", min=0, max=MAX_SHARPEN, show_default=False, help="Detail gains sent beside the tokens, "
    "as a multiple of their least-squares fit: 1 sends the fit, larger is crisper (higher VMAF) for a "
    f"few more bits, 0 leaves the decoded detail as it is. Default: {DEFAULT_SHARPEN:g} for GOPs of 9 "
    "frames or more, 1 for shorter ones and images. Same format and decode speed (docs/usage.md).")]
KeyInterval = Annotated[int, typer.Option(
    "--key-interval", min=1, max=MAX_KEY_INTERVAL, help="A key GOP every N GOPs: the GOPs between code their "
    "first latent frame against the GOP before (entropy coder 4), for smaller files; decoding can start, "
    "and --salvage resume, at key GOPs. 1 makes every GOP a key GOP (entropy coder 3, which tokcodec "
    "releases before coder 4 read in files without corrections). Same pictures; the same decode speed on a CPU (docs/usage.md).")]
Compile = Annotated[bool, typer.Option(
    "--compile", help="torch.compile the networks: the first GOP of each shape pays the compilation; "
    "for long runs on a GPU.")]
def _checked_gop_batch(value: str) -> str:
    """Checks --gop-batch at parse time (a usage error unless "auto" or a whole number >= 1)."""
    if value != "auto" and not (value.isdigit() and int(value) >= 1):
        raise typer.BadParameter(f"'auto' or a whole number >= 1, not {value!r}")
    return value


GopBatch = Annotated[str, typer.Option(
    "--gop-batch", callback=_checked_gop_batch,
    help="GOPs decoded by the network at once, or auto: 1 on CPU, on CUDA as many as half the free memory holds.")]
Start = Annotated[Optional[str], typer.Option(
    "--ss", callback=read_by(parse_time), show_default=False, help="Start at this time: seconds (90, 1.5) or "
    "[HH:]MM:SS[.frac], as ffmpeg's -ss; the output starts with the first frame at or after it. Only "
    "the GOPs that hold the part asked for are decoded.")]
EncodeStart = Annotated[Optional[str], typer.Option(
    "--ss", callback=read_by(parse_time), show_default=False, help="Start at this time: seconds (90, 1.5) or "
    "[HH:]MM:SS[.frac], as ffmpeg's -ss; the file starts with the input's first frame at or after it "
    "(reached by a seek to the key frame before it, exact to the frame) and keeps the audio from there.")]
Duration = Annotated[Optional[str], typer.Option(
    "-t", "--duration", callback=read_by(parse_time), show_default=False, help="This long from the start "
    "(seconds or [HH:]MM:SS[.frac], as ffmpeg's -t) \\[default: to the end].")]
BatchStart = Annotated[Optional[str], typer.Option(
    "--ss", callback=read_by(parse_time), show_default=False, help="Of each video: start at this time, as "
    "encode --ss (images are taken whole; a video that ends before it fails).")]
BatchFrames = Annotated[Optional[int], typer.Option(
    "--frames", min=1, show_default=False, help="Of each video: at most this many frames.")]
DecodeFrames = Annotated[Optional[int], typer.Option(
    "--frames", min=1, show_default=False, help="Decode at most this many frames (--frames 1 -o still.png: "
    "one frame as an image).")]
Compare = Annotated[Optional[Path], typer.Option("--compare", help="Report PSNR and colour drift against this original.")]
Device = Annotated[str, typer.Option("--device", callback=read_by(check_device_name), help="auto, cpu or cuda.")]
TokensScenecut = Annotated[float, typer.Option(
    "--scenecut", min=0, max=MAX_SCENECUT, show_default=False, help="Of a video: GOPs end before scene "
    "cuts this sharp, as encode --scenecut. \\[default: 0, off: GOPs of one length, so that a bare token array's GOP "
    "boundaries follow from its length]")]
SequenceFps = Annotated[Optional[str], typer.Option(
    "--fps", show_default=False, help="Frame rate of an image sequence (a directory of numbered images) or a "
    "still image: 24, 25, 30000/1001 \\[default: 25]; a video keeps its own.")]
Scenecut = Annotated[float, typer.Option(
    "--scenecut", min=0, max=MAX_SCENECUT, help="A GOP ends before a cut to another shot and the next one "
    "starts with it, so that no GOP blends two shots (each cut costs about one latent frame): a cut is "
    "an isolated jump of at least this many code values in the mean luma of thumbnails; 0 turns it off, "
    "GOPs of fixed length (docs/usage.md).")]
Deinterlace = Annotated[str, typer.Option(
    "--deinterlace", callback=read_by(check_deinterlace), help="auto, on or off: deinterlace an interlaced "
    "input (bwdif, one frame per frame: count, rate and audio stay) as it is read; auto: the frames its "
    "stream flags as interlaced, on: every frame (for interlaced video that is not flagged), off: code its "
    "fields woven together.")]
Precision = Annotated[str, typer.Option(
    "--precision", callback=read_by(check_precision_name), help="auto, fp32, bf16 or fp16 (auto: bf16 on a "
    "CPU with native bf16, else fp32; on CUDA bf16, else fp16 to decode and fp32 to encode).")]
NoAudioEncode = Annotated[bool, typer.Option("--no-audio", help="Drop the audio (default: keep the first audio stream).")]
AudioCodec = Annotated[str, typer.Option(
    "--audio-codec", metavar="<auto|copy|opus>", callback=read_by(lambda name: AudioChoice(name)),
    help="How the audio is stored: auto copies it, but packs uncompressed 8- to 24-bit PCM as FLAC (the same "
    "samples in a quarter to a half of the bytes); copy keeps PCM as it is; opus re-encodes any audio (lossy, "
    "smaller: 64 kb/s a channel or --audio-bitrate).")]
AudioBitrate = Annotated[Optional[str], typer.Option(
    "--audio-bitrate", show_default=False, callback=read_by(lambda text: AudioChoice(bitrate=parse_bitrate(text))),
    help="Re-encode the audio to Opus at this many bits per second, all channels together, as ffmpeg's "
    "-b:a takes it (96k).")]
NoAudioDecode = Annotated[bool, typer.Option("--no-audio", help="Leave the stored audio out of the output.")]
NoMetadataEncode = Annotated[bool, typer.Option(
    "--no-metadata", help="Drop the tags and chapters (default: keep the title, creation time, place, comments, "
    "stream languages and chapters): the .tok is then in the format tokcodec wrote before it kept them "
    "(2.2; with --no-detail 2.0, with --no-correction 1.x).")]
Spool = Annotated[bool, typer.Option(
    "--spool", help="Copy a piped input (-, a named pipe) to a temporary file as fast as it comes (Ctrl-C ends "
    "it), encoding a Y4M stream from there meanwhile: for a live source that cannot wait, such as a camera. "
    "Default: a Y4M stream is encoded as it comes, the program piping in waiting for the encoder; other "
    "formats are always copied first, and encoded once they have ended.")]
NoMetadataDecode = Annotated[bool, typer.Option(
    "--no-metadata", help="Leave the stored tags and chapters out of the output (default: into .mkv, .mp4 "
    "and .mov outputs).")]
Overwrite = Annotated[bool, typer.Option("-y", "--overwrite", help="Overwrite the output.")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar or stats line.")]
StatsJson = Annotated[bool, typer.Option("--json", help="The stats as one JSON object on standard output, instead "
                                         "of the stats line (no progress bar; warnings stay on stderr).")]


def audio_choice(no_audio: bool, codec: str, bitrate: Optional[str]) -> AudioChoice | bool:
    """encode's audio options as encode_video takes them (False: --no-audio)."""
    if no_audio:
        if codec != "auto" or bitrate is not None:
            raise ArgumentError("--no-audio drops the audio: --audio-codec and --audio-bitrate would have "
                                "nothing to store")
        return False
    return AudioChoice(codec, parse_bitrate(bitrate) if bitrate is not None else None)
