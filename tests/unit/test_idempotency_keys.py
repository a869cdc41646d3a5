"""The idempotency key a command carries, read back by participants and their logs."""

import pytest

from contracts.idempotency import IdempotencyKey, parse_idempotency_key


@pytest.mark.parametrize(
    ("key", "parsed"),
    [
        ("saga1:reserve_stock:execute", IdempotencyKey("saga1", "reserve_stock", "execute", 0)),
        ("saga1:take_payment:compensate", IdempotencyKey("saga1", "take_payment", "compensate")),
        (
            "saga1:take_payment:compensate:replay1",
            IdempotencyKey("saga1", "take_payment", "compensate", 1),
        ),
        (
            "saga1:take_payment:compensate:replay12",
            IdempotencyKey("saga1", "take_payment", "compensate", 12),
        ),
        # A saga id may hold colons (and even look like a key): the key is read from the right.
        (
            "tenant:2026:s-1:create_order:execute",
            IdempotencyKey("tenant:2026:s-1", "create_order", "execute"),
        ),
        (
            "a:b:compensate:replay1:take_payment:compensate:replay2",
            IdempotencyKey("a:b:compensate:replay1", "take_payment", "compensate", 2),
        ),
        # Step names are the document's: `replay1` and `execute` are names a step may have.
        ("s:replay1:compensate", IdempotencyKey("s", "replay1", "compensate")),
        ("s:execute:compensate:replay3", IdempotencyKey("s", "execute", "compensate", 3)),
        # A step asked again after a replay would carry the replay's number as well.
        ("s:confirm_stock:execute:replay1", IdempotencyKey("s", "confirm_stock", "execute", 1)),
    ],
)
def test_a_key_is_read_into_saga_step_action_and_replay(key: str, parsed: IdempotencyKey) -> None:
    assert parse_idempotency_key(key) == parsed
    assert str(parsed) == key


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "m-123",  # a message id, as a participant keys a command that has no key
        "s1:ReserveStock",
        "s1:reserve_stock:undo",
        ":reserve_stock:execute",
        "s1::execute",
        "s1:Reserve:execute",
        "s1:take_payment:compensate:replay0",
        "s1:take_payment:compensate:replay",
        "s1:take_payment:compensate:replay01",
        "s1:take_payment:compensate:replayx",
        "s1:take_payment:compensate:",
        "s1:take_payment:execute\n",
    ],
)
def test_a_key_of_another_shape_is_none(key: str | None) -> None:
    assert parse_idempotency_key(key) is None
