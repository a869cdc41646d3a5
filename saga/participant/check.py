"""The conformance check: drive a running participant, in any language, over the wire
through the protocol's cases, and say which it passes (`saga participant check`, and
`check_participant` / `assert_conforms` from a test).

The cases (docs/wire-protocol.md states the rules they check):

- `repeat`: a command delivered twice (the same message_id) gets the same reply type and
  payload both times;
- `retry`: a new command under the same idempotency key gets the same reply;
- `compensation_first`: a compensation that comes before its command is answered, and
  the late command is then refused (`CommandFailed`, not transient);
- `unknown_command`: a well-formed command of a type the participant does not know gets
  `CommandFailed` reason `unknown_command`, not transient, within the timeout;
- `malformed_envelope`, `not_json`: such a body is dead-lettered with a reason, as the
  protocol says, and a valid command after it is still answered;
- `ids`: every reply names the saga (saga_id, correlation_id) and the command it answers
  (causation_id).

It runs beside a live system without disturbing it: every saga id it makes up starts
with `conformance-check.<run>.`, whose replies an orchestrator acks and ignores; it reads
them on a queue of its own; it undoes (with the step's compensation) what a command of
its did, and takes out of the dead letters those it caused, by their ids.
"""

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import ValidationError

from contracts.envelope import CHECK_SAGA_PREFIX, Envelope, first_error
from contracts.messages import CommandFailed
from contracts.topology import Topology
from contracts.topology import check_participant as valid_participant
from saga.deadletters import DeadLetterQueue, ReplayRunning, dead_letter_id
from saga.participant.check_samples import (
    Action,
    SampleError,
    StepSample,
    learn_steps,
    named_steps,
)
from saga.participant.check_wire import CheckError, Parked, Received, Wire
from saga.safetext import printable
from saga.transport import (
    DEAD_ID_HEADER,
    DEAD_QUEUE_HEADER,
    DEAD_REASON_HEADER,
    is_dead_letter_id,
)

__all__ = [
    "Action",
    "CaseResult",
    "CheckError",
    "Report",
    "SampleError",
    "StepSample",
    "assert_conforms",
    "check_participant",
    "learn_steps",
    "named_steps",
]

Outcome = Literal["passed", "failed", "inconclusive"]
FAILED: Final = CommandFailed.__name__
# A command type no participant takes (one that does is told by its answer).
UNKNOWN_COMMAND: Final = "ConformanceCheckUnknownCommand"
_SHOWN: Final = 120  # of a payload or reason, in a case's reason


@dataclass(frozen=True)
class CaseResult:
    """One case as it went: passed, failed, or inconclusive (nothing broken, nothing
    proven either: the reason says what would tell)."""

    case: str
    command: str | None
    outcome: Outcome
    reason: str


@dataclass(frozen=True)
class Report:
    """A run of the check against one participant."""

    participant: str
    namespace: str
    run: str  # every saga id of the run starts with CHECK_SAGA_PREFIX + run + "."
    cases: tuple[CaseResult, ...]
    replies: int = 0  # how many replies of the run came, awaited or not
    # Dead letters the run caused and could not take out again (their ids).
    left_behind: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """No case failed."""
        return all(c.outcome != "failed" for c in self.cases)

    def lines(self) -> list[str]:
        """One line per case: `failed  repeat  ReserveStock: why`."""
        return [
            f"{c.outcome:<12} {c.case:<18} {(c.command or '-') + ':':<24} {c.reason}"
            for c in self.cases
        ]

    def as_json(self) -> dict[str, Any]:
        """The report as one JSON document."""
        return {
            "participant": self.participant,
            "namespace": self.namespace,
            "run": self.run,
            "passed": self.passed,
            "cases": [asdict(c) for c in self.cases],
            "replies": self.replies,
            "left_behind": list(self.left_behind),
        }


def assert_conforms(report: Report) -> None:
    """Fail (AssertionError) with every case that failed, one line each: for a test."""
    if not report.passed:
        failed = [
            line
            for line, c in zip(report.lines(), report.cases, strict=True)
            if c.outcome == "failed"
        ]
        raise AssertionError(
            f"{report.participant} breaks the wire protocol:\n" + "\n".join(failed)
        )


