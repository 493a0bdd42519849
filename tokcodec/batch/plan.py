"""What a batch run has to do: walk SRC, filter by globs, mirror paths into DST, decide skips.

Names: encode keeps the input's full name (`a/clip.mp4` -> `a/clip.mp4.tok`) so that decode can
restore it (`a/clip.mp4.tok` -> `a/clip.mp4`); tokens appends .safetensors (`a/clip.mp4` ->
`a/clip.mp4.safetensors`, `a/clip.mp4.tok` -> `a/clip.mp4.tok.safetensors`). An output is
complete when its final name exists (only an atomic rename creates it) and it is not older than
its input.
"""
from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tokcodec.codec.outputs import NAME_MAX, pid_alive
from tokcodec.errors import ArgumentError, InputError, OutputError
from tokcodec.io import IMAGE_INPUT_SUFFIXES, MEDIA_INPUT_SUFFIXES, VIDEO_OUTPUT_SUFFIXES

TOK_SUFFIX = ".tok"
TOKENS_SUFFIX = ".safetensors"
OPS = ("encode", "decode", "tokens")
DECODE_TARGETS = ("mkv", "mp4", "y4m")
RESTORABLE_SUFFIXES = VIDEO_OUTPUT_SUFFIXES | {".png", ".jpg", ".jpeg"}  # what decode can write as-is
FALLBACK_VIDEO = ".mkv"   # lossless, for inputs like .avi/.webm that decode cannot write
FALLBACK_IMAGE = ".png"
# hidden temporary outputs: codec.outputs.temp_path -> ".{stem}.part-{pid}[-{n}]{suffix}"
PART_RE = re.compile(r"^\..+\.part-(\d+)(?:-\d+)?(\.[^./]+)?$")
# the suffixes of what batch writes: a file of another kind under such a name is someone else's
PART_SUFFIXES = {".tok", ".mkv", ".mp4", ".mov", ".y4m", ".png", ".jpg", ".jpeg", ".npy", ".safetensors"}
MANIFEST_NAME = "manifest.jsonl"
LOCK_NAME = ".tokcodec-batch.lock"


@dataclass(frozen=True)
class Job:
    index: int
    input: Path      # absolute
    output: Path     # absolute
    rel: str         # input path relative to SRC (posix), for messages
    overwrite: bool  # an older or --force'd output exists and is replaced


@dataclass
class Plan:
    op: str
    src: Path
    dst: Path
    todo: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): unreadable dirs
    left_out: list[str] = field(default_factory=list)  # files of SRC the default selection passed over

    def left_out_note(self) -> str | None:
        """One line naming the files left out (up to 5), or None."""
        if not self.left_out:
            return None
        named = ", ".join(self.left_out[:5]) + (f" and {len(self.left_out) - 5} more" if len(self.left_out) > 5 else "")
        what = "video, image or .tok" if self.op == "tokens" else "video or image"
        return (f"{len(self.left_out)} file{'s' if len(self.left_out) > 1 else ''} of {self.src} left out, "
                f"not {what} by name: {named} (--include takes them)")

    @property
    def total(self) -> int:
        return len(self.todo) + len(self.skipped)


def _matches(rel: str, patterns: Iterable[str]) -> bool:
    """A glob matches the path relative to SRC or just the file name (`*.mp4`, `cam1/*`, `**/x.mov`)."""
    name = rel.rsplit("/", 1)[-1]
    for pat in patterns:
        pat = pat.removeprefix("./")
        if fnmatch.fnmatchcase(rel, pat) or fnmatch.fnmatchcase(name, pat):
            return True
        if pat.startswith("**/") and fnmatch.fnmatchcase(rel, pat[3:]):
            return True
    return False


