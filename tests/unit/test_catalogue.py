"""Contracts reach the core by injection: a catalogued participant's commands and replies
are checked by its models, any other participant's pass as they are."""

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from saga.core.contracts import EMPTY, Catalogue, Contract
from saga.core.decide import ReplyReceived, decide, start_saga
from saga.core.definition import SagaDefinition
from saga.core.document import DefinitionError, compile_definition, read_definition

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Ship(BaseModel):
    parcel: str


class Shipped(BaseModel):
    tracking: int


class Unship(BaseModel):
    pass


class Unshipped(BaseModel):
    pass


SHIPPING = Catalogue(
    {"shipping": Contract.of(commands=(Ship, Unship), replies=(Shipped, Unshipped))}
)


def _definition(catalogue: Catalogue, **action: Any) -> SagaDefinition:
    document = {
        "name": "sending",
        "version": 1,
        "steps": [
            {
                "name": "ship",
                "participant": "shipping",
                "action": {
                    "command": "Ship",
                    "input": {"parcel": "{{input.parcel}}"},
                    "reply": "Shipped",
                }
                | action,
                "compensation": {"command": "Unship", "reply": "Unshipped"},
            }
        ],
    }
    return compile_definition(read_definition(document), catalogue)


def _reply(definition: SagaDefinition, payload: dict[str, Any]) -> tuple[str, str | None]:
    started = start_saga(
        definition,
        saga_id="s1",
        customer="ann",
        saga_input={"parcel": "p1"},
        now=T0,
        new_id=lambda: "c1",
    )
    (command,) = started.commands
    decision = decide(
        definition,
        started.state,
        ReplyReceived(
            message_id="r1",
            causation_id=command.envelope.message_id,
            type="Shipped",
            payload=payload,
        ),
        now=T0,
        new_id=lambda: "c2",
        rng=lambda: 0.5,
    )
    return decision.state.status, decision.state.reason


def test_a_catalogued_reply_is_checked_by_its_model() -> None:
    definition = _definition(SHIPPING)
    assert _reply(definition, {"tracking": 7})[0] == "completed"
    # A reply its model refuses is the participant's protocol error, never a success: the
    # step may have taken effect, so it is undone.
    assert _reply(definition, {"tracking": "soon"}) == ("compensating", "protocol_error")


def test_an_uncatalogued_participant_is_taken_on_trust() -> None:
    definition = _definition(EMPTY)
    assert _reply(definition, {"tracking": "soon", "anything": True})[0] == "completed"


def test_a_catalogued_command_is_built_by_its_model() -> None:
    started = start_saga(
        _definition(SHIPPING),
        saga_id="s1",
        customer="ann",
        saga_input={"parcel": 12},  # not text: Ship refuses it, so nothing is sent
        now=T0,
        new_id=lambda: "c1",
    )
    assert started.commands == ()
    assert started.state.reason == "invalid_step_input"


def test_a_step_must_use_its_catalogued_participants_commands_and_replies() -> None:
    with pytest.raises(DefinitionError, match="shipping takes no command 'Shp'"):
        _definition(SHIPPING, command="Shp")
    with pytest.raises(DefinitionError, match="'Shiped' is not a reply of shipping"):
        _definition(SHIPPING, reply="Shiped")
    _definition(EMPTY, command="Shp", reply="Shiped")  # unknown to the engine: its business


def test_two_catalogues_merge_unless_they_disagree() -> None:
    other = Catalogue({"billing": Contract.of(commands=(Ship,), replies=(Shipped,))})
    merged = SHIPPING.merged(other)
    assert set(merged.participants) == {"shipping", "billing"}
    assert SHIPPING.merged(SHIPPING) == SHIPPING
    clash = Catalogue({"shipping": Contract.of(commands=(Ship,), replies=(Shipped,))})
    with pytest.raises(ValueError, match="catalogued twice"):
        SHIPPING.merged(clash)
