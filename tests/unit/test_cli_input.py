"""The command line's refusals of what a person typed, before any server is asked."""

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from saga.cli.main import main


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


Saga = Callable[..., Ran]


@pytest.fixture
def saga(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Saga:
    """Run `saga <args>` in this process, as its entry point does; what it printed."""

    def run(*args: str) -> Ran:
        monkeypatch.setattr(sys, "argv", ["saga", *args])
        # Nothing refused here may reach a server: these point nowhere.
        monkeypatch.setenv("SAGA_REDIS_URL", "redis://127.0.0.1:1/0")
        monkeypatch.setenv("SAGA_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:1/")
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


BAD_AMOUNTS = [
    ("-5", "the amount must be positive"),
    ("-5.00", "the amount must be positive"),
    ("0", "the amount must be positive"),
    ("0.00", "the amount must be positive"),
    ("1e3", "not a decimal amount"),
    ("1E3", "not a decimal amount"),
    ("NaN", "not a decimal amount"),
    ("Infinity", "not a decimal amount"),
    ("-Infinity", "not a decimal amount"),
    ("5.001", "at most two decimal places"),
    ("0x10", "not a decimal amount"),
    ("+5", "not a decimal amount"),
    ("2000000000", "cannot exceed"),
]


@pytest.mark.parametrize(("amount", "why"), BAD_AMOUNTS)
def test_a_deposit_refuses_what_is_not_a_positive_amount(saga: Saga, amount: str, why: str) -> None:
    ran = saga("payment", "deposit", "ann@example.com", amount)
    assert ran.code == 2, ran
    assert len(ran.err.strip().splitlines()) == 1, ran.err
    assert "'AMOUNT'" in ran.err and repr(amount) in ran.err and why in ran.err, ran.err


@pytest.mark.parametrize(("price", "why"), BAD_AMOUNTS)
def test_a_stock_price_follows_the_same_money_rule(saga: Saga, price: str, why: str) -> None:
    ran = saga("stock", "set", "apple", "--quantity", "1", "--price", price)
    assert ran.code == 2, ran
    assert len(ran.err.strip().splitlines()) == 1, ran.err
    assert "'--price'" in ran.err and repr(price) in ran.err, ran.err
    assert why.replace("the amount", "the price") in ran.err, ran.err


# Every value typed on the command line that is refused: (arguments, the name said).
BAD_VALUES = [
    (["stock", "set", "p 1", "--quantity", "1", "--price", "1"], "'PRODUCT_ID'"),
    (["stock", "set", "apple", "--quantity", "-1", "--price", "1"], "'--quantity'"),
    (["payment", "deposit", "not-an-email", "5"], "'EMAIL'"),
    (["payment", "show", "not-an-email"], "'EMAIL'"),
    (["order", "vendor", "add", "notanemail"], "'EMAIL'"),
    (["order", "list", "--limit", "0"], "'--limit'"),
    (["auth", "add-user", "notanemail", "--password", "long-enough"], "'EMAIL'"),
    (["auth", "add-user", "ann@example.com", "--password", "short"], "'--password'"),
    (
        ["auth", "add-user", "ann@example.com", "--password", "long-enough", "--role", "root"],
        "'--role'",
    ),
    (["start", "order", "--input", "{}", "--customer", ""], "'--customer'"),
    (["start", "order", "--input", "{}", "--customer", "ann"], "'--customer'"),
    (["start", "order", "--input", "[1]", "--customer", "ann@example.com"], "--input"),
    (["start", "order", "--input", "{", "--customer", "ann@example.com"], "--input"),
    (["list", "--status", "sleeping"], "'--status'"),
    (["bench", "--core", "--baseline"], "not --baseline"),
    (["bench", "--core", "--processes"], "not --processes"),
    (["bench", "--core", "--concurrency", "5"], "not --concurrency"),
    (["replay", "--status", "running"], "'--status'"),
    (["definitions", "apply", "no/such/file.yaml"], "'FILE'"),
    (["definitions", "show", "order", "--version", "0"], "'--version'"),
    (["participant", "check", "Bad Name"], "'NAME'"),
    (["namespace", "drop", "Prod!", "--yes"], "'NAME'"),
    (["participant", "check", "orchestrator"], "'NAME'"),
    (
        [
            "participant",
            "check",
            "carrier",
            "--step",
            "ShipOrder",
            "--payload",
            'ShipOrder={"order_id": "o-1"}',
            "--payload",
            "ShipOrdr={}",
        ],
        "no step of carrier takes ShipOrdr",
    ),
]


def test_a_samples_file_that_is_not_yaml_is_one_line_saying_where(
    saga: Saga, tmp_path: Path
) -> None:
    samples = tmp_path / "samples.yaml"
    samples.write_text("BookRoom: [1, 2\nCancelRoom: {}\n")
    ran = saga("participant", "check", "hotel", "--step", "BookRoom", "--samples", str(samples))
    assert ran.code == 2, ran
    assert ran.err.strip().splitlines() == [
        f"saga: error: Invalid value for '--samples': {samples}: line 2, column 11: "
        "expected ',' or ']', but got ':'"
    ], ran.err


@pytest.mark.parametrize(("args", "named"), BAD_VALUES)
def test_a_bad_value_on_the_command_line_is_a_usage_error_naming_it(
    saga: Saga, args: list[str], named: str
) -> None:
    ran = saga(*args)
    assert ran.code == 2, ran
    assert len(ran.err.strip().splitlines()) == 1, ran.err
    assert named in ran.err and "Traceback" not in ran.err, ran.err


def test_a_password_refused_is_not_printed(saga: Saga) -> None:
    ran = saga("auth", "add-user", "ann@example.com", "--password", "sesame")
    assert ran.code == 2 and "sesame" not in ran.err, ran


def test_the_version_is_the_installed_package_s(saga: Saga) -> None:
    from importlib.metadata import version

    for flag in ("--version", "-V"):
        ran = saga(flag)
        assert (ran.code, ran.out.strip()) == (0, f"saga {version('saga-orchestrator')}"), ran


def test_an_optional_argument_is_bracketed_once_in_usage(saga: Saga) -> None:
    ran = saga("replay", "--help")
    assert "[SAGA_ID]" in ran.out and "[[SAGA_ID]]" not in ran.out, ran.out
