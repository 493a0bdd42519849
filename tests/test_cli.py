"""The command line as a user meets it: exit codes, one-line errors, JSON info, token export."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import smooth_clip, write_clip


def run(*args, cwd=None):
    env = dict(os.environ, TOKCODEC_NO_REEXEC="1")
    return subprocess.run([sys.executable, "-m", "tokcodec", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def assert_clean_error(res, *needles):
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [l for l in res.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("tokcodec: error:"), res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def tok_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    src = write_clip(d / "in.mkv", smooth_clip(21, 32, 48))
    res = run("encode", src, "-o", d / "a.tok", "--model", "tiny", "--gop", "9")
    assert res.returncode == 0, res.stderr
    assert "bpp" in res.stderr and "fps" in res.stderr
    return d / "a.tok"


def test_info_json(tok_file):
    res = run("info", tok_file, "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["tokens"] == 3 * 4 * 6 + 3 * 4 * 6 + 2 * 4 * 6
    assert (data["frames"], data["width"], data["height"]) == (21, 48, 32)
    assert data["bytes"] == tok_file.stat().st_size
    assert all(isinstance(data[k], int) for k in ("tokens", "frames", "width", "height", "bytes"))
    assert len(data["chunks"]) == 3 and data["untrained_model"] is True
    # the JSON keeps its shape now that the library returns a FileInfo dataclass
    h = data["header"]
    assert data["chunks_count"] == 3 and h["version"].count(".") == 1 and "/" in h["frame_rate"]
    assert h["coder"] and h["coder_id"] == 3 and data["chunks"][0]["latent"] == [3, 4, 6]
    assert len(data["chunks"][0]["bits_per_token_by_latent_frame"]) == 3


def test_info_text_mentions_untrained(tok_file):
    res = run("info", tok_file)
    assert res.returncode == 0
    assert "UNTRAINED" in res.stdout and "bits/token" in res.stdout


def test_tokens_export(tok_file, tmp_path):
    res = run("tokens", tok_file, "-o", tmp_path / "t.npy")
    assert res.returncode == 0, res.stderr
    t = np.load(tmp_path / "t.npy")
    assert t.shape == (8, 4, 6) and t.max() < 2 ** 18
    res = run("tokens", tok_file, "-o", tmp_path / "t9.safetensors", "--split", "9")
    assert res.returncode == 0, res.stderr
    from safetensors.numpy import load_file
    t9 = load_file(str(tmp_path / "t9.safetensors"))["tokens"]
    assert t9.shape == (8, 4, 6, 2) and t9.max() < 512
    assert np.array_equal(t9[..., 0] + (t9[..., 1] << 9), t)
    assert_clean_error(run("tokens", tok_file, "-o", tmp_path / "t.npy"), "already exists")


def test_tokens_of_a_video(tok_file, tmp_path):
    """`tokens VIDEO` tokenizes as encode --no-correction would; encoding options are for videos only."""
    src = tok_file.parent / "in.mkv"
    res = run("tokens", src, "-o", tmp_path / "v.npy", "--model", "tiny", "--gop", "9", "--frames", "13")
    assert res.returncode == 0, res.stderr
    assert np.load(tmp_path / "v.npy").shape == (3 + 2, 4, 6)  # GOPs of 9 and 4 frames
    assert run("encode", src, "-o", tmp_path / "n.tok", "--model", "tiny", "--gop", "9", "--frames", "13",
               "--no-correction").returncode == 0
    assert run("tokens", tmp_path / "n.tok", "-o", tmp_path / "n.npy").returncode == 0
    assert np.array_equal(np.load(tmp_path / "v.npy"), np.load(tmp_path / "n.npy"))
    assert_clean_error(run("tokens", tok_file, "-o", tmp_path / "x.npy", "--gop", "9"), "--gop applies only to a video")
    assert_clean_error(run("tokens", src, "-o", tmp_path / "x.txt"), ".npy or .safetensors")
    assert_clean_error(run("tokens", tmp_path / "none.mp4", "-o", tmp_path / "x.npy"), "none.mp4")


def test_detokenize(tok_file, tmp_path):
    """Exported tokens back to video: the file's size, frames and rate; the correction layer is
    not in the tokens, so the picture is below decode's but close to it."""
    assert run("tokens", tok_file, "-o", tmp_path / "t.safetensors").returncode == 0
    res = run("detokenize", tmp_path / "t.safetensors", "-o", tmp_path / "o.mkv",
              "--compare", tok_file.parent / "in.mkv")
    assert res.returncode == 0, res.stderr
    assert "decoded 21 frames 48x32 from tokens" in res.stderr and "PSNR" in res.stderr
    assert_clean_error(run("detokenize", tmp_path / "t.safetensors", "-o", tmp_path / "o.mkv"), "already exists")
    res = run("info", tmp_path / "t.safetensors")
    assert res.returncode == 0 and "token file" in res.stdout and "48x32, 21 frames" in res.stdout, res.stdout
    assert "latent frames 3 x2, 2, frames 9 x2, 3" in res.stdout
    assert "grid        6x4 tokens a latent frame (coded 48x32), 192 tokens, 229 a second of video" in res.stdout
    assert "made        precision " in res.stdout
    both = run("info", tmp_path / "t.safetensors", tok_file, tmp_path / "none.tok", "--json")
    assert both.returncode == 1 and "none.tok: no such file" in both.stderr  # the others still shown
    assert [d["file"] for d in json.loads(both.stdout)] == [str(tmp_path / "t.safetensors"), str(tok_file)]
    data = json.loads(run("info", tmp_path / "t.safetensors", "--json").stdout)
    assert data["shape"] == [8, 4, 6] and data["gop_frames"] == [9, 9, 3] and data["bits"] == 18
    np.save(tmp_path / "f.npy", np.zeros((2, 4, 6), np.float32))
    assert_clean_error(run("detokenize", tmp_path / "f.npy", "-o", tmp_path / "f.mkv"), "not integers")
    np.save(tmp_path / "t.npy", np.zeros((2, 4, 6), np.int32))
    assert_clean_error(run("detokenize", tmp_path / "t.npy", "-o", tmp_path / "g.mkv", "--fps", "x"), "--fps")
    res = run("detokenize", tmp_path / "t.npy", "-o", tmp_path / "g.y4m", "--model", "tiny", "-q")
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert (tmp_path / "g.y4m").read_bytes().count(b"FRAME") == 5


