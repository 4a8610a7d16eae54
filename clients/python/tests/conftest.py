"""Fixtures shared by the tests: throw-away directories and mock upstreams."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, List

import pytest

from support import MockUpstream


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def upstream_factory() -> Iterator[Any]:
    started: List[MockUpstream] = []

    def start(*fixtures: str) -> MockUpstream:
        upstream = MockUpstream(list(fixtures))
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        upstream.stop()
