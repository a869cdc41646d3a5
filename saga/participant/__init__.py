"""Participants: the SDK to write one (a handler per command and compensation, the wire
protocol's rules carried for you; see docs/participants.md), and the conformance check
that proves any one (`saga.participant.check`)."""

from saga.participant.context import Context
from saga.participant.declaration import CommandHandler, Compensated, Handler, Participant
from saga.participant.loading import LoadError, load_participant
from saga.participant.outcomes import (
    COMPENSATED_FIRST,
    PARTICIPANT_ERROR,
    EffectUnknown,
    Refused,
    Transient,
)
from saga.participant.records import EffectScript
from saga.participant.runtime import ParticipantRuntime

__all__ = [
    "COMPENSATED_FIRST",
    "PARTICIPANT_ERROR",
    "CommandHandler",
    "Compensated",
    "Context",
    "EffectScript",
    "EffectUnknown",
    "Handler",
    "LoadError",
    "Participant",
    "ParticipantRuntime",
    "Refused",
    "Transient",
    "load_participant",
]
