"""`saga bench --core` drives the shop's order saga through the pure core to its end and
says what each part of the engine's own work took."""

import json

import pytest

from bench.core import PARTS, run_core
from bench.run import bench_order
from saga.cli.main import main
from tests.shop_saga import ORDER_SAGA


def test_every_saga_completes_through_each_part_of_the_work() -> None:
    result = run_core(ORDER_SAGA, bench_order().model_dump(mode="json"), sagas=20)
    assert (result.sagas, result.saga_type) == (20, "order")
    # The order saga by card: four steps, each a decision on its reply; a command and a
    # reply each, dumped and parsed.
    assert (result.decisions_per_saga, result.envelopes_per_saga) == (4.0, 8.0)
    assert list(result.parts_us) == list(PARTS)
    assert all(us > 0 for us in result.parts_us.values()), result.parts_us
    assert sum(result.parts_us.values()) == pytest.approx(result.us_per_saga, abs=0.5)


def test_a_saga_that_skips_a_step_is_timed_on_its_own_path() -> None:
    cash = bench_order().model_copy(update={"payment_method": "Cash on Delivery"})
    result = run_core(ORDER_SAGA, cash.model_dump(mode="json"), sagas=5)
    assert (result.decisions_per_saga, result.envelopes_per_saga) == (3.0, 6.0)


def test_the_command_prints_one_document_and_needs_no_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SAGA_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("SAGA_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:1/")
    monkeypatch.setattr("sys.argv", ["saga", "bench", "--core", "--sagas", "3", "--json"])
    main()
    report = json.loads(capsys.readouterr().out)
    assert (report["mode"], report["sagas"]) == ("core", 3)
    assert set(report["parts_us"]) == set(PARTS) and report["us_per_saga"] > 0
