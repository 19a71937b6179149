"""Shared fixtures: the real data in ../shared/data (or $BLALM_DATA_DIR)."""

from __future__ import annotations

from pathlib import Path

import pytest

from blalm.data.config import default_data_dir

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = default_data_dir()
    if not (path / "train").is_dir():
        pytest.fail(f"the project data is missing: expected {path}/train (set BLALM_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
