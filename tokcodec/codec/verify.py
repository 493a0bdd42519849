"""`tokcodec verify`: check a .tok file's integrity without running the decoder network.

Checks, in order: the header, trailer and index CRCs and their consistency (by opening the file),
that the weights the file names are installed here with the SHA-256 the file records and the
token grid its header states, every chunk's CRC, the entropy-decoded tokens' own CRC (skipped
with ``tokens=False``), every correction record, the tags block's CRC and fields, and the audio
block's CRC and that it parses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tokcodec.audio import read_track
from tokcodec.codec.container import ContainerReader, Header
from tokcodec.codec.correction_record import CorrectionRecord, record_needs_previous
from tokcodec.codec.entropy import get_coder
from tokcodec.errors import LINKED_TO_LOST, FormatError, TokcodecError, why_not_a_file
from tokcodec.codec.context_coder3 import use_priors_beside
from tokcodec.model.presets import PRESETS, resolve_name
from tokcodec.model.zoo import ModelName, is_weights_file, shipped_version, weights_config, weights_sha256


@dataclass
class VerifyReport:
    file: str
    problems: list[str] = field(default_factory=list)
    frames: int = 0
    chunks: int = 0
    model: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"file": self.file, "ok": self.ok, "problems": self.problems, "frames": self.frames,
                "chunks": self.chunks, "model": self.model}


def _check_weights(report: VerifyReport, header: Header, model: str | None, source: str) -> bool:
    """The weights the file names are here (as decode finds them), with the recorded hash and the
    token grid its header states. False where that grid is not theirs: the tokens are then not
    worth decoding (the coder would look for a prior of the header's bits, and blame that)."""
    expected, name = header.weights_sha256, header.model_name
    # without --model, or naming the file's own preset: that preset's shipped weights with the
    # recorded hash (current or kept version), as decode picks them
    same_preset = model is None or resolve_name(model) == resolve_name(name)
    shipped = shipped_version(resolve_name(name), expected) if same_preset else None
    try:
        actual = weights_sha256(str(shipped) if shipped else model or name)
    except TokcodecError as exc:
        report.problems.append(f"weights: {exc} (pass --model with the weights used to encode)")
        return True
    if actual != expected:
        report.problems.append(f"weights: {model or name} here has sha256 {actual[:16]}..., the file was "
                               f"made with {expected[:16]}... (pass --model with the weights used to encode)")
        return True
    try:
        header.check_model(weights_config(str(shipped) if shipped else model or name), source)
    except TokcodecError as exc:
        report.problems.append(str(exc))
        return False
    return True


def _own_weights(report: VerifyReport, model: ModelName | None, expected: str, name: str) -> bool:
    """For a file made with weights of your own: whether its tokens can be checked. They need the
    weights file (``model``), whose coder-3 prior lies beside it; without it that is the problem."""
    if model is None:
        report.problems.append(f"weights: made with weights of your own ({name!r}, sha256 {expected[:16]}...): "
                               "pass --model with that file to check them and the tokens")
        return False
    _priors_beside(model, expected)
    return True


def _priors_beside(model: ModelName, expected: str) -> None:
    """The coder-3 priors beside a weights file given with --model, as decode takes them: also for
    a file whose stem is a preset's name (`mine/small.safetensors`, earlier weights of a preset
    kept to read old files), whose tokens verify called bad where decode read them."""
    if is_weights_file(model) and Path(model).is_file():
        try:
            if weights_sha256(model) == expected:
                use_priors_beside(Path(model), expected)
        except TokcodecError:
            pass  # (_check_weights says what is wrong with the file)


def verify_file(path: str | Path, *, model: ModelName | None = None, tokens: bool = True,
                weights: bool = True) -> VerifyReport:
    """Every check that does not need the decoder network; problems are one line each. A file
    made with weights of your own needs ``model`` (its weights file) for the weights and tokens."""
    path = Path(path)
    report = VerifyReport(str(path))
    reason = why_not_a_file(path)
    if reason:
        report.problems.append(reason)
        return report
    try:
        reader = ContainerReader(path)
    except TokcodecError as exc:
        report.problems.append(str(exc))
        return report
    with reader:
        h = reader.header
        report.frames, report.chunks, report.model = reader.frame_count, len(reader.entries), h.model_name
        if weights and resolve_name(h.model_name) not in PRESETS:
            if not _own_weights(report, model, h.weights_sha256, h.model_name):
                tokens = weights = False  # (said once: without the weights file, its prior is not known)
        elif weights and model is not None:
            _priors_beside(model, h.weights_sha256)
        if weights and not _check_weights(report, h, model, str(path)):
            tokens = False
        try:
            coder = get_coder(h.coder_id)
        except TokcodecError as exc:
            report.problems.append(str(exc))
            coder, tokens = None, False
        last = None  # the previous chunk's last latent frame, while it decodes (linked GOPs need it)
        fix = None   # and its correction record (a record may be coded against it)
        for i in range(len(reader.entries)):
            try:
                chunk = reader.read_chunk(i)
            except TokcodecError as exc:
                report.problems.append(str(exc))
                last = fix = None
                continue
            lost = False  # as decode --salvage would lose it: then what links to it fails too
            try:
                if tokens and coder is not None:
                    if coder.links(chunk.payload) and last is None:
                        raise FormatError(f"its GOP {LINKED_TO_LOST}, which did not decode")
                    last = coder.decode(chunk.payload, chunk.latent_shape, h.bits, last)[-1]
            except TokcodecError as exc:
                report.problems.append(f"chunk {i}: tokens do not decode ({exc})")
                lost = True
            try:
                if record_needs_previous(chunk.correction) and fix is None:
                    raise FormatError("it is coded against the previous GOP's record, which did not decode")
                fix = CorrectionRecord.unpack(chunk.correction, h.width, h.height, chunk.frames, fix,
                                              h.newest_record_kind) if chunk.correction else None
            except TokcodecError as exc:
                report.problems.append(f"chunk {i}: correction record does not decode ({exc})")
                lost = True
            if lost:
                last = fix = None
        if h.has_tags:
            try:
                reader.read_tags()
            except TokcodecError as exc:
                report.problems.append(f"tags: {exc}")
        if h.has_audio:
            try:
                block = reader.read_audio()
                if block is not None:
                    read_track(block.data, block.start_offset_us / 1e6)
            except TokcodecError as exc:
                report.problems.append(f"audio: {exc}")
    return report