def wanted(op: str, rel: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Default selection: media files for encode, .tok files for decode, both for tokens;
    --include replaces it."""
    if include:
        ok = _matches(rel, include)
    elif op == "encode":
        ok = Path(rel).suffix.lower() in MEDIA_INPUT_SUFFIXES
    elif op == "tokens":
        ok = Path(rel).suffix.lower() in MEDIA_INPUT_SUFFIXES or rel.lower().endswith(TOK_SUFFIX)
    else:
        ok = rel.lower().endswith(TOK_SUFFIX)
    return ok and not _matches(rel, exclude)


def walk(src: Path, skip_dirs: Sequence[Path] = (),
         errors: list[tuple[str, str]] | None = None) -> list[str]:
    """Relative posix paths of the files under src, sorted; hidden files and directories (and
    skip_dirs, e.g. DST inside SRC) are left out. Symlinked directories are not followed; broken
    file symlinks are kept so that they are reported. Unreadable directories go to `errors`."""
    skip = {os.path.realpath(d) for d in skip_dirs}
    found: list[str] = []

    def onerror(exc: OSError) -> None:
        if errors is not None:
            errors.append((str(exc.filename), f"cannot list directory ({exc.strerror or exc})"))

    for root, dirs, files in os.walk(src, onerror=onerror):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and os.path.realpath(os.path.join(root, d)) not in skip)
        for name in files:
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            if os.path.isfile(path) or os.path.islink(path):
                found.append(Path(os.path.relpath(path, src)).as_posix())
    return sorted(found)


def encode_output(dst: Path, rel: str) -> Path:
    return dst / (rel + TOK_SUFFIX)


def decode_name(tok_name: str, to: str | None) -> tuple[str, str]:
    """(preferred name, collision-proof name) of the decoded output of `tok_name`."""
    base = tok_name[: -len(TOK_SUFFIX)] if tok_name.lower().endswith(TOK_SUFFIX) else tok_name
    suffix = Path(base).suffix.lower()
    stem = base[: -len(suffix)] if suffix else base
    if to:
        new = "." + to.lower().lstrip(".")
    elif suffix in RESTORABLE_SUFFIXES:
        return base, base
    else:
        new = FALLBACK_IMAGE if suffix in IMAGE_INPUT_SUFFIXES else FALLBACK_VIDEO
    return stem + new, base + new


def decode_outputs(dst: Path, rels: Sequence[str], to: str | None, among: Sequence[str] = ()) -> list[Path]:
    """Mirror .tok paths to output paths; names that would collide (`a.mp4.tok` and `a.mkv.tok`
    with --to mkv) keep their original extension instead (`a.mp4.mkv`, `a.mkv`... -> `a.mkv.mkv`).
    Collisions are counted over ``among`` too (every .tok of the tree), so that a file's name does
    not depend on which files --include picks for a run."""
    def split(rel: str) -> tuple[str, str, str]:
        parent, _, name = rel.rpartition("/")
        return (parent, *decode_name(name, to))

    every = sorted(set(rels) | set(among))
    counts: dict[tuple[str, str], int] = {}
    for parent, preferred, _ in map(split, every):
        counts[(parent, preferred)] = counts.get((parent, preferred), 0) + 1
    names = {rel: preferred if counts[(parent, preferred)] == 1 else unique
             for rel, (parent, preferred, unique) in zip(every, map(split, every))}
    # a name still taken twice (`a.avi.tok`'s a.avi.mkv and `a.avi.mkv.tok`'s): each keeps its
    # whole .tok name in front (a.avi.tok.mkv), which no other can have
    taken: dict[tuple[str, str], int] = {}
    for rel in every:
        key = (rel.rpartition("/")[0], names[rel])
        taken[key] = taken.get(key, 0) + 1
    out = []
    for rel in rels:
        parent, _, tok_name = rel.rpartition("/")
        name = names[rel]
        if taken[(parent, name)] > 1:
            name = tok_name + Path(name).suffix
        out.append(dst / parent / name if parent else dst / name)
    return out


def is_complete(src: Path, out: Path, size: int | None = None) -> bool:
    """Final name present (only renames of finished temp files create it), not older than src,
    and of the ``size`` the run that made it recorded, where one did: an output truncated or
    emptied since (by hand, a full disk's copy) was skipped on every rerun, and the run said done."""
    try:
        out_stat = out.stat()
        return (out.is_file() and out_stat.st_mtime_ns >= src.stat().st_mtime_ns
                and (size is None or out_stat.st_size == size))
    except OSError:
        return False


def make_plan(op: str, src: Path, dst: Path, *, include: Sequence[str] = (),
              exclude: Sequence[str] = (), to: str | None = None, force: bool = False,
              made_from: dict[str, str] | None = None, sizes: dict[str, int] | None = None) -> Plan:
    """What a run has to do. ``made_from``: output -> the input an earlier run made it from (the
    manifest's); an output made from another input is redone, not skipped. ``sizes``: output ->
    its size in bytes when that run made it; an output of another size now is redone."""
    if op not in OPS:
        raise ArgumentError(f"unknown batch operation {op!r}")
    if to is not None and to.lower().lstrip(".") not in DECODE_TARGETS:
        raise ArgumentError(f"--to must be one of {', '.join(DECODE_TARGETS)}, got {to!r}")
    src, dst = Path(os.path.abspath(src)), Path(os.path.abspath(dst))
    if not src.exists():
        raise InputError(f"{src}: no such file or directory")
    if op == "decode" and _same_place(src, dst):
        raise OutputError(f"{dst}: decode needs a DST different from SRC (outputs would sit beside, "
                          "and could replace, the original videos)")
    errors: list[tuple[str, str]] = []
    single = src.is_file()
    if single:
        root, found = src.parent, [src.name]
    else:
        root, found = src, walk(src, [dst] if dst != src else [], errors)
    rels = [r for r in found if single or wanted(op, r, include, exclude)]
    if op == "encode":
        outputs = [encode_output(dst, r) for r in rels]
    elif op == "tokens":
        outputs = [dst / (r + TOKENS_SUFFIX) for r in rels]
    else:
        outputs = decode_outputs(dst, rels, to, among=[r for r in found if r.lower().endswith(TOK_SUFFIX)])
    plan = Plan(op, src, dst, errors=errors)
    if op != "decode" and not include and not exclude and not single and dst != src:
        chosen = set(rels)
        plan.left_out = [r for r in found if r not in chosen]
    made_from, sizes = made_from or {}, sizes or {}
    for i, (rel, out) in enumerate(zip(rels, outputs)):
        inp = root / rel
        size = len(os.fsencode(out.name))  # (the input's name, and .tok added, say)
        problem = f"a name of {size} bytes, more than the {NAME_MAX} a file system takes" if size > NAME_MAX else None
        if problem is None:
            try:
                exists = out.exists()
            except OSError as exc:
                problem = exc.strerror or str(exc)
        if problem:
            plan.errors.append((str(inp), f"cannot write its output {out.name[:40]}...: {problem}"))
            continue
        other = _made_from_other(made_from.get(str(out)), rel)
        if exists and not force and not other and is_complete(inp, out, sizes.get(str(out))):
            plan.skipped.append(Job(i, inp, out, rel, False))
        else:
            plan.todo.append(Job(i, inp, out, rel, exists))
    return plan


def _same_place(a: Path, b: Path) -> bool:
    """Whether two paths name one file or folder: by the file system where both exist (a
    case-insensitive one, macOS' and Windows' default, takes `toks` and `Toks` as one), else by
    their resolved names."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _made_from_other(made_from: str | None, rel: str) -> bool:
    """Whether an output an earlier run recorded as made from ``made_from`` came from another
    input than ``rel`` (compared by the path under the source root, so a moved SRC still resumes;
    outputs are looked up by their own path, so after DST moved there is nothing to compare)."""
    if made_from is None:
        return False
    parts = Path(rel).parts
    return Path(made_from).parts[-len(parts):] != parts


def stale_parts(dst: Path, pids: Iterable[int] | None = None) -> list[Path]:
    """Temporary outputs under dst left by a killed run: those of `pids`, or when None those whose
    writer is no longer alive on this host (callers hold the DST lock, so no other run writes).
    Only names batch writes count (a suffix of its outputs, outside hidden folders): a user's
    `.notes.part-12.txt` or `.git/.index.part-7.lock` is theirs."""
    wanted_pids = set(pids) if pids is not None else None
    found = []
    for root, dirs, files in os.walk(dst):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # (batch writes in none: .git, .Trash)
        for name in files:
            m = PART_RE.match(name)
            if not m or (m.group(2) or "").lower() not in PART_SUFFIXES:
                continue
            pid = int(m.group(1))
            if (pid in wanted_pids) if wanted_pids is not None else not pid_alive(pid):
                found.append(Path(root) / name)
    return found


def remove_stale_parts(dst: Path, pids: Iterable[int] | None = None) -> int:
    n = 0
    for path in stale_parts(dst, pids):
        try:
            path.unlink()
            n += 1
        except FileNotFoundError:
            pass
    return n
