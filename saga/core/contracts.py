"""Contracts the core is given: for each participant, its commands and replies as models.

The core imports no participant's messages. Whoever registers participants with the
engine (an extension, a team's own code) hands it a `Catalogue`; definitions are compiled
against it, so that a step naming a catalogued participant sends one of its commands,
with a payload its model accepts, and reads a reply its model accepts. A participant not
in the catalogue is taken on trust: payloads pass as they are.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pydantic import BaseModel

Model = type[BaseModel]


def _by_name(models: Iterable[Model]) -> Mapping[str, Model]:
    return MappingProxyType({m.__name__: m for m in models})


@dataclass(frozen=True)
class Contract:
    """One participant's commands and replies: wire type name -> payload model (a model's
    class name is its wire type)."""

    commands: Mapping[str, Model]
    replies: Mapping[str, Model]

    @classmethod
    def of(cls, *, commands: Iterable[Model], replies: Iterable[Model]) -> "Contract":
        """A contract from models, each named on the wire by its class name."""
        return cls(_by_name(commands), _by_name(replies))


@dataclass(frozen=True)
class Catalogue:
    """Participants' contracts by participant name."""

    participants: Mapping[str, Contract] = field(default_factory=dict)

    def contract(self, participant: str) -> Contract | None:
        """The participant's contract, or None if it is not catalogued."""
        return self.participants.get(participant)

    def __contains__(self, participant: object) -> bool:
        return participant in self.participants

    def merged(self, other: "Catalogue") -> "Catalogue":
        """Both catalogues in one; a participant both name must have the same contract
        in each (else ValueError: two extensions cannot define one participant twice)."""
        both = dict(self.participants)
        for name, contract in other.participants.items():
            known = both.get(name)
            if known is not None and known != contract:
                raise ValueError(f"participant {name!r} is catalogued twice, differently")
            both[name] = contract
        return Catalogue(MappingProxyType(both))


EMPTY: Catalogue = Catalogue()