def piped(*args, stdin=b""):
    env = dict(os.environ, TOKCODEC_NO_REEXEC="1")
    return subprocess.run([sys.executable, "-m", "tokcodec", *map(str, args)], input=stdin, capture_output=True,
                          env=env, timeout=300)


def test_standard_input_and_output(tok_file, tmp_path):
    """"-" as ffmpeg takes it: decode to a Y4M stream on stdout, encode and decode from stdin,
    a .tok to stdout (the file's bytes but for the frame count); messages name stdin and stdout."""
    res = piped("decode", tok_file, "-o", "-")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(b"YUV4MPEG2 W48 H32 F25:1") and res.stdout.count(b"FRAME\n") == 21
    assert b"-> stdout" in res.stderr
    y4m = res.stdout
    res = piped("encode", "-", "-o", "-", "--model", "tiny", "--gop", "9", stdin=y4m)
    assert res.returncode == 0 and b"-> stdout" in res.stderr, res.stderr
    (tmp_path / "y.y4m").write_bytes(y4m)
    assert piped("encode", tmp_path / "y.y4m", "-o", tmp_path / "f.tok", "--model", "tiny", "--gop", "9").returncode == 0
    from tokcodec.codec.container import HEADER_SIZE
    # the same file, but for the header's frame count: patched in where the output can seek back
    # (FORMAT.md: 0 in a pipe, the trailer is authoritative)
    assert res.stdout[HEADER_SIZE:] == (tmp_path / "f.tok").read_bytes()[HEADER_SIZE:]
    # standard output that is a file opened for appending: the header is not patched at its start
    env = dict(os.environ, TOKCODEC_NO_REEXEC="1")
    (tmp_path / "appended").write_bytes(b"x" * 10)
    with open(tmp_path / "appended", "ab") as out:
        subprocess.run([sys.executable, "-m", "tokcodec", "encode", str(tmp_path / "y.y4m"), "-o", "-", "--model",
                        "tiny", "--gop", "9"], stdout=out, env=env, timeout=300, check=True)
    assert (tmp_path / "appended").read_bytes() == b"x" * 10 + res.stdout
    # a reader that stops early: exit 141, quietly, as Unix tools do
    proc = subprocess.Popen([sys.executable, "-m", "tokcodec", "decode", str(tok_file), "-o", "-"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the first frame is written
    assert proc.wait(timeout=300) == 141 and proc.stderr.read() == b""
    res = piped("decode", "-", "-o", tmp_path / "back.y4m", stdin=res.stdout)
    assert res.returncode == 0 and (tmp_path / "back.y4m").read_bytes().count(b"FRAME") == 21
    res = piped("tokens", "-", "-o", tmp_path / "t.safetensors", stdin=tok_file.read_bytes())
    assert res.returncode == 0, res.stderr
    res = piped("detokenize", "-", "-o", "-", stdin=(tmp_path / "t.safetensors").read_bytes())
    assert res.returncode == 0 and res.stdout.count(b"FRAME\n") == 21, res.stderr
    for args, stdin, needle in ((("encode", "-", "-o", tmp_path / "e.tok"), b"", "standard input is empty"),
                                (("encode", "-", "-o", tmp_path / "e.tok"), b"not a video", "stdin: not a readable"),
                                (("decode", tok_file, "-o", "-", "--compare", tok_file), b"", "--compare")):
        res = piped(*args, stdin=stdin)
        assert res.returncode != 0 and needle in res.stderr.decode() and b"Traceback" not in res.stderr, res.stderr
    assert not list(tmp_path.glob("-"))  # "-" is never taken as a file or directory name


def test_standard_output_is_not_a_terminal(monkeypatch):
    from pathlib import Path
    from tokcodec.codec.outputs import check_output
    from tokcodec.errors import OutputError

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    with pytest.raises(OutputError, match="terminal"):
        check_output(Path("-"), overwrite=False)


def test_decode_and_compare(tok_file, tmp_path):
    res = run("decode", tok_file, "-o", tmp_path / "o.y4m", "--compare", tok_file.parent / "in.mkv")
    assert res.returncode == 0, res.stderr
    assert "PSNR" in res.stderr and "21 frames" in res.stderr


def test_missing_input(tmp_path):
    assert_clean_error(run("encode", tmp_path / "nope.mp4", "-o", tmp_path / "a.tok"), "no such file")


def test_non_video_input(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    assert_clean_error(run("encode", p, "-o", tmp_path / "a.tok"), "notes.txt")


def test_existing_output_without_y(tok_file):
    assert_clean_error(run("encode", tok_file.parent / "in.mkv", "-o", tok_file, "--model", "tiny"),
                       "already exists", "-y")


def test_unwritable_output(tok_file, tmp_path):
    assert_clean_error(run("decode", tok_file, "-o", tmp_path / "no" / "dir" / "o.mkv"), "does not exist")
    assert_clean_error(run("decode", tok_file, "-o", tmp_path / "o.xyz"), "unknown output format")


def test_truncated_and_corrupted_tok(tok_file, tmp_path):
    data = tok_file.read_bytes()
    (tmp_path / "t.tok").write_bytes(data[: len(data) // 2])
    assert_clean_error(run("decode", tmp_path / "t.tok", "-o", tmp_path / "o.mkv"), "truncated")
    bad = bytearray(data)
    bad[136 + 32 + 5] ^= 0xFF  # inside chunk 0's payload
    (tmp_path / "c.tok").write_bytes(bytes(bad))
    assert_clean_error(run("decode", tmp_path / "c.tok", "-o", tmp_path / "o.mkv"), "chunk 0")
    assert not (tmp_path / "o.mkv").exists()


def test_gop_batch_takes_auto_or_a_count(tok_file, tmp_path):
    bad = run("decode", tok_file, "-o", tmp_path / "o.y4m", "--gop-batch", "0")
    assert bad.returncode == 2 and "--gop-batch" in bad.stderr and "Traceback" not in bad.stderr
    for value in ("auto", "3"):
        res = run("decode", tok_file, "-o", tmp_path / f"{value}.y4m", "--gop-batch", value, "-q")
        assert res.returncode == 0, res.stderr


def test_unknown_version(tok_file, tmp_path):
    bad = bytearray(tok_file.read_bytes())
    bad[8] = 7
    (tmp_path / "v.tok").write_bytes(bytes(bad))
    assert_clean_error(run("info", tmp_path / "v.tok"), "version 7")


def test_weights_mismatch(tok_file, tmp_path):
    from tokcodec.model.zoo import load_tokenizer, save_weights
    m = load_tokenizer("tiny")
    state = {k: v * 1.01 if v.is_floating_point() else v for k, v in m.tokenizer.state_dict().items()}
    save_weights(state, m.config, tmp_path / "w.safetensors")
    assert_clean_error(run("decode", tok_file, "-o", tmp_path / "o.mkv", "--model", tmp_path / "w.safetensors"),
                       "hash mismatch")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="machine has CUDA")
def test_cuda_without_cuda(tok_file, tmp_path):
    assert_clean_error(run("decode", tok_file, "-o", tmp_path / "o.mkv", "--device", "cuda"), "CUDA")


def test_models_lists_presets():
    res = run("models")
    assert res.returncode == 0 and "tiny" in res.stdout and "4x8x8" in res.stdout
    assert "5.54 M parameters" in res.stdout  # small, counted from its config


def test_output_closed_early_is_not_an_error():
    env = dict(os.environ, TOKCODEC_NO_REEXEC="1")
    proc = subprocess.Popen([sys.executable, "-m", "tokcodec", "models"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # like `| head` exiting before reading
    _, err = proc.communicate(timeout=300)
    assert err == b"" and proc.returncode == 141, err


def test_encode_refine(tmp_path):
    src = write_clip(tmp_path / "in.mkv", smooth_clip(5, 32, 48))
    res = run("encode", src, "-o", tmp_path / "r.tok", "--model", "tiny", "--refine", "2")
    assert res.returncode == 0, res.stderr
    assert "refine 2" in res.stderr
    res = run("encode", src, "-o", tmp_path / "n.tok", "--model", "tiny", "--refine", "-1")
    assert res.returncode == 2 and "--refine" in res.stderr and not (tmp_path / "n.tok").exists()


@pytest.mark.parametrize("omp", [None, "1"])
def test_cli_thread_policy(monkeypatch, omp):
    """encode/decode/bench/batch take one torch thread per core unless OMP_NUM_THREADS chose."""
    import torch

    from tokcodec import cli

    monkeypatch.setenv("TOKCODEC_NO_REEXEC", "1")
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    monkeypatch.setattr(sys, "argv", ["tokcodec", "encode", "--help"])
    monkeypatch.setattr(os, "cpu_count", lambda: 3)  # differs from conftest's count
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)  # (what it goes by)
    monkeypatch.setattr("tokcodec.cpus.cpu_quota", lambda *a: None)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with pytest.raises(SystemExit):
            cli.main()
        assert torch.get_num_threads() == (3 if omp is None else 1)
    finally:
        torch.set_num_threads(before)


def test_every_command_shares_one_error_policy(tmp_path):
    """bench and batch fail as encode does: one `tokcodec: error:` line, exit 1, no traceback."""
    missing = tmp_path / "missing.mkv"
    for args in (("encode", missing, "-o", tmp_path / "a.tok"),
                 ("bench", missing, "-o", tmp_path / "bench", "--codecs", "tokcodec"),
                 ("batch", "encode", missing, tmp_path / "out")):
        res = run(*args)
        assert res.returncode == 1, (args, res.stderr)
        assert_clean_error(res, "tokcodec: error:")


def test_the_cli_package_starts_light_and_without_cycles():
    """Importing the CLI loads no torch, no coder and no batch engine (start-up stays fast), and
    its sub-commands import the policy module, never the app."""
    code = ("import sys, tokcodec.cli, tokcodec.cli.batch, tokcodec.cli.bench\n"
            "heavy = [m for m in ('torch', 'av', 'tokcodec.batch.run', 'tokcodec.codec.context_coder3') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    from pathlib import Path
    import tokcodec.cli as cli_pkg
    for name in ("batch.py", "bench.py", "policy.py", "options.py", "progress.py"):
        text = (Path(cli_pkg.__file__).parent / name).read_text()
        assert "tokcodec.cli.app" not in text and "from tokcodec.cli import" not in text, name


def test_encode_correction_options_pick_the_format(tmp_path):
    """--no-detail writes offset-only records (format 2.0, for readers from before the detail
    gains); --no-correction tokens only (1.0); the default 2.2 (records may be range coded)."""
    src = write_clip(tmp_path / "in.mkv", smooth_clip(9, 32, 48))
    for option, version in ((None, "2.2"), ("--no-detail", "2.0"), ("--no-correction", "1.0")):
        out = tmp_path / f"{option or 'default'}.tok"
        res = run("encode", src, "-o", out, "--model", "tiny", "-q", *([option] if option else []))
        assert res.returncode == 0, res.stderr
        info = json.loads(run("info", out, "--json").stdout)
        assert info["header"]["version"] == version, option


def test_encode_sharpen_sends_larger_gains_and_says_so(tmp_path):
    """--sharpen scales the detail gains the records carry (0: none); the stats line names it;
    out of range it is a usage error before anything is written."""
    from tokcodec.codec.container import open_tok
    from tokcodec.codec.correction import Correction

    src = write_clip(tmp_path / "in.mkv", smooth_clip(9, 32, 48))

    def gains(option: str) -> np.ndarray:
        out = tmp_path / f"s{option}.tok"
        res = run("encode", src, "-o", out, "--model", "tiny", "--sharpen", option)
        assert res.returncode == 0, res.stderr
        assert f"sharpen {option}" in res.stderr or option == "0", res.stderr
        with open_tok(out) as reader:
            chunk = reader.read_chunk(0)
            record = Correction.unpack(chunk.correction, reader.header.width, reader.header.height)
        return np.abs(record.gains.astype(int))

    none, fit, doubled = gains("0"), gains("1"), gains("2")
    assert not none.any() and fit.any()
    assert doubled.sum() > 1.5 * fit.sum(), (doubled.sum(), fit.sum())
    res = run("encode", src, "-o", tmp_path / "bad.tok", "--model", "tiny", "--sharpen", "9")
    assert res.returncode != 0 and not (tmp_path / "bad.tok").exists()
    res = run("encode", src, "-o", tmp_path / "bad.tok", "--model", "tiny", "--sharpen", "2", "--no-detail")
    assert_clean_error(res, "detail gains")
    assert not (tmp_path / "bad.tok").exists()


def test_usage_errors_are_one_line_too():
    """typer printed an unknown option or a bad value in a three-line box; like every other
    error it is one line now, with where to look, and still exit status 2."""
    for args, needle in ((("encode", "--bogus"), "No such option: --bogus (see `tokcodec encode --help`)"),
                         (("tokens", "a.tok", "-o", "y.npy", "--split", "0"), "Invalid value for '--split'"),
                         (("batch", "encode"), "Missing argument 'src'. (see `tokcodec batch encode --help`)")):
        res = run(*args)
        assert res.returncode == 2, res.stderr
        assert_clean_error(res, needle)
    res = run()  # no command: the help, as before
    assert res.returncode == 2 and "encode" in res.stdout and "Traceback" not in res.stderr
