"""The participant SDK's pure parts: what each outcome of a handler answers, how a
participant is declared, and how `module:attribute` is found."""

import json
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from contracts.messages import CommandFailed
from saga.participant import (
    COMPENSATED_FIRST,
    Compensated,
    Context,
    EffectUnknown,
    LoadError,
    Participant,
    Refused,
    Transient,
    load_participant,
)
from saga.participant.outcomes import (
    Answer,
    answer_to_error,
    answer_to_record,
    answer_to_result,
    record_of,
)
from saga.participant.records import lease_backoff

ROOT = Path(__file__).resolve().parents[2]


class Ship(BaseModel):
    address: str


class Shipped(BaseModel):
    tracking: str


class Cancel(BaseModel):
    pass


class Cancelled(BaseModel):
    refunded: str


# -- what an outcome answers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raised", "payload", "definite"),
    [
        (
            Refused("undeliverable", "no courier goes there"),
            {"reason": "undeliverable", "detail": "no courier goes there"},
            True,
        ),
        (
            Transient("courier_busy"),
            {"reason": "courier_busy", "detail": None, "transient": True},
            False,
        ),
        (Transient(), {"reason": "transient", "detail": None, "transient": True}, False),
        (
            EffectUnknown(detail="the courier did not answer in 2s"),
            {
                "reason": "effect_unknown",
                "detail": "the courier did not answer in 2s",
                "effect_unknown": True,
            },
            False,
        ),
        (
            ValueError("no tracking number"),
            {
                "reason": "participant_error",
                "detail": "ValueError: no tracking number",
                "effect_unknown": True,
            },
            False,
        ),
    ],
)
def test_each_exception_answers_its_command_failed_and_only_a_refusal_is_definite(
    raised: Exception, payload: dict[str, object], definite: bool
) -> None:
    answer = answer_to_error(raised)
    expected = CommandFailed.model_validate(payload).model_dump(mode="json")
    assert answer == Answer("CommandFailed", expected, definite)


def test_a_refusal_reason_a_reply_cannot_carry_is_the_participant_s_error() -> None:
    answer = answer_to_error(Refused("x" * 65))
    assert answer.reason == "participant_error" and not answer.definite
    assert "Refused with a reason CommandFailed cannot carry (reason:" in answer.payload["detail"]
    assert answer_to_error(Refused("")).reason == "participant_error"


def test_a_long_detail_is_cut_to_what_a_reply_carries() -> None:
    answer = answer_to_error(Refused("too_long", "x" * 5000))
    assert answer.payload["detail"] == "x" * 1000
    assert answer_to_error(RuntimeError("y" * 5000)).payload["detail"].startswith("RuntimeError")


def test_a_result_is_the_reply_only_if_it_is_of_the_declared_type() -> None:
    assert answer_to_result(Shipped(tracking="T1"), Shipped, none_allowed=False) == Answer(
        "Shipped", {"tracking": "T1"}, definite=True
    )
    wrong = answer_to_result(Cancelled(refunded="1.00"), Shipped, none_allowed=False)
    assert (wrong.reason, wrong.definite) == ("participant_error", False)
    assert wrong.payload["detail"] == "the handler returned Cancelled, not Shipped"
    assert answer_to_result(None, Shipped, none_allowed=False).reason == "participant_error"
    assert answer_to_result(None, Compensated, none_allowed=True) == Answer(
        "Compensated", {}, definite=True
    )


def test_a_stored_reply_is_read_back_against_its_contract() -> None:
    shipped = Answer("Shipped", {"tracking": "T1"}, definite=True)
    assert answer_to_record(record_of(shipped), Shipped) == shipped
    # As the SDK's Lua `refuse` stores it: reason and detail only.
    refused = json.dumps({"type": "CommandFailed", "payload": {"reason": "no", "detail": "d"}})
    assert answer_to_record(refused, Shipped) == Answer(
        "CommandFailed", {"reason": "no", "detail": "d"}, definite=True
    )
    assert answer_to_record('{"type": "Shipped", "payload": {}}', Shipped).reason == (
        "participant_error"
    )
    other = answer_to_record('{"type": "Cancelled", "payload": {"refunded": "1"}}', Shipped)
    assert other.payload["detail"] == "the stored reply is Cancelled, not Shipped"


# -- declaring a participant -------------------------------------------------------------


def shipping() -> Participant:
    participant = Participant("shipping")

    @participant.command(Ship, reply=Shipped)
    async def ship(command: Ship, ctx: Context) -> Shipped:
        return Shipped(tracking=command.address.upper())

    @ship.compensation(Cancel)
    async def cancel(command: Cancel, ctx: Context) -> None:
        return None

    return participant


def test_a_participant_lists_its_commands_and_replies_for_a_catalogue() -> None:
    participant = shipping()
    assert participant.commands == {"Ship": Ship, "Cancel": Cancel}
    assert participant.replies == {"Shipped": Shipped, "Compensated": Compensated}
    cancel = participant.registration("Cancel")
    assert cancel is not None
    assert (cancel.action, cancel.compensates, cancel.none_allowed) == ("compensate", "Ship", True)
    assert participant.registration("Unknown") is None