async def check_participant(
    participant: str,
    steps: Sequence[StepSample],
    *,
    rabbitmq_url: str,
    namespace: str,
    within: float = 10.0,
) -> Report:
    """Run every case against a participant that runs in `namespace` now, with its
    `steps` (at least one); raises CheckError if it cannot run: the participant's queue
    is not there or nobody consumes it, or it answers nothing within `within` seconds.
    A server away raises the client's error (aio_pika's AMQPConnectionError)."""
    check_participant_name(participant)
    if not steps:
        raise CheckError(f"no commands to send {participant}: name at least one")
    topology = Topology(namespace)
    run = secrets.token_hex(6)
    wire, consumers = await Wire.open(
        rabbitmq_url, topology, participant, mark=f"{CHECK_SAGA_PREFIX}{run}."
    )
    try:
        if consumers == 0:
            raise CheckError(
                f"nothing consumes {topology.participant_queue(participant)}: "
                f"start {participant} first"
            )
        checking = _Run(wire, steps, run, within)
        cases = await checking.all_cases()
    finally:
        await wire.close()
    left = await _take_out(DeadLetterQueue(rabbitmq_url, topology), checking.parked, within)
    return Report(participant, namespace, run, tuple(cases), wire.received, left)


def check_participant_name(name: str) -> str:
    """The name, if it can name a participant; CheckError saying why not."""
    try:
        return valid_participant(name)
    except ValueError as exc:
        raise CheckError(str(exc)) from None


@dataclass
class _Asked:
    """A command and the reply that answered it, with the causations it may name: the
    command's id, or (answering a repeat with the reply it gave first) an earlier try's."""

    command: Envelope
    reply: Received
    causations: frozenset[str]


