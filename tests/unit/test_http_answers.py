"""What an HTTP participant's answer means: the whole table, one row per kind of outcome."""

import json
from datetime import timedelta
from typing import Any

import pytest

from contracts.messages import CommandFailed
from saga.core.document import HTTP_SUCCEEDED
from saga.http_answers import MAX_BODY, Answered, Unanswered, circuit_open, verdict

OBJECT = b'{"hold_id": "h1"}'
SAID = json.dumps({"reason": "out_of_rooms", "detail": "none left"}).encode()
# A failure: (reason, transient, effect unknown, a failure of the endpoint)
Failure = tuple[str, bool, bool, bool]

TABLE: list[tuple[Answered | Unanswered, Failure | dict[str, Any]]] = [
    # 2xx with a JSON object, or no body: success, the object is the result.
    (Answered(200, OBJECT), {"hold_id": "h1"}),
    (Answered(201, OBJECT), {"hold_id": "h1"}),
    (Answered(204, b""), {}),
    (Answered(299, b"{}"), {}),
    # 2xx with anything else; 1xx and 3xx: the endpoint broke the protocol.
    (Answered(200, b"[1, 2]"), ("protocol_error", False, True, False)),
    (Answered(200, b"ok"), ("protocol_error", False, True, False)),
    (Answered(200, b'{"a": NaN}'), ("protocol_error", False, True, False)),
    (Answered(200, b"[" * 100_000), ("protocol_error", False, True, False)),  # too deep
    (Answered(200, b'{"n": ' + b"1" * 5000 + b"}"), ("protocol_error", False, True, False)),
    (Answered(200, b"\xff\xfe{"), ("protocol_error", False, True, False)),
    (Answered(100, b""), ("protocol_error", False, True, False)),
    (Answered(302, b""), ("protocol_error", False, True, False)),
    (Answered(304, OBJECT), ("protocol_error", False, True, False)),
    # 4xx but 408 and 429: a business refusal, its reason the body's (or the status).
    (Answered(400, b""), ("http_400", False, False, False)),
    (Answered(404, b"not found"), ("http_404", False, False, False)),
    (Answered(409, SAID), ("out_of_rooms", False, False, False)),
    (Answered(422, b'{"reason": ""}'), ("http_422", False, False, False)),
    (Answered(422, b'{"reason": 7}'), ("http_422", False, False, False)),
    (Answered(422, json.dumps({"reason": "x" * 65}).encode()), ("http_422", False, False, False)),
    (Answered(499, json.dumps({"reason": "x" * 64}).encode()), ("x" * 64, False, False, False)),
    # 408 and 429: not taken on, try again later.
    (Answered(408, b""), ("http_408", True, False, True)),
    (Answered(429, SAID), ("http_429", True, False, True)),
    # 5xx: try again later; it may have done part of the work.
    (Answered(500, b""), ("http_500", True, True, True)),
    (Answered(502, b"<html>bad gateway</html>"), ("http_502", True, True, True)),
    (Answered(503, SAID), ("http_503", True, True, True)),
    (Answered(599, b""), ("http_599", True, True, True)),
    # A body too long to read, whatever the status: the endpoint broke the protocol.
    (Answered(200, None), ("protocol_error", False, True, False)),
    (Answered(503, None), ("protocol_error", False, True, False)),
    # No answer.
    (Unanswered("unreachable"), ("unreachable", True, False, True)),  # nothing was sent
    (Unanswered("timeout"), ("timeout", True, True, True)),
    (Unanswered("cut_off"), ("unreachable", True, True, True)),
]


@pytest.mark.parametrize(("outcome", "meant"), TABLE)
def test_an_outcome_makes_its_reply(
    outcome: Answered | Unanswered, meant: Failure | dict[str, Any]
) -> None:
    judged = verdict(outcome, participant="hotel", timeout=timedelta(seconds=5))
    if isinstance(meant, dict):
        assert judged.reply == (HTTP_SUCCEEDED, meant)
        assert not judged.endpoint_failed
        return
    assert judged.reply_type == "CommandFailed"
    failure = CommandFailed.model_validate(judged.payload)
    reason, transient, unknown, endpoint_failed = meant
    assert (failure.reason, failure.transient, failure.effect_unknown) == (
        reason,
        transient,
        unknown,
    )
    assert judged.endpoint_failed == endpoint_failed


DETAILS = [
    (Answered(409, SAID), "HTTP 409: none left"),
    (Answered(503, b'{"detail": "' + b"d" * 900 + b'"}'), "HTTP 503: " + "d" * 500),
    (Answered(500, b"stack trace"), "HTTP 500"),  # a body that is not an object: not shown
    (Answered(200, b"[]"), "HTTP 200 without a JSON object"),
    (Answered(200, None), f"HTTP 200 with a body over {MAX_BODY} bytes"),
    (Unanswered("unreachable"), "hotel could not be reached"),
    (Unanswered("timeout"), "no answer from hotel within 0:00:05"),
    (Unanswered("cut_off"), "the call to hotel was cut off"),
]


@pytest.mark.parametrize(("outcome", "detail"), DETAILS)
def test_a_failure_s_detail_says_what_the_endpoint_said_of_it_and_no_more(
    outcome: Answered | Unanswered, detail: str
) -> None:
    judged = verdict(outcome, participant="hotel", timeout=timedelta(seconds=5))
    assert judged.payload["detail"] == detail


def test_an_open_circuit_is_transient_and_sent_nothing() -> None:
    judged = circuit_open("circuit open; retry in 3.0s")
    failure = CommandFailed.model_validate(judged.payload)
    assert (failure.reason, failure.transient, failure.effect_unknown) == (
        "circuit_open",
        True,
        False,
    )
    assert not judged.endpoint_failed  # the breaker is not asked to count it again
