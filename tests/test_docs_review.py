"""What an auditor of the docs against the software met (December 2026): documented commands
that fail as written, a salvage that "succeeded" with a video of nothing but filler though the
docs call that an error, help texts with two defaults, and train and fit-prior ending in
"unexpected ModuleNotFoundError" without the [train] extra. Each test is one finding, fixed."""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tokcodec.cli import app
from tokcodec.errors import SetupError

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "docs" / "usage.md", ROOT / "docs" / "training.md"]


def _documented_commands(text: str) -> list[str]:
    """The tokcodec command lines of a Markdown file: every line of its code blocks, and inline
    ones that give an option (`tokcodec bench` alone names the command, it is no command line)."""
    lines, block = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            block = not block
        elif block and line.startswith("tokcodec "):
            lines.append(line)
    lines += [m.group(1) for m in re.finditer(r"`(tokcodec [^`]+)`", text.replace("\n", " "))
              if re.search(r"\s-", m.group(1))]
    return lines


def _parse_error(line: str) -> str | None:
    """Why ``line`` does not parse as a tokcodec command (its comment, shell redirections and the
    [optional parts] left out), or None."""
    code = re.sub(r"\[[^\]]*\]", "", line.split(" #")[0])
    args = shlex.split(re.split(r"\s[|<>]", code)[0])[1:]
    command = typer.main.get_command(app)
    while hasattr(command, "get_command") and args and not args[0].startswith("-"):
        command = command.get_command(None, args[0])
        if command is None:
            return "no such command"
        args = args[1:]
    if hasattr(command, "get_command"):
        return None
    try:
        command.make_context(command.name, args)
    except Exception as exc:  # noqa: BLE001 - typer's own click raises its own exception classes
        if type(exc).__name__ != "Exit":
            return exc.format_message() if hasattr(exc, "format_message") else repr(exc)
    return None


def test_every_documented_command_line_parses() -> None:
    """`tokcodec tokens clip.tok --model mine.safetensors` and `tokcodec bench CLIP --quick`
    (the docs) fail: "Missing option '-o'". Each command line of the docs is parsed as the CLI
    parses it (missing or unknown options, values out of range), without running it."""
    failures = []
    for doc in DOCS:
        for line in _documented_commands(doc.read_text()):
            why = _parse_error(line)
            if why:
                failures.append(f"{doc.name}: {line!r}: {why}")
    assert not failures, "\n".join(failures)
    assert len(_documented_commands(DOCS[0].read_text())) > 30    # (the check finds the README's usage)


def test_the_parse_check_finds_what_it_should() -> None:
    assert _parse_error("tokcodec tokens clip.tok --model mine.safetensors") == "Missing option '-o' / '--output'."
    assert "No such option" in _parse_error("tokcodec batch decode tok/ out/ --frames 5")
    assert _parse_error("tokcodec decode clip.tok -o - | mpv -   # a comment") is None
    assert _parse_error("tokcodec nonesuch x") == "no such command"


def test_a_help_states_each_default_once() -> None:
    """`tokens --scenecut` read "[default: 0, off: ...] [default: 0.0]"."""
    for command in (["tokens"], ["batch", "tokens"]):
        out = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).output
        block = out[out.index("--scenecut"):out.index("--deinterlace")]
        assert block.count("default:") == 1, block


def test_without_scikit_learn_the_synthetic_clips_say_what_to_install(monkeypatch) -> None:
    """`tokcodec fit-prior` and `train` (their synthetic clips use scikit-learn's sample photos)
    ended in "unexpected ModuleNotFoundError" after a plain `pip install`."""
    from tokcodec.train.synthetic import load_image

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)   # (an import of it fails)
    with pytest.raises(SetupError, match=r"pip install 'tokcodec\[train\]'"):
        load_image("sklearn:china.jpg")
    assert load_image("chelsea").dtype.name == "uint8"           # scikit-image's still load


def test_the_header_is_laid_out_as_format_md_says() -> None:
    """A contributor swapped two header fields in both pack and unpack: every test passed (they
    round-trip), and every .tok written before would have read wrong. The header is built here
    from docs/FORMAT.md's table of offsets alone, and must be the bytes tokcodec writes."""
    import struct
    import zlib
    from fractions import Fraction

    from tokcodec.codec.container import Header

    sha = bytes(range(32))
    header = Header(width=641, height=359, coded_width=321, coded_height=180, padded_width=336, padded_height=192,
                    frame_rate=Fraction(30000, 1001), frame_count=1234567, gop=33, temporal_factor=4,
                    spatial_factor=16, bits=18, coder_id=4, model_name="fast-deep", weights_sha256=sha.hex(),
                    precision="fp16", color_range=1, colorspace=5, primaries=6, transfer=16, untrained=True,
                    has_audio=True, correction=True, correction_detail=True, correction_coded=True, grey=True)
    body = struct.pack("<8s4H 8I Q 4B H 6B 32s 32s", b"TOKCODEC", 2, 2, 136, 0b111,  # offsets 0-14
                       641, 359, 321, 180, 336, 192, 30000, 1001,                        # 16-44
                       1234567, 1, 5, 6, 16, 33,                                          # 48-60
                       4, 16, 18, 4, 2, len("fast-deep"), b"fast-deep", sha)              # 62-100
    assert len(body) == 132
    assert header.pack() == body + struct.pack("<I", zlib.crc32(body))
    assert Header.unpack(header.pack(), "x.tok") == header
