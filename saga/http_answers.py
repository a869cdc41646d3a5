"""What an HTTP participant's answer (or its absence) means: the pure table from a call's
outcome to the step's reply, and whether it counts against the endpoint's breaker.

    outcome                               reply                     transient  effect unknown
    2xx, a JSON object or no body         HttpSucceeded (the object is the result)
    2xx, any other body; 1xx, 3xx         protocol_error            no         yes
    4xx but 408 and 429                   the body's `reason`,      no         no
                                          else http_<status>
    408, 429 (not taken on)               http_<status>             yes        no
    5xx (may have done part of the work)  http_<status>             yes        yes
    a body over MAX_BODY bytes, any status protocol_error           no         yes
    not connected (nothing was sent)      unreachable               yes        no
    no answer within the timeout          timeout                   yes        yes
    cut off mid-call                      unreachable               yes        yes
    the circuit is open (nothing sent)    circuit_open              yes        no

The endpoint's breaker counts 5xx, 408, 429 and every call that got no answer as its
failures; any other answer, even one that breaks the protocol, shows it is up.
"""

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Literal

from contracts.messages import CommandFailed
from saga.core.document import HTTP_SUCCEEDED
from saga.core.reasons import PROTOCOL_ERROR

# 408 and 429: the endpoint did not take the call on; trying again later may work.
TRANSIENT_STATUSES: Final = frozenset({408, 429})
# The most of a body that is read; a longer one is a protocol error.
MAX_BODY: Final = 64 * 1024
# The most of what an endpoint said that goes into a reply's detail (or a log line).
MAX_DETAIL: Final = 500

Reply = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Answered:
    """The endpoint answered `status`; `body` is None when it was over MAX_BODY bytes."""

    status: int
    body: bytes | None


@dataclass(frozen=True)
class Unanswered:
    """The call got no answer: `unreachable` (not connected: nothing was sent),
    `timeout` (nothing within the timeout), `cut_off` (the connection broke mid-call)."""

    why: Literal["unreachable", "timeout", "cut_off"]


@dataclass(frozen=True)
class Verdict:
    """The reply a call's outcome makes, and whether it is a failure of the endpoint (for
    its circuit breaker)."""

    reply_type: str
    payload: dict[str, Any]
    endpoint_failed: bool

    @property
    def reply(self) -> Reply:
        """The reply as (type, payload)."""
        return self.reply_type, self.payload


def verdict(outcome: Answered | Unanswered, *, participant: str, timeout: timedelta) -> Verdict:
    """The reply to a command whose call to `participant` (with `timeout`) had `outcome`."""
    if isinstance(outcome, Unanswered):
        return _unanswered(outcome, participant, timeout)
    status, body = outcome.status, outcome.body
    if body is None:
        detail = f"HTTP {status} with a body over {MAX_BODY} bytes"
        return _failed(PROTOCOL_ERROR, detail, transient=False, unknown=True, endpoint=False)
    answer = _json_object(body)
    if status >= 500 or status in TRANSIENT_STATUSES:
        # 408 and 429: not taken on. A 5xx may have done part of the work.
        said = _said(status, answer)
        return _failed(f"http_{status}", said, transient=True, unknown=status >= 500, endpoint=True)
    if status >= 400:
        reason = answer.get("reason") if answer else None
        if not isinstance(reason, str) or not reason or len(reason) > 64:
            reason = f"http_{status}"
        said = _said(status, answer)
        return _failed(reason, said, transient=False, unknown=False, endpoint=False)
    if 200 <= status < 300:
        result = answer if body else {}
        if result is not None:
            return Verdict(HTTP_SUCCEEDED, result, endpoint_failed=False)
    detail = f"HTTP {status} without a JSON object"
    return _failed(PROTOCOL_ERROR, detail, transient=False, unknown=True, endpoint=False)


def circuit_open(detail: str) -> Verdict:
    """The reply to a command not sent because its endpoint's circuit is open."""
    return _failed("circuit_open", detail, transient=True, unknown=False, endpoint=False)


def _unanswered(outcome: Unanswered, participant: str, timeout: timedelta) -> Verdict:
    if outcome.why == "unreachable":
        detail = f"{participant} could not be reached"
        return _failed("unreachable", detail, transient=True, unknown=False, endpoint=True)
    if outcome.why == "timeout":
        detail = f"no answer from {participant} within {timeout}"
        return _failed("timeout", detail, transient=True, unknown=True, endpoint=True)
    detail = f"the call to {participant} was cut off"
    return _failed("unreachable", detail, transient=True, unknown=True, endpoint=True)


def _json_object(content: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None: not JSON (NaN and Infinity are not, nor text
    in no Unicode encoding, nor a number too long to read), nested too deep to read, or
    JSON but not an object."""
    try:
        body = json.loads(content, parse_constant=_not_json)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError too
        return None
    return body if isinstance(body, dict) else None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _said(status: int, answer: dict[str, Any] | None) -> str:
    """What the endpoint said of a failure: its `detail`, or only its status."""
    detail = answer.get("detail") if answer else None
    return f"HTTP {status}: {str(detail)[:MAX_DETAIL]}" if detail else f"HTTP {status}"


def _failed(reason: str, detail: str, *, transient: bool, unknown: bool, endpoint: bool) -> Verdict:
    failure = CommandFailed(
        reason=reason, detail=detail[:1000], transient=transient, effect_unknown=unknown
    )
    return Verdict(CommandFailed.__name__, failure.model_dump(mode="json"), endpoint)
