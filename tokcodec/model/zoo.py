"""Loading tokenizers: named presets with shipped weights, or a user's safetensors file.

Weights are safetensors only (no pickle). Every loaded model carries the SHA-256 of its weights,
which the container records so a decoder can refuse tokens made by other weights. Shipped weights
are checked against weights/SHA256SUMS before use, so a damaged installation fails loudly instead
of decoding garbage. A shipped file may lie in the package as a delta against another shipped file
(``NAME.safetensors.xdelta``, model/weights_delta.py); it is rebuilt byte for byte when loaded.
"""
from __future__ import annotations

import hashlib
import os
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tokcodec.errors import FormatError, ModelError
from tokcodec.model.presets import PRESETS, TokenizerConfig, get_preset, resolve_name
from tokcodec.model.weights_delta import (DeltaError, apply_delta, canonical_safetensors, delta_path,
                                         safetensors_header)

if TYPE_CHECKING:  # torch is imported where a model is built: hashes and files (verify) do without it
    import torch

    from tokcodec.codec.container import Header
    from tokcodec.model.tokenizer import VideoTokenizer

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
CONFIG_KEY = "tokcodec_config"
FORMAT_KEY = "format"
WEIGHTS_FORMAT = "tokcodec-weights-v1"
MAX_WEIGHTS_BYTES = 2 << 30
MAX_DELTA_CHAIN = 8  # a shipped delta's base may itself be a delta, this many deep at most


@dataclass
class LoadedModel:
    tokenizer: VideoTokenizer
    name: str            # preset name recorded in .tok headers (or the file stem for custom weights)
    sha256: str          # hex digest of the weights
    trained: bool
    source: str          # path of the weights file, or "random-init (untrained)"
    shipped: bool = True  # shipped with tokcodec (a preset's weights), not a file of your own
    prior_problems: tuple[str, ...] = ()  # coder-3 priors beside your weights that were not used

    @property
    def config(self) -> TokenizerConfig:
        return self.tokenizer.cfg


def shipped_weights_path(preset: str) -> Path:
    return WEIGHTS_DIR / f"{preset}.safetensors"


def _in_package(path: Path) -> bool:
    return path.parent.resolve() == WEIGHTS_DIR.resolve()


def weights_exist(path: Path) -> bool:
    """Whether weights are at ``path``: the file, or for shipped weights its delta form."""
    return path.is_file() or (_in_package(path) and delta_path(path).is_file())


def weights_bytes(path: Path, _depth: int = 0) -> bytes:
    """The bytes of a weights file, rebuilt from its delta form where the package holds that."""
    delta = delta_path(path)
    try:
        if not path.exists() and _in_package(path) and delta.exists():
            if _depth >= MAX_DELTA_CHAIN:
                raise ModelError(f"{path}: a chain of more than {MAX_DELTA_CHAIN} weights deltas")
            if delta.stat().st_size > MAX_WEIGHTS_BYTES:
                raise ModelError(f"{delta}: larger than the {MAX_WEIGHTS_BYTES}-byte weights limit")
            try:
                return apply_delta(delta.read_bytes(), lambda name: weights_bytes(path.parent / name, _depth + 1),
                                   MAX_WEIGHTS_BYTES)
            except DeltaError as exc:
                raise ModelError(f"{delta}: {exc} (damaged installation; reinstall tokcodec)") from None
        size = path.stat().st_size
        if size > MAX_WEIGHTS_BYTES:
            raise ModelError(f"{path}: weights file of {size} bytes is larger than the {MAX_WEIGHTS_BYTES} limit")
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: weights file not found") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read weights ({exc.strerror or exc})") from None


def shipped_digests() -> dict[str, str]:
    """File name -> SHA-256 of the weights this package ships (from weights/SHA256SUMS)."""
    sums = WEIGHTS_DIR / "SHA256SUMS"
    if not sums.exists():
        return {}
    out = {}
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64:
            out[parts[1].lstrip("*")] = parts[0].lower()
    return out


def _check_shipped(path: Path, digest: str) -> None:
    expected = shipped_digests().get(path.name)
    if expected is None:
        raise ModelError(f"{path}: shipped weights are not listed in {WEIGHTS_DIR / 'SHA256SUMS'} "
                         "(damaged installation; reinstall tokcodec)")
    if digest != expected:
        raise ModelError(f"{path}: shipped weights are damaged (sha256 {digest[:16]}..., expected "
                         f"{expected[:16]}...); reinstall tokcodec")


