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


@pytest.fixture()
def wandb_offline(monkeypatch, tmp_path) -> None:
    """W&B runs stay on disk (OUTPUT_DIR/wandb) and wandb keeps its settings and cache under tmp_path."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
