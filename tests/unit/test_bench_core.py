"""`saga bench --core` drives the shop's order saga through the pure core to its end and
says what each part of the core's work took."""

import itertools
import json

import pytest

from bench import core
from bench.core import PARTS, WARM_UP, SagaDidNotComplete, run_core
from bench.run import bench_order
from saga.cli.main import main
from saga.core.definition import SagaDefinition
from tests.shop_saga import ORDER_SAGA


def ticking() -> core.Clock:
    """A clock one second later at each reading: each timed part counts its timings."""
    seconds = itertools.count()
    return lambda: float(next(seconds))


def test_each_part_is_timed_once_each_time_it_happens_in_the_counted_sagas() -> None:
    sagas = WARM_UP + 7  # the warm-up's sagas are driven, not counted
    result = run_core(ORDER_SAGA, bench_order().model_dump(mode="json"), sagas=sagas)
    assert (result.sagas, result.saga_type) == (sagas, "order")
    # The order saga paid by card: the start, then four steps, each a decision on its
    # reply; five appends; each command dumped and each reply parsed.
    counts = (result.decisions_per_saga, result.appends_per_saga, result.envelopes_per_saga)
    assert counts == (4.0, 5.0, 8.0)
    ticked = run_core(
        ORDER_SAGA, bench_order().model_dump(mode="json"), sagas=sagas, clock=ticking()
    )
    assert ticked.parts_us == {
        "start": 1e6,
        "decisions": 4e6,
        "append_arguments": 5e6,
        "envelopes": 8e6,
    }
    assert ticked.us_per_saga == 18e6 and list(ticked.parts_us) == list(PARTS)


def test_a_saga_that_skips_a_step_is_timed_on_its_own_path() -> None:
    cash = bench_order().model_copy(update={"payment_method": "Cash on Delivery"})
    result = run_core(ORDER_SAGA, cash.model_dump(mode="json"), sagas=5)
    assert (result.decisions_per_saga, result.envelopes_per_saga) == (3.0, 6.0)


def test_a_saga_that_does_not_complete_stops_the_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    made_up = core._replies

    def refusing(definition: SagaDefinition) -> core.Replies:
        replies = made_up(definition)
        replies[("reserve_stock", "execute")] = ("CommandFailed", {"reason": "out_of_stock"})
        return replies

    monkeypatch.setattr(core, "_replies", refusing)
    with pytest.raises(
        SagaDidNotComplete, match="a saga of type order ended compensated: out_of_stock"
    ):
        run_core(ORDER_SAGA, bench_order().model_dump(mode="json"), sagas=1)


def test_the_command_prints_one_document_and_needs_no_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SAGA_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("SAGA_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:1/")
    monkeypatch.setattr("sys.argv", ["saga", "bench", "--core", "--sagas", "3", "--json"])
    main()  # returns: exit code 0
    report = json.loads(capsys.readouterr().out)
    assert (report["mode"], report["sagas"], report["appends_per_saga"]) == ("core", 3, 5.0)
    assert set(report["parts_us"]) == set(PARTS) and report["us_per_saga"] > 0
