"""Exchange, queue and routing-key names, derived from one namespace."""

import re
from dataclasses import dataclass
from typing import Final, Literal, get_args

Participant = Literal["stock", "payment", "order"]
PARTICIPANTS: Final[tuple[Participant, ...]] = get_args(Participant)

NAMESPACE_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
ORCHESTRATOR_ROUTING_KEY: Final = "orchestrator"


@dataclass(frozen=True)
class Topology:
    """Every AMQP name of one deployment; two namespaces never share a name."""

    namespace: str

    def __post_init__(self) -> None:
        if not NAMESPACE_PATTERN.fullmatch(self.namespace):
            raise ValueError(f"namespace {self.namespace!r} must match {NAMESPACE_PATTERN.pattern}")

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
            *(self.participant_queue(p) for p in PARTICIPANTS),
            self.dead_letter_queue,
        ]

    def all_exchanges(self) -> list[str]:
        """Every exchange of the namespace."""
        return [self.commands_exchange, self.replies_exchange, self.dead_letter_exchange]
