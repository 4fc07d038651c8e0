"""Shared pytest fixtures: one generated synthetic dataset root per test session."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """The `smoke` synthetic datasets (all of them), generated once per session, seed 0."""
    from benchmarks.synthetic import generate

    root = tmp_path_factory.mktemp("datasets")
    generate(root, profile="smoke", seed=0)
    return root


@pytest.fixture()
def detectron2_datasets(synthetic_root, monkeypatch) -> Path:
    """Points $DETECTRON2_DATASETS at the synthetic root (for subprocesses started by a test)."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(synthetic_root))
    return synthetic_root
