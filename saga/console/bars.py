"""Until the SVG timeline lands: each row of a saga's timeline as a bar's words."""

from dataclasses import dataclass

from saga.timeline import TimelineRow


@dataclass(frozen=True)
class Bar:
    """One execution or compensation of a step, with its outcome in the console's words."""

    row: TimelineRow
    outcome: str  # succeeded, failed, timed_out, compensated, skipped or pending


def bar(row: TimelineRow) -> Bar:
    """A timeline row and its outcome word."""
    if row.status == "succeeded":
        return Bar(row, "compensated" if row.action == "compensate" else "succeeded")
    if row.status == "failed":
        return Bar(row, "timed_out" if row.reason == "timeout" else "failed")
    return Bar(row, "skipped" if row.status == "skipped" else "pending")
