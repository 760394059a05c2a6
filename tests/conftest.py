"""Shared fixtures: where ../shared is, and a marker that skips without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DOORGUARD_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """Path of ../shared; skips the test with a reason where it is absent."""
    if not (SHARED / "models").is_dir():
        pytest.skip(f"needs ../shared (source weights and data), not found at {SHARED}")
    return SHARED