@dataclass
class _Run:
    wire: Wire
    steps: Sequence[StepSample]
    run: str
    within: float
    asked: list[_Asked] = field(default_factory=list)
    parked: list[str] = field(default_factory=list)  # ids of the dead letters it caused
    # The first answer to each command type, on a saga of its own: what it does
    # without a compensation first.
    plain: dict[str, Received] = field(default_factory=dict)
    _sagas: int = 0
    _answered_once: bool = False

    async def all_cases(self) -> list[CaseResult]:
        results: list[CaseResult] = []
        actions = [
            (step, action, kind)
            for step in self.steps
            for action, kind in ((step.action, "execute"), (step.compensation, "compensate"))
            if action is not None
        ]
        for step, action, kind in actions:
            results.append(await self.repeat(step, action, kind))
        for step, action, kind in actions:
            results.append(await self.retry(step, action, kind))
        for step in self.steps:
            if step.compensation is not None:
                results.append(await self.compensation_first(step))
        results.append(await self.unknown_command())
        results.append(await self.undeliverable("malformed_envelope"))
        results.append(await self.undeliverable("not_json"))
        results.append(self.ids())
        return results

    # --- the cases ----------------------------------------------------------------

    async def repeat(self, step: StepSample, action: Action, kind: str) -> CaseResult:
        saga = self.new_saga()
        command = self.command(saga, step.step, kind, action)
        first = await self.ask(command)
        if first is not None:
            self.plain.setdefault(action.command, first)
        if first is None:
            return self.failed("repeat", action, f"no answer within {self.within:g}s")
        again = await self.ask(command)
        undone = await self.undo(saga, step, action, kind, first)
        return self.same("repeat", action, first, again, undone)

    async def retry(self, step: StepSample, action: Action, kind: str) -> CaseResult:
        saga = self.new_saga()
        command = self.command(saga, step.step, kind, action)
        first = await self.ask(command)
        if first is None:
            return self.failed("retry", action, f"no answer within {self.within:g}s")
        retried = command.model_copy(
            update={"message_id": self.new_id(), "sent_at": datetime.now(UTC)}
        )
        again = await self.ask(retried, earlier=command.message_id)
        undone = await self.undo(saga, step, action, kind, first)
        return self.same("retry", action, first, again, undone)

    async def compensation_first(self, step: StepSample) -> CaseResult:
        assert step.compensation is not None
        case, action, undo = "compensation_first", step.action, step.compensation
        saga = self.new_saga()
        answer = await self.ask(self.command(saga, step.step, "compensate", undo))
        if answer is None:
            return self.failed(
                case, action, f"{undo.command} was not answered within {self.within:g}s"
            )
        problem = _problem(answer, undo)
        if problem is not None:
            return self.failed(case, action, f"{undo.command}: {problem}")
        if _is_failure(answer):
            return self.failed(
                case,
                action,
                f"{undo.command} that came first was refused ({_reason(answer)}): "
                "remember it and answer it as done",
            )
        late = await self.ask(self.command(saga, step.step, "execute", action))
        if late is None:
            return self.failed(
                case, action, f"the late command was not answered within {self.within:g}s"
            )
        problem = _problem(late, action)
        if problem is not None:
            return self.failed(case, action, problem)
        if not _is_failure(late):
            # Done after all: undone again, under a key of its own.
            await self.ask(self.command(saga, step.step, "compensate", undo, replay=1))
            return self.failed(
                case,
                action,
                f"the late command was done ({_shown(late)}) after its compensation: "
                "refuse it with CommandFailed",
            )
        if not _definite(late):
            return self.failed(
                case,
                action,
                f"refused ({_reason(late)}) as transient or of unknown effect: refuse it for "
                "good, with nothing done",
            )
        plain = self.plain.get(action.command)
        if plain is None or not _is_failure(plain):
            return self.passed(case, action, f"refused ({_reason(late)})")
        if _reason(plain) == _reason(late):
            return CaseResult(
                case,
                action.command,
                "inconclusive",
                f"refused ({_reason(late)}), as it is without a compensation first: give "
                f"{action.command} a payload it accepts to tell",
            )
        return self.passed(
            case, action, f"refused ({_reason(late)}; without a compensation: {_reason(plain)})"
        )

    async def unknown_command(self) -> CaseResult:
        case = "unknown_command"
        action = Action(UNKNOWN_COMMAND)
        reply = await self.ask(self.command(self.new_saga(), "check", "execute", action))
        if reply is None:
            return self.failed(
                case,
                action,
                f"no answer within {self.within:g}s: answer it with CommandFailed reason "
                "unknown_command, so that the saga fails the step at once",
            )
        problem = _problem(reply, action)
        if problem is not None:
            return self.failed(case, action, problem)
        if not _is_failure(reply) or _payload(reply).get("reason") != "unknown_command":
            return self.failed(
                case,
                action,
                f"answered {_shown(reply)}: CommandFailed reason unknown_command expected",
            )
        if _payload(reply).get("transient") is True:
            return self.failed(case, action, "answered as transient: it will never be known")
        return self.passed(case, action, "CommandFailed unknown_command")

    async def undeliverable(self, case: str) -> CaseResult:
        """A body the participant cannot take: parked with a reason, nothing answered,
        and the participant still answers a valid command after it."""
        template = self.steps[0].action
        saga = self.new_saga()
        action = Action(template.command if case == "malformed_envelope" else "-")
        envelope = self.command(saga, "check", "execute", template)
        if case == "malformed_envelope":
            # JSON, a command's type and payload, but no saga_id, correlation_id nor sent_at.
            body = envelope.model_dump_json(
                exclude={"saga_id", "correlation_id", "sent_at"}
            ).encode()
        else:
            body = f"{envelope.message_id}: this body is not JSON {{".encode()
        message_id = envelope.message_id
        await self.wire.send(envelope, body=body)
        parked = await self.wire.dead_letter_of(body, within=self.within)
        if parked is None:
            return self.failed(
                case,
                action,
                f"not dead-lettered within {self.within:g}s: publish it to "
                f"{self.wire.topology.dead_letter_exchange} with a reason, then ack it",
            )
        self.parked.append(dead_letter_id(parked.headers, parked.message_id, parked.body))
        problem = _parking_problem(
            parked, message_id, self.wire.topology.participant_queue(self.wire.participant)
        )
        still = await self.still_answers()
        answered = self.wire.replies_to(message_id)
        if problem is not None:
            return self.failed(case, action, problem)
        if answered:
            return self.failed(
                case, action, f"dead-lettered, and answered too ({_shown(answered[0])})"
            )
        if still is not None:
            return self.failed(case, action, f"dead-lettered, but then {still}")
        reason = _text(parked.headers.get(DEAD_REASON_HEADER))
        return self.passed(case, action, f"dead-lettered: {reason}")

    def ids(self) -> CaseResult:
        """Every reply the run awaited names its saga and the command it answers."""
        case, action = "ids", Action("-")
        for asked in self.asked:
            reply, command = asked.reply.envelope, asked.command
            if reply is None:
                return self.failed(
                    case,
                    action,
                    f"a reply to {command.type} is not an envelope: {asked.reply.error}",
                )
            for name, value, wanted in (
                ("saga_id", reply.saga_id, command.saga_id),
                ("correlation_id", reply.correlation_id, command.correlation_id),
            ):
                if value != wanted:
                    return self.failed(
                        case,
                        action,
                        f"a reply to {command.type} has {name} {value!r}, not {wanted!r}",
                    )
            if reply.causation_id not in asked.causations:
                return self.failed(
                    case,
                    action,
                    f"a reply to {command.type} has causation_id {reply.causation_id!r}, not "
                    f"the command's message_id {command.message_id!r}",
                )
        if self.wire.strays:
            stray = self.wire.strays[0]
            return self.failed(
                case, action, f"a reply names no saga or command of the check's: {_shown(stray)}"
            )
        return self.passed(
            case, action, f"all {len(self.asked)} replies name their saga and command"
        )

    # --- helpers ------------------------------------------------------------------

    async def ask(self, command: Envelope, *, earlier: str | None = None) -> Received | None:
        """Send a command and take its answer (None: none within the timeout); the very
        first command of a run unanswered ends the run: nothing answers."""
        reply = await self.wire.answer(
            command, within=self.within, earlier=[earlier] if earlier else []
        )
        if reply is None and not self._answered_once:
            raise CheckError(
                f"{self.wire.participant} did not answer within {self.within:g}s: is it "
                f"running, in namespace {self.wire.topology.namespace!r}?"
            )
        self._answered_once = True
        if reply is not None:
            causes = frozenset({command.message_id, *([earlier] if earlier else [])})
            self.asked.append(_Asked(command, reply, causes))
        return reply

    async def undo(
        self, saga: str, step: StepSample, action: Action, kind: str, first: Received
    ) -> str | None:
        """Compensate what a command of the check's did (what went wrong, if anything)."""
        if kind != "execute" or step.compensation is None or not _took_effect(first):
            return None
        undone = await self.ask(self.command(saga, step.step, "compensate", step.compensation))
        if undone is None:
            return f"its compensation {step.compensation.command} was not answered"
        return None

    async def still_answers(self) -> str | None:
        """A valid command on a saga of its own is answered (what went wrong, if not)."""
        step = self.steps[0]
        saga = self.new_saga()
        reply = await self.ask(self.command(saga, step.step, "execute", step.action))
        if reply is None:
            return (
                f"a valid {step.action.command} after it was not answered within {self.within:g}s"
            )
        await self.undo(saga, step, step.action, "execute", reply)
        return None

    def new_saga(self) -> str:
        self._sagas += 1
        return f"{CHECK_SAGA_PREFIX}{self.run}.{self._sagas}"

    def new_id(self) -> str:
        return f"{CHECK_SAGA_PREFIX}{self.run}.m{secrets.token_hex(8)}"

    def command(
        self, saga: str, step: str, kind: str, action: Action, *, replay: int = 0
    ) -> Envelope:
        key = f"{saga}:{step}:{kind}" + (f":replay{replay}" if replay else "")
        return Envelope(
            message_id=self.new_id(),
            saga_id=saga,
            correlation_id=saga,
            type=action.command,
            sent_at=datetime.now(UTC),
            payload=dict(action.payload),
            idempotency_key=key,
        )

    def same(
        self,
        case: str,
        action: Action,
        first: Received,
        again: Received | None,
        undone: str | None,
    ) -> CaseResult:
        problem = _problem(first, action)
        if problem is not None:
            return self.failed(case, action, problem)
        if again is None:
            return self.failed(
                case,
                action,
                f"answered {_shown(first)} once, then nothing within {self.within:g}s",
            )
        problem = _problem(again, action)
        if problem is not None:
            return self.failed(case, action, problem)
        assert first.envelope is not None and again.envelope is not None
        one, two = first.envelope, again.envelope
        if (one.type, one.payload) != (two.type, two.payload):
            if _is_failure(first) and not _definite(first):
                return CaseResult(
                    case,
                    action.command,
                    "inconclusive",
                    f"first {_shown(first)}, then {_shown(again)}: an answer that is "
                    "transient or of unknown effect need not be repeated",
                )
            return self.failed(case, action, f"first {_shown(first)}, then {_shown(again)}")
        if undone is not None:
            return self.failed(case, action, f"both {_shown(first)}, but {undone}")
        return self.passed(case, action, f"both {_shown(first)}")

    @staticmethod
    def passed(case: str, action: Action, reason: str) -> CaseResult:
        return CaseResult(case, _subject(action), "passed", reason)

    @staticmethod
    def failed(case: str, action: Action, reason: str) -> CaseResult:
        return CaseResult(case, _subject(action), "failed", reason)