def test_a_late_command_is_refused_compensated_first_unless_the_command_says_otherwise() -> None:
    participant = shipping()

    @participant.command(
        Cancelled, reply=Shipped, after_compensation=Refused("reservation_released", "gone")
    )
    async def other(command: Cancelled, ctx: Context) -> Shipped:
        raise AssertionError

    def late(command: str) -> dict[str, object]:
        registration = participant.registration(command)
        assert registration is not None and registration.late_record is not None
        return dict(json.loads(registration.late_record))

    assert late("Ship")["type"] == "CommandFailed"
    assert late("Ship")["payload"]["reason"] == COMPENSATED_FIRST  # type: ignore[index]
    # As a script's refuse() stores a refusal: its reason and detail.
    assert late("Cancelled")["payload"] == {"reason": "reservation_released", "detail": "gone"}
    with pytest.raises(ValueError, match="a refusal's reason: String should have at most 64"):
        participant.command(Shipped, reply=Shipped, after_compensation=Refused("x" * 65))
    # A late command's answer is stored for every repeat: never a transient one.
    with pytest.raises(TypeError, match=r"the Refused a late command gets .* not Transient"):
        participant.command(
            Shipped,
            reply=Shipped,
            after_compensation=Transient("later"),  # type: ignore[arg-type]
        )


async def test_a_declared_handler_is_still_the_function_it_wraps() -> None:
    participant = Participant("shipping")

    @participant.command(Ship, reply=Shipped)
    async def ship(command: Ship, ctx: Context) -> Shipped:
        """Book it."""
        return Shipped(tracking=command.address.upper())

    assert ship.__name__ == "ship" and ship.__doc__ == "Book it."
    assert await ship(Ship(address="here"), None) == Shipped(tracking="HERE")  # type: ignore[arg-type]


def test_what_cannot_be_declared_is_refused_when_declared() -> None:
    participant = shipping()
    with pytest.raises(ValueError, match="shipping takes Ship already"):
        participant.command(Ship, reply=Shipped)(_never)
    ship = participant.command(Cancelled, reply=Shipped)(_never)
    ship.compensation(Shipped)(_never)
    with pytest.raises(ValueError, match="Cancelled has a compensation already"):
        ship.compensation(Ship)
    with pytest.raises(ValueError, match="CommandFailed is every participant's failure"):
        participant.command(CommandFailed, reply=Shipped)(_never)
    with pytest.raises(ValueError, match="a reply is a pydantic model class"):
        participant.command(Compensated, reply=dict)(_never)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="must match"):
        Participant("Shipping!")
    with pytest.raises(ValueError, match="keeps for itself"):
        Participant("orchestrator")
    with pytest.raises(ValueError, match="a lease is more than 0 seconds"):
        Participant("shipping", lease=0)


async def _never(command: BaseModel, ctx: Context) -> Shipped:
    raise AssertionError


def test_a_handling_waiting_for_a_lease_asks_again_soon_then_every_half_second() -> None:
    assert [lease_backoff(n) for n in range(7)] == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.5]
    assert lease_backoff(100_000) == 0.5  # however long it waits


def test_a_participant_s_keys_share_its_hash_tag() -> None:
    assert shipping().key("ns", "shipment", "s:1") == "ns:shipping:{shipping}:shipment:s:1"


# -- finding one by module:attribute --------------------------------------------------------


def test_the_example_participant_is_found_by_module_and_attribute() -> None:
    found = load_participant("examples.shipping.participant:carrier", from_directory=str(ROOT))
    assert found.name == "carrier"
    assert set(found.commands) == {"ShipOrder", "CancelShipment"}


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("examples.shipping.participant", "is not MODULE:ATTRIBUTE (as in examples.shipping"),
        (":shipping", "is not MODULE:ATTRIBUTE"),
        ("no_such_module_here:x", "no module 'no_such_module_here' (looked in "),
        ("examples.shipping.nothing:x", "no module 'examples.shipping.nothing'"),
        ("examples.shipping.participant:nobody", "has no attribute 'nobody'"),
        ("examples.shipping.participant:ShipOrder", "is the class ShipOrder, not a Participant"),
        ("examples.shipping.participant:carrier.name", "is a str, not a Participant"),
        ("examples.shipping:participant", "is a module, not a Participant"),
    ],
)
def test_a_target_that_names_no_participant_says_why_in_one_line(target: str, says: str) -> None:
    with pytest.raises(LoadError, match=None) as raised:
        load_participant(target, from_directory=str(ROOT))
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_a_module_that_fails_to_import_is_told_apart_from_one_that_is_missing(
    tmp_path: Path,
) -> None:
    (tmp_path / "broken_participant.py").write_text("import no_such_dependency\n")
    (tmp_path / "bad_syntax_participant.py").write_text("def (:\n")
    try:
        with pytest.raises(LoadError, match="importing broken_participant failed: "):
            load_participant("broken_participant:p", from_directory=str(tmp_path))
        with pytest.raises(LoadError, match="importing bad_syntax_participant failed: Syntax"):
            load_participant("bad_syntax_participant:p", from_directory=str(tmp_path))
    finally:
        sys.path.remove(str(tmp_path))
