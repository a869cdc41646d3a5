"""Exchange, queue and routing-key names, derived from one namespace."""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

# A participant is any service that takes commands from its queue `<ns>.<name>` and
# replies to the orchestrator.
Participant = str
PARTICIPANT_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_-]{0,47}$")
NAMESPACE_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
ORCHESTRATOR_ROUTING_KEY: Final = "orchestrator"
# Names a participant cannot have: its queue would be one of the namespace's own.
RESERVED: Final = frozenset({ORCHESTRATOR_ROUTING_KEY, "dead-letters"})


def check_participant(name: str) -> str:
    """The name, if it can name a participant; raises ValueError saying why not."""
    if not PARTICIPANT_PATTERN.fullmatch(name):
        raise ValueError(f"participant {name!r} must match {PARTICIPANT_PATTERN.pattern}")
    if name in RESERVED:
        raise ValueError(f"participant {name!r} is a name the engine keeps for itself")
    return name


@dataclass(frozen=True)
class Topology:
    """Every AMQP name of one deployment; two namespaces never share a name."""

    namespace: str
    # The participants whose queues this topology holds: those the deployment's
    # definitions and extensions name.
    participants: tuple[Participant, ...] = ()

    def __post_init__(self) -> None:
        if not NAMESPACE_PATTERN.fullmatch(self.namespace):
            raise ValueError(f"namespace {self.namespace!r} must match {NAMESPACE_PATTERN.pattern}")
        for name in self.participants:
            check_participant(name)

    def with_participants(self, names: "Iterable[Participant]") -> "Topology":
        """The same namespace, holding these participants' queues as well."""
        extra = tuple(n for n in dict.fromkeys(names) if n not in self.participants)
        return Topology(self.namespace, (*self.participants, *extra))

    @property
    def commands_exchange(self) -> str:
        """Direct exchange for commands; the routing key is the participant."""
        return f"{self.namespace}.commands"

    @property
    def replies_exchange(self) -> str:
        """Direct exchange for participants' replies to the orchestrator."""
        return f"{self.namespace}.replies"

    @property
    def dead_letter_exchange(self) -> str:
        """Fanout exchange into the dead-letter queue."""
        return f"{self.namespace}.dead"

    @property
    def dead_letter_queue(self) -> str:
        """Where messages that cannot be processed are parked."""
        return f"{self.namespace}.dead-letters"

    @property
    def orchestrator_queue(self) -> str:
        """The orchestrator's queue of replies."""
        return f"{self.namespace}.orchestrator"

    def participant_queue(self, participant: Participant) -> str:
        """A participant's queue of commands."""
        return f"{self.namespace}.{participant}"

    def all_queues(self) -> list[str]:
        """Every queue of the namespace (for clean-up and inspection)."""
        return [
            self.orchestrator_queue,
            *(self.participant_queue(p) for p in self.participants),
            self.dead_letter_queue,
        ]

    def all_exchanges(self) -> list[str]:
        """Every exchange of the namespace."""
        return [self.commands_exchange, self.replies_exchange, self.dead_letter_exchange]
