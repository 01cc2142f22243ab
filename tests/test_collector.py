"""The command line's process collects garbage less often than Python's defaults."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from easyrtc_server.collector import YOUNG_THRESHOLD, tune_for_serving


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_what_is_loaded_is_frozen_and_young_collections_are_spaced_out() -> None:
    before = gc.get_threshold()
    tune_for_serving()
    assert gc.get_freeze_count() > 10_000  # modules, classes, functions: out of every sweep
    assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
    assert gc.isenabled()  # cycles are still collected
    cycle = _Cycle()
    ref = weakref.ref(cycle)
    del cycle
    gc.collect()
    assert ref() is None


class _Cycle:
    def __init__(self) -> None:
        self.me = self
