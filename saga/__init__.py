"""An event-sourced saga orchestrator over RabbitMQ, with Redis as its event store."""

from saga.core.contracts import Catalogue, Contract
from saga.core.decide import Decision, OutgoingCommand, ReplyReceived, decide, start_saga
from saga.core.definition import SagaDefinition, StepDefinition
from saga.core.events import EventRecord
from saga.core.state import SagaState, StepState, evolve, fold
from saga.extensions import Extension
from saga.settings import Settings

__all__ = [
    "Catalogue",
    "Contract",
    "Decision",
    "EventRecord",
    "Extension",
    "OutgoingCommand",
    "ReplyReceived",
    "SagaDefinition",
    "SagaState",
    "Settings",
    "StepDefinition",
    "StepState",
    "decide",
    "evolve",
    "fold",
    "start_saga",
]
