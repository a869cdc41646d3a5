"""`saga definitions verify`: the shop's definition and the examples are verified here (so
in CI), and the command's table, JSON and exit codes are what docs/verify.md says."""

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest

from saga.cli.main import main
from saga.extensions import load
from saga.verify import DefinitionPaths

ROOT: Final = Path(__file__).resolve().parents[2]
ORDER: Final = ROOT / "services/definitions/order.yaml"
FULFILMENT: Final = ROOT / "examples/order_processing/order-fulfilment.yaml"
# What a human finishes when it happens: a compensation that cannot be done, a step past
# the pivot that did not finish.
SHOP_ACCEPTS: Final = ("reserve_stock", "take_payment", "create_order", "confirm_stock")
# Each definition verified in CI, with the inputs to start on (none: made up) and the steps
# whose failed ends its author accepts.
VERIFIED: Final = {
    "services/definitions/order.yaml": ((), SHOP_ACCEPTS),
    "examples/order_processing/order-fulfilment.yaml": (
        (),
        (*SHOP_ACCEPTS, "book_shipment", "issue_invoice", "email", "sms"),
    ),
    "examples/shipping/shipped-order.yaml": ((), (*SHOP_ACCEPTS, "ship")),
    "examples/fanout/account-review.yaml": (
        ({"account": "acme", "period": "2026-11"},),
        ("revenue", "rebates", "specialty"),
    ),
}


def test_every_definition_shipped_is_verified_here() -> None:
    shipped = {str(p.relative_to(ROOT)) for p in ROOT.glob("examples/*/*.yaml")}
    assert shipped | {"services/definitions/order.yaml"} == set(VERIFIED)


@pytest.mark.parametrize("source", sorted(VERIFIED))
def test_the_definition_keeps_every_invariant_on_every_path_walked(source: str) -> None:
    inputs, accepted = VERIFIED[source]
    paths = DefinitionPaths.from_file(ROOT / source, load(None).catalogue, inputs=inputs)
    verdict = paths.verify(accept_failed=accepted)
    assert not verdict.broken, [(b.invariant, str(b.shortest)) for b in verdict.broken]
    assert verdict.ok, [e.end for e in verdict.unaccepted]
    assert {"completed", "compensated"} <= {e.end for e in verdict.ends}


Verify = Callable[..., tuple[int, str]]


@pytest.fixture
def verify(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Verify:
    """Run `saga definitions verify <args>` in this process, as its entry point does: its
    exit code, and what it printed (stdout and stderr)."""

    def run(*args: object) -> tuple[int, str]:
        # A small budget: the definitions are walked in full above.
        budget = ["--max-paths", "300", "--samples", "30"]
        argv = ["saga", "definitions", "verify", *map(str, args), *budget]
        monkeypatch.setattr(sys, "argv", argv)
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run


def test_verify_prints_each_end_state_with_its_shortest_path(verify: Verify) -> None:
    accepts = [a for step in SHOP_ACCEPTS for a in ("--accept-failed", step)]
    code, out = verify(ORDER, *accepts)
    assert code == 0, out
    assert "completed" in out and "reserve_stock: refused" in out
    assert "failed: compensation of take_payment failed" in out
    assert out.rstrip().endswith("verified: every invariant holds")


def test_a_failed_end_not_accepted_exits_1_naming_its_path(verify: Verify) -> None:
    code, out = verify(ORDER, "--accept-failed", "reserve_stock")
    assert code == 1
    assert (
        "not accepted: the saga can end 'failed: compensation of take_payment failed', e.g." in out
    )
    assert "undo take_payment: " in out


def test_json_has_the_table_and_the_coverage(verify: Verify) -> None:
    code, out = verify(ORDER, "--json")
    document = json.loads(out)
    assert code == 1 and document["ok"] is False
    ends = {e["end"]: e for e in document["ends"]}
    assert ends["compensated"]["acceptable"] is True
    assert ends["compensated"]["shortest"]["choices"] == [
        {"step": "reserve_stock", "action": "execute", "behaviour": "refused"}
    ]
    assert not ends["failed: compensation of take_payment failed"]["acceptable"]
    assert [c["input"] for c in document["coverage"]] == [
        "input",
        "payment_method=Cash on Delivery",
    ]
    assert document["broken"] == []


def test_a_broken_invariant_exits_1_naming_the_shortest_path(
    monkeypatch: pytest.MonkeyPatch, verify: Verify
) -> None:
    monkeypatch.setattr("saga.core.decide.irreversible", lambda *_: [])  # forget the pivot
    accepts = [
        a
        for step in VERIFIED[str(FULFILMENT.relative_to(ROOT))][1]
        for a in ("--accept-failed", step)
    ]
    code, out = verify(FULFILMENT, *accepts)
    assert code == 1
    assert "invariant broken" in out and "undone past the pivot" in out
    assert "shortest: " in out


def test_a_definition_that_is_not_valid_gets_one_line_and_exit_2(
    tmp_path: Path, verify: Verify
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad\nversion: 1\n")
    code, out = verify(bad)
    assert code == 2
    assert out.count("\n") == 1 and "not a saga definition" in out


def test_an_unknown_step_to_accept_or_a_bad_input_exits_2(verify: Verify) -> None:
    assert verify(ORDER, "--accept-failed", "nope")[0] == 2
    code, out = verify(ORDER, "--input", '{"items": []}')
    assert code == 2 and "--input" in out