def _subject(action: Action) -> str | None:
    return None if action.command == "-" else action.command


def _payload(received: Received) -> dict[str, Any]:
    return received.envelope.payload if received.envelope is not None else {}


def _is_failure(received: Received) -> bool:
    return received.envelope is not None and received.envelope.type == FAILED


def _definite(received: Received) -> bool:
    """A success, or a refusal neither transient nor of unknown effect: what a repeat must
    be answered with again."""
    payload = _payload(received)
    return not _is_failure(received) or not (
        payload.get("transient") is True or payload.get("effect_unknown") is True
    )


def _took_effect(received: Received) -> bool:
    """Whether the command may have done something: answered with success, or with a
    failure of unknown effect."""
    if received.envelope is None:
        return False
    return not _is_failure(received) or _payload(received).get("effect_unknown") is True


def _reason(received: Received) -> str:
    return str(_payload(received).get("reason"))


def _problem(received: Received, action: Action) -> str | None:
    """What is wrong with a reply as a reply to this action, if anything: not an
    envelope, a type that is neither its reply nor CommandFailed, a CommandFailed its
    contract refuses."""
    envelope = received.envelope
    if envelope is None:
        return f"the reply is not an envelope: {received.error}"
    if envelope.type == FAILED:
        try:
            CommandFailed.model_validate(envelope.payload)
        except ValidationError as exc:
            return f"CommandFailed with a payload its contract refuses: {first_error(exc)}"
        return None
    if action.reply is not None and envelope.type != action.reply:
        return f"answered {envelope.type}: neither {action.reply} nor CommandFailed"
    return None


