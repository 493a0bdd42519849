"""A fast subset of the .tok reader fuzzing (bench/fuzz_reader.py runs tens of thousands of cases)."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tokcodec.fuzz import MUTATIONS, exercise, mutate, reseal, seed_files  # noqa: E402

_SEEDS: list[bytes] = []


def seeds(tmp_root: Path) -> list[bytes]:
    if not _SEEDS:
        _SEEDS.extend(seed_files(tmp_root))
    return _SEEDS


@pytest.fixture(scope="module")
def seed_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_seed_files_read_fully(seed_dir: Path) -> None:
    for i, data in enumerate(seeds(seed_dir)):
        path = seed_dir / f"seed{i}.tok"
        path.write_bytes(data)
        outcome = exercise(path)
        assert outcome.ok and outcome.detail == "ok/ok/ok", outcome
        assert reseal(data) == data          # resealing a valid file changes nothing


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(MUTATIONS), case=st.integers(0, 2**32 - 1))
def test_damaged_files_fail_cleanly(seed_dir: Path, kind: str, case: int) -> None:
    _, data = mutate(seeds(seed_dir), random.Random(case), kind)
    path = seed_dir / "case.tok"
    path.write_bytes(data)
    outcome = exercise(path)
    assert outcome.ok, f"{kind} case {case}: {outcome.detail}"


def test_resealed_damage_reaches_the_entropy_decoder(seed_dir: Path) -> None:
    """Resealed payload edits get past every CRC of the container: the coder itself must catch them."""
    reached = 0
    coded = [s for i, s in enumerate(seeds(seed_dir)) if i != 1]   # all but the raw-coder file
    for case in range(90):
        _, data = mutate(coded, random.Random(case), "flip-sealed")
        path = seed_dir / "sealed.tok"
        path.write_bytes(data)
        outcome = exercise(path)
        assert outcome.ok, outcome.detail
        reached += outcome.detail.startswith("ok/")   # the container checks passed
    assert reached > 0