#: what ``model`` takes: a preset's name, or the path of a weights file (str or a path object)
ModelName = str | os.PathLike


def is_weights_file(name_or_path: ModelName) -> bool:
    """Whether ``--model`` names a weights file (else a preset). A path object always does (a
    Path given as ``model`` ended in "AttributeError: no attribute 'endswith'")."""
    if not isinstance(name_or_path, str):
        return True
    return name_or_path.endswith(".safetensors") or bool(Path(name_or_path).suffix and Path(name_or_path).exists())


def weights_sha256(name_or_path: str) -> str:
    """SHA-256 of the weights a name or path resolves to, without building the model when a file
    holds them (random-init presets are built: their hash is that of their state)."""
    as_path = Path(name_or_path)
    if is_weights_file(name_or_path):
        path = as_path
    else:
        preset = resolve_name(name_or_path)
        get_preset(preset)
        path = shipped_weights_path(preset)
        if not weights_exist(path):
            return load_tokenizer(preset).sha256
    if not path.exists() and weights_exist(path):
        return hashlib.sha256(weights_bytes(path)).hexdigest()
    try:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read weights ({exc.strerror or exc})") from None


def use_priors_of(model: ModelName, header: Header, source: str) -> None:
    """Before entropy coding a file's tokens without the network (tokens, cut): the coder-3 priors
    beside weights of your own (``model``, a .safetensors file), which must be the weights that
    made ``source``; a preset name needs nothing (its prior ships), but must be the one that made it."""
    if not is_weights_file(model):
        if resolve_name(str(model)) != resolve_name(header.model_name):
            raise ModelError(f"{source}: made with {header.model_name} weights, not {model}'s")
        return
    digest = weights_sha256(str(model))
    if digest != header.weights_sha256:
        raise ModelError(f"{source}: weights hash mismatch: the file was made with {header.model_name} weights "
                         f"{header.weights_sha256[:16]}..., {model} has {digest[:16]}...")
    from tokcodec.codec.context_coder3 import use_priors_beside

    use_priors_beside(Path(model), digest)