def _parking_problem(parked: Parked, message_id: str, queue: str) -> str | None:
    """What is wrong with how a message was dead-lettered, if anything."""
    headers = parked.headers
    reason = headers.get(DEAD_REASON_HEADER)
    if not _text(reason):
        death = headers.get("x-death")
        if isinstance(death, list) and death and isinstance(death[0], dict):
            how = f"by RabbitMQ ({_text(death[0].get('reason'))})"
        else:
            how = "with no reason"
        return f"dead-lettered {how}: say why in header {DEAD_REASON_HEADER}"
    source = _text(headers.get(DEAD_QUEUE_HEADER))
    if source != queue:
        return f"header {DEAD_QUEUE_HEADER} is {source!r}, not {queue!r}"
    if not is_dead_letter_id(_text(headers.get(DEAD_ID_HEADER))):
        return (
            f"header {DEAD_ID_HEADER} missing, or not an id: {_text(headers.get(DEAD_ID_HEADER))!r}"
        )
    if parked.message_id != message_id:
        return f"its message_id {parked.message_id!r} was not kept ({message_id!r})"
    return None


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def _shown(received: Received) -> str:
    """A reply in a few words: `StockReserved {"amount": "5.00"}`, `CommandFailed reason`."""
    envelope = received.envelope
    if envelope is None:
        return "a body that is not an envelope"
    if envelope.type == FAILED:
        return f"CommandFailed {printable(str(envelope.payload.get('reason')), limit=_SHOWN)}"
    return f"{envelope.type} {printable(json.dumps(envelope.payload), limit=_SHOWN)}"


async def _take_out(dead: DeadLetterQueue, ids: list[str], within: float) -> tuple[str, ...]:
    """Remove the run's dead letters (a copy the check saw may reach the queue a moment
    later): the ids it could not remove within `within` seconds."""
    left = set(ids)
    deadline = time.monotonic() + within
    while left:
        with contextlib.suppress(ReplayRunning):  # an operator's replay: try again after it
            removed = await dead.remove(left)
            left -= {letter.id for letter in removed}
        if not left or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    return tuple(sorted(left))
