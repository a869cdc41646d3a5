"""A participant as its user declares it: a name, and a handler per command and compensation."""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict

from contracts.messages import CommandFailed
from contracts.topology import check_participant
from saga.participant.outcomes import COMPENSATED_FIRST, Refused, refusal_record

if TYPE_CHECKING:
    from saga.participant.context import Context

C = TypeVar("C", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)
K = TypeVar("K", bound=BaseModel)
Q = TypeVar("Q", bound=BaseModel)
T = TypeVar("T")

Action = Literal["execute", "compensate"]
# How long a handler that is not atomic holds its step's lease without renewing it.
DEFAULT_LEASE: Final = 30.0


class Compensated(BaseModel):
    """The reply of a compensation declared without a reply type of its own: the
    compensation was done. A definition names it as the compensation's `reply`."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Registration:
    """One command the participant takes: its model, its handler, and how it answers."""

    command: type[BaseModel]
    reply: type[BaseModel]
    handler: Callable[[Any, "Context"], Awaitable[Any]]
    action: Action
    # Atomic: every effect of the handler is in the one EffectScript it runs through
    # `ctx.atomically`, which checks and records the reply in the same script; no lease.
    atomic: bool
    # The handler may return None for the reply (a compensation with no reply type).
    none_allowed: bool = False
    # For a compensation: the command type it undoes.
    compensates: str | None = None
    # For a command: the record a late command stores when its compensation came first.
    late_record: str | None = None

    @property
    def type(self) -> str:
        """The command's type name on the wire."""
        return self.command.__name__


class Handler(Generic[C, T]):
    """A handler as declared: still callable as the function it wraps."""

    def __init__(
        self, participant: "Participant", registration: Registration, function: Any
    ) -> None:
        self.participant = participant
        self.registration = registration
        self.__wrapped__ = function
        self.__name__ = getattr(function, "__name__", registration.type)
        self.__doc__ = getattr(function, "__doc__", None)

    async def __call__(self, command: C, ctx: "Context") -> T:
        """Run the handler itself (no idempotency, no reply: for tests of its logic)."""
        result: T = await self.registration.handler(command, ctx)
        return result


class CommandHandler(Handler[C, R]):
    """A command's handler; `.compensation` declares the compensation that undoes it."""

    @overload
    def compensation(
        self, command: type[K], *, atomic: bool = False
    ) -> Callable[[Callable[[K, "Context"], Awaitable[None]]], Handler[K, None]]: ...

    @overload
    def compensation(
        self, command: type[K], *, reply: type[Q], atomic: bool = False
    ) -> Callable[[Callable[[K, "Context"], Awaitable[Q]]], Handler[K, Q]]: ...

    def compensation(
        self, command: type[K], *, reply: type[Q] | None = None, atomic: bool = False
    ) -> Callable[[Callable[[K, "Context"], Awaitable[Any]]], Handler[K, Any]]:
        """Declare the compensation of this command: `command` undoes it, and the
        handler answers with `reply` (without one, the reply is `Compensated`, with no
        fields, and the handler returns None)."""
        if any(r.compensates == self.registration.type for r in self.participant.registrations):
            raise ValueError(f"{self.registration.type} has a compensation already")

        def declare(function: Callable[[K, "Context"], Awaitable[Any]]) -> Handler[K, Any]:
            registration = Registration(
                command=command,
                reply=reply or Compensated,
                handler=function,
                action="compensate",
                atomic=atomic,
                none_allowed=reply is None,
                compensates=self.registration.type,
            )
            self.participant.register(registration)
            return Handler(self.participant, registration, function)

        return declare


class Participant:
    """A participant: a name (its queue is `<namespace>.<name>`) and its handlers.

    Declare each command with `@participant.command(Model, reply=Reply)` and its
    compensation with `@handler.compensation(Model)`; `saga participant run
    module:attribute` runs it. The wire type of a command or reply is its class name.
    """

    def __init__(self, name: str, *, lease: float = DEFAULT_LEASE) -> None:
        self.name = check_participant(name)
        if not lease > 0:
            raise ValueError(f"a lease is more than 0 seconds, not {lease!r}")
        self.lease = lease
        self._registrations: dict[str, Registration] = {}

    def __repr__(self) -> str:
        return f"Participant({self.name!r}, commands={sorted(self._registrations)})"

    def command(
        self,
        command: type[C],
        *,
        reply: type[R],
        atomic: bool = False,
        after_compensation: Refused | None = None,
    ) -> Callable[[Callable[[C, "Context"], Awaitable[R]]], CommandHandler[C, R]]:
        """Declare a command: the handler takes the command's model and the Context
        and returns its `reply` (or raises Refused, Transient or EffectUnknown).

        `atomic=True`: every effect of the handler is in the EffectScript it runs with
        `ctx.atomically`, which records the reply in the same script (no lease is
        taken). `after_compensation`: the refusal a late command gets when its step's
        compensation came first (by default `compensated_first`).
        """
        if after_compensation is not None and not isinstance(after_compensation, Refused):
            raise TypeError(
                "after_compensation is the Refused a late command gets (stored, never "
                f"transient), not {type(after_compensation).__name__}"
            )
        late_record = refusal_record(
            after_compensation
            or Refused(COMPENSATED_FIRST, "the compensation of this step came before it")
        )

        def declare(function: Callable[[C, "Context"], Awaitable[R]]) -> CommandHandler[C, R]:
            registration = Registration(
                command=command,
                reply=reply,
                handler=function,
                action="execute",
                atomic=atomic,
                late_record=late_record,
            )
            self.register(registration)
            return CommandHandler(self, registration, function)

        return declare

    def register(self, registration: Registration) -> None:
        """Add a command's registration (the decorators call this); a command type
        taken twice, or a model that cannot travel, is refused with ValueError."""
        for model, what in ((registration.command, "command"), (registration.reply, "reply")):
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ValueError(f"a {what} is a pydantic model class, not {model!r}")
            if not 1 <= len(model.__name__) <= 64:
                raise ValueError(f"{model.__name__!r}: a type name is 1 to 64 characters")
        if registration.reply is CommandFailed or registration.command is CommandFailed:
            raise ValueError("CommandFailed is every participant's failure, not a reply to declare")
        if registration.type in self._registrations:
            raise ValueError(f"{self.name} takes {registration.type} already")
        self._registrations[registration.type] = registration

    @property
    def registrations(self) -> list[Registration]:
        """Every command and compensation it takes, in the order declared."""
        return list(self._registrations.values())

    def registration(self, command_type: str) -> Registration | None:
        """What the participant does with a command of this type, if it takes it."""
        return self._registrations.get(command_type)

    @property
    def commands(self) -> Mapping[str, type[BaseModel]]:
        """Its commands and compensations by type name: the payload model of each."""
        return {name: r.command for name, r in self._registrations.items()}

    @property
    def replies(self) -> Mapping[str, type[BaseModel]]:
        """The replies its handlers give by type name (CommandFailed, every
        participant's, is not among them)."""
        return {r.reply.__name__: r.reply for r in self._registrations.values()}

    def key(self, namespace: str, *parts: str) -> str:
        """A Redis key of this participant's own: `<namespace>:<name>:{<name>}:<parts>`.
        Every key of a participant shares its hash tag, so one script may touch them all
        (on a Redis Cluster too)."""
        return ":".join((f"{namespace}:{self.name}:{{{self.name}}}", *parts))