def _read_weights(path: Path, shipped: bool) -> tuple[dict[str, torch.Tensor], dict[str, str], str]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    data = weights_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    if shipped:
        _check_shipped(path, digest)  # before a byte of it is parsed
    try:
        metadata = _metadata(data, path)
        tensors = load(data)
    except (SafetensorError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not a valid safetensors file ({exc})") from None
    return tensors, metadata, digest


def weights_info(path: Path) -> dict | None:
    """What ``tokcodec info`` shows of a weights file, without torch: its preset, parameters,
    dtypes, hash, training record (metadata) and the coder-3 priors beside it; None when the file
    is a safetensors file but not tokcodec weights (e.g. a token file)."""
    from math import prod

    from tokcodec.codec import context_coder3 as c3

    size = path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise ModelError(f"{path}: {size} bytes, over the {MAX_WEIGHTS_BYTES >> 20} MiB a weights file may take")
    data = path.read_bytes()
    try:
        header, _ = safetensors_header(data)
    except DeltaError:
        return None
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or meta.get(FORMAT_KEY) != WEIGHTS_FORMAT:
        return None
    tensors = {k: v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    for key, entry in tensors.items():  # (a shape of ["x", 10**11] was multiplied out: 100 GB of "x")
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape) \
                or not isinstance(entry.get("dtype", ""), str):
            raise ModelError(f"{path}: tensor {key[:60]!r} has an invalid shape or dtype in its header")
    try:
        config = json.loads(meta.get(CONFIG_KEY, "{}"))
    except (ValueError, TypeError, RecursionError):
        config = {}
    if not isinstance(config, dict):
        config = {}
    digest = hashlib.sha256(data).hexdigest()
    priors = []
    current, *_ = files = c3.prior_files_beside(path)
    for prior_file in files:
        try:
            prior = c3.read_prior_file(prior_file)
            note = "fitted for these weights" if prior.model_sha256 == digest else "fitted for OTHER weights: not used"
            key = prior.key.hex()
        except FileNotFoundError:
            continue
        except (FormatError, OSError) as exc:
            note, key = f"unreadable: {exc}", ""
        priors.append({"file": str(prior_file), "key": key, "note": note, "current": prior_file == current})
    return {
        "file": str(path), "bytes": size, "sha256": digest, "preset": config.get("name", "?"),
        "parameters": sum(prod(t.get("shape", [])) for t in tensors.values()),
        "dtypes": sorted({t.get("dtype", "?") for t in tensors.values()}),
        "metadata": {k: v for k, v in sorted(meta.items()) if k not in (FORMAT_KEY, CONFIG_KEY)},
        "shipped": path.resolve().parent == WEIGHTS_DIR, "priors": priors,
    }


def _metadata(data: bytes, path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's bytes, read from its JSON header."""
    try:
        header, _ = safetensors_header(data)
    except DeltaError as exc:
        raise ModelError(f"{path}: {exc}") from None
    return header.get("__metadata__", {}) or {}


def random_init(cfg: TokenizerConfig, seed: int = 0) -> VideoTokenizer:
    """Deterministic untrained weights (same seed -> same weights -> same hash on one torch version)."""
    import torch

    from tokcodec.model.tokenizer import VideoTokenizer

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return VideoTokenizer(cfg)
    finally:
        torch.random.set_rng_state(state)


def parameter_count(cfg: TokenizerConfig) -> int:
    """Parameters of a preset, counted without allocating them (meta device)."""
    import torch

    from tokcodec.model.tokenizer import VideoTokenizer

    with torch.device("meta"):
        return sum(p.numel() for p in VideoTokenizer(cfg).parameters())


def state_sha256(model: VideoTokenizer) -> str:
    from safetensors.torch import save

    return hashlib.sha256(save({k: v.contiguous() for k, v in model.state_dict().items()})).hexdigest()


def load_tokenizer(name_or_path: ModelName = "default", device: str | torch.device = "cpu") -> LoadedModel:
    """Load a preset's shipped weights (random init when none are shipped), or a .safetensors file,
    onto ``device`` (cpu, cuda, cuda:N or auto; DeviceError when it is not there). The returned
    model may be handed to any number of calls on one device, from several threads too (a call
    places it for its device once: codec/pipeline.prepare_model); load one per device."""
    from tokcodec.device import select_runtime

    device = select_runtime(str(device), "fp32").device  # (a DeviceError, not torch's RuntimeError)
    as_path = Path(name_or_path)
    if is_weights_file(name_or_path):
        if not weights_exist(as_path):
            raise ModelError(f"{as_path}: weights file not found")
        return _load_file(as_path, None, device)
    preset = resolve_name(name_or_path)
    cfg = get_preset(preset)
    path = shipped_weights_path(preset)
    if weights_exist(path):
        return _load_file(path, preset, device)
    model = random_init(cfg).to(device).eval()
    return LoadedModel(model, preset, state_sha256(model), False, "random-init (untrained)")


def weights_config(name_or_path: str) -> TokenizerConfig:
    """The model config that weights (a preset name or a .safetensors file) hold, read from the
    file's metadata without loading its tensors."""
    if not is_weights_file(name_or_path):
        return get_preset(name_or_path)
    metadata = _file_metadata(Path(name_or_path))
    try:
        return TokenizerConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
    except (KeyError, ValueError, TypeError, RecursionError) as exc:
        raise ModelError(f"{name_or_path}: not a tokcodec weights file ({exc})") from None


def weights_trained(name_or_path: str) -> bool:
    """Whether the weights a preset name or a .safetensors file names are trained (as the
    LoadedModel's ``trained`` would say), without loading them: a preset with no shipped weights
    is random-init."""
    if not is_weights_file(name_or_path):
        return weights_exist(shipped_weights_path(resolve_name(name_or_path)))
    return _file_metadata(Path(name_or_path)).get("trained", "true") == "true"


def _file_metadata(as_path: Path) -> dict[str, str]:
    from safetensors import SafetensorError, safe_open

    try:
        if not as_path.exists() and weights_exist(as_path):  # a shipped file kept as a delta
            return _metadata(weights_bytes(as_path), as_path)
        with safe_open(str(as_path), "np") as fh:  # (metadata alone: numpy, not torch, is imported)
            return fh.metadata() or {}
    except FileNotFoundError:
        raise ModelError(f"{as_path}: weights file not found") from None
    except (OSError, SafetensorError, KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"{as_path}: not a tokcodec weights file ({exc})") from None


def shipped_version(preset: str, digest: str) -> Path | None:
    """The shipped weights file of a preset whose SHA-256 is ``digest``: its current weights, or a
    previous version kept as PRESET-SHA8.safetensors so that files made with it still decode."""
    digest = digest.lower()
    if preset not in PRESETS:
        return None
    listed = shipped_digests()
    for name in (f"{preset}.safetensors", f"{preset}-{digest[:8]}.safetensors"):
        if listed.get(name) == digest and weights_exist(WEIGHTS_DIR / name):
            return WEIGHTS_DIR / name
    return None


def kept_versions(preset: str) -> list[str]:
    """SHA-256 prefixes of a preset's previous shipped weights (PRESET-SHA8.safetensors) that are
    kept so that files made with them still decode."""
    current = shipped_weights_path(preset)
    kept = {shipped_version(preset, digest) for digest in shipped_digests().values()} - {None, current}
    return sorted(path.stem.rsplit("-", 1)[1] for path in kept)


def load_tokenizer_version(name: str, digest: str, device: str | torch.device = "cpu") -> LoadedModel:
    """The shipped weights of preset ``name`` whose SHA-256 is ``digest`` (current or a previous
    version), for decoding a file that records both; the current weights when no shipped version
    has that hash (callers compare the hashes and report the mismatch)."""
    preset = resolve_name(name)
    path = shipped_version(preset, digest)
    return _load_file(path, preset, device) if path else load_tokenizer(name, device)


def _load_file(path: Path, preset: str | None, device: str | torch.device) -> LoadedModel:
    tensors, metadata, digest = _read_weights(path, shipped=preset is not None)
    if metadata.get(FORMAT_KEY) != WEIGHTS_FORMAT or CONFIG_KEY not in metadata:
        raise ModelError(f"{path}: not a tokcodec weights file (missing {FORMAT_KEY}/{CONFIG_KEY} metadata)")
    import torch

    from tokcodec.model.tokenizer import VideoTokenizer

    try:
        cfg = TokenizerConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
        # built first without memory ("meta" tensors: shapes only), and for real only once its
        # tensors are those of the file: a config of a few bytes can name billions of parameters
        with torch.device("meta"):
            own = VideoTokenizer(cfg).state_dict()
    except (ValueError, TypeError, AttributeError, RuntimeError, ModelError) as exc:
        raise ModelError(f"{path}: bad model config in metadata ({exc})") from None
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise ModelError(f"{path}: weights do not fit preset {cfg.name!r} "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key, value in tensors.items():
        if value.shape != own[key].shape:
            raise ModelError(f"{path}: tensor {key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}")
    model = VideoTokenizer(cfg)
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})
    # a shipped file named by its path (current or kept version) still records its preset's name
    is_shipped = cfg.name in PRESETS and path.resolve() in {
        p.resolve() for p in (shipped_weights_path(cfg.name), shipped_version(cfg.name, digest)) if p}
    name = preset or (cfg.name if is_shipped else path.stem)
    shipped = preset is not None or is_shipped
    problems: list[str] = []
    if not shipped:  # weights of your own: their coder-3 prior (tokcodec fit-prior) lies beside them
        from tokcodec.codec.context_coder3 import use_priors_beside

        problems = use_priors_beside(path, digest)
    return LoadedModel(model.to(device).eval(), name, digest, metadata.get("trained", "true") == "true", str(path),
                       shipped, tuple(problems))


def save_weights(state: dict[str, torch.Tensor], cfg: TokenizerConfig, path: Path,
                 fp16: bool = True, extra: dict[str, str] | None = None) -> str:
    """Write tokenizer weights as safetensors with the config in the metadata; returns the SHA-256."""
    from safetensors.torch import save

    tensors = {k: (v.detach().half() if fp16 and v.is_floating_point() else v.detach()).contiguous().cpu()
               for k, v in state.items()}
    meta = {FORMAT_KEY: WEIGHTS_FORMAT, CONFIG_KEY: json.dumps(cfg.to_dict()), "trained": "true"}
    meta.update(extra or {})
    data = canonical_safetensors(save(tensors, metadata=meta))  # (the same weights, the same hash)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()
