"""The garbage collector's settings while a process serves (saga/eventloop.py)."""

import gc

import pytest

from saga import eventloop


async def _collector_inside() -> tuple[tuple[int, ...], int]:
    return gc.get_threshold(), gc.get_freeze_count()


def test_a_serving_process_freezes_what_it_started_with_and_collects_less_often() -> None:
    before = gc.get_threshold()

    threshold, frozen = eventloop.run(_collector_inside(), "asyncio")

    assert threshold == (eventloop.YOUNG_THRESHOLD, *before[1:])
    assert frozen > 0  # the modules and what start-up built, at least
    # Restored: a test process (or anything that runs a loop and goes on) is left as it was.
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_collector_is_restored_when_the_process_main_fails() -> None:
    before = gc.get_threshold()

    async def fails() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        eventloop.run(fails(), "asyncio")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_freeze_made_before_the_loop_is_kept() -> None:
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        eventloop.run(_collector_inside(), "asyncio")
        assert gc.get_freeze_count() >= before
    finally:
        gc.unfreeze()
