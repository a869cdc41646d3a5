"""What `saga replay` says of each saga: what it did, and whether RabbitMQ has the commands."""

from typing import Any

from saga.cli.ops import replay_line


def result(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "saga_id": "s1",
        "outcome": "replayed",
        "status": "compensating",
        "direction": "undo",
        "published": True,
        "commands": [
            {"type": "RefundPayment", "participant": "payment", "idempotency_key": "k:replay1"}
        ],
    }
    return base | changes


def test_a_replay_whose_command_the_broker_took_says_sent() -> None:
    line = replay_line(result(), dry_run=False)
    assert line == (
        "saga s1: replayed to undo what is left; sent RefundPayment to payment "
        "(key k:replay1); now compensating"
    )


def test_a_replay_whose_command_waits_in_the_outbox_does_not_say_sent() -> None:
    line = replay_line(result(published=False), dry_run=False)
    assert "stored in its outbox but not sent" in line and "; sent" not in line


def test_a_replay_that_could_send_nothing_says_so() -> None:
    line = replay_line(result(commands=[], published=False, status="failed"), dry_run=False)
    assert line == (
        "saga s1: replayed to undo what is left; nothing could be sent (see its reason); now failed"
    )


def test_a_saga_someone_else_replayed_meanwhile_is_named() -> None:
    line = replay_line(result(outcome="not_replayed", status="running"), dry_run=False)
    assert line.startswith("saga s1: not replayed") and "now running" in line


def test_a_dry_run_says_what_would_be_done() -> None:
    line = replay_line(result(direction="finish", published=False), dry_run=True)
    assert line.startswith("saga s1: would finish it: a step that cannot be undone")
    assert "would send RefundPayment to payment (key k:replay1)" in line
