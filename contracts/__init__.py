"""The generic wire shared by every process: envelope, topology, money, the protocol's
own messages. Nothing here imports the rest of the project."""

from contracts.envelope import Envelope
from contracts.messages import CommandFailed, Message
from contracts.money import Money, money
from contracts.topology import Participant, Topology

__all__ = [
    "CommandFailed",
    "Envelope",
    "Message",
    "Money",
    "Participant",
    "Topology",
    "money",
]
