"""The idempotency key a command carries: `<saga_id>:<step>:<action>[:replayN]`, read back."""

import re
from typing import Final, Literal, NamedTuple, TypedDict

KeyAction = Literal["execute", "compensate"]

# Read from the right: a saga id may hold colons (see envelope.ID_PATTERN), a step name
# (lower case, digits, `_`) and the action may not. `replayN` counts from 1.
_KEY: Final = re.compile(
    r"(?P<saga_id>.+):(?P<step>[a-z][a-z0-9_]*):(?P<action>execute|compensate)"
    r"(?::replay(?P<replay>[1-9][0-9]*))?",
    re.DOTALL,
)


class KeyFields(TypedDict):
    """What a log line says of a command's key: the key as sent, and what it names."""

    idempotency_key: str | None
    step: str | None
    action: KeyAction | None
    replay: int | None


class IdempotencyKey(NamedTuple):
    """The unit of work a key names: a saga's step, its action, and the replay (0: none)
    whose key it is."""

    saga_id: str
    step: str
    action: KeyAction
    replay: int = 0

    def __str__(self) -> str:
        key = f"{self.saga_id}:{self.step}:{self.action}"
        return f"{key}:replay{self.replay}" if self.replay else key


def parse_idempotency_key(key: str | None) -> IdempotencyKey | None:
    """The saga, step, action and replay a key names; None for a key of another shape
    (absent, a message id, a key a foreign sender made up)."""
    found = _KEY.fullmatch(key or "")
    if found is None:
        return None
    action: KeyAction = "execute" if found["action"] == "execute" else "compensate"
    return IdempotencyKey(found["saga_id"], found["step"], action, int(found["replay"] or 0))


def key_fields(key: str | None) -> KeyFields:
    """A command's key for a log line: as sent, and the step, action and replay it names
    (None each when the key names none)."""
    parsed = parse_idempotency_key(key)
    if parsed is None:
        return KeyFields(idempotency_key=key, step=None, action=None, replay=None)
    return KeyFields(
        idempotency_key=key, step=parsed.step, action=parsed.action, replay=parsed.replay
    )
