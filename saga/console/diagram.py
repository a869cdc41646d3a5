"""A saga definition as a diagram: its stages top to bottom, the steps of a parallel group
side by side, each step a box naming its participant, command, compensation and
condition, the pivot marked, arrows from each stage to the next.

Pure: the compiled definition (and its document, which alone holds the command types,
conditions and group names as written) come in, geometry for an SVG comes out
(`console/_diagram.html` draws it). Top to bottom reads at phone width.
"""

from dataclasses import dataclass, replace
from typing import Final, Literal

from saga.core.definition import SagaDefinition
from saga.core.document import DefinitionSpec, GroupSpec, StepSpec

# The diagram's geometry, in the SVG's own units (the page scales it to its width).
WIDTH: Final = 480.0
MARGIN: Final = 10.0
SPACING: Final = 8.0  # between the boxes of a group
PER_LINE: Final = 3  # boxes side by side at most; a larger group wraps
LINE_HEIGHT: Final = 14.0
PADDING: Final = 8.0  # inside a box, and inside a group's frame
GROUP_LABEL: Final = 16.0  # room above a group's boxes for its label
ARROW: Final = 24.0  # the room between stages, taken by the arrow
CHAR_WIDTH: Final = 6.2  # about the width of a character of the boxes' text

LineKind = Literal["name", "participant", "command", "compensation", "condition"]


@dataclass(frozen=True)
class TextLine:
    """One line of a box's text, where it is drawn, and what it says (its class)."""

    kind: LineKind
    text: str
    x: float
    y: float


@dataclass(frozen=True)
class StepBox:
    """A step: what it does, how it is undone, when it runs; `pivot` for the step that
    cannot be undone and after which nothing is (`undoable` is False from it on). A
    field the document alone knows is None without it."""

    step: str
    participant: str
    command: str | None
    compensation: str | None
    condition: str | None
    pivot: bool
    undoable: bool
    stage: int
    x: float
    y: float
    width: float
    height: float
    lines: tuple[TextLine, ...]
    title: str

    @property
    def css_class(self) -> str:
        """The classes the box is drawn with (console-charts.css)."""
        kinds = ["step-box", "undoable" if self.undoable else "not-undoable"]
        if self.pivot:
            kinds.append("pivot")
        if self.condition is not None:
            kinds.append("conditional")
        return " ".join(kinds)


@dataclass(frozen=True)
class GroupFrame:
    """The frame around a parallel group's steps, with its label."""

    name: str | None
    stage: int
    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True)
class Arrow:
    """From one stage down to the next."""

    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class Diagram:
    """Everything the definition's SVG draws."""

    saga_type: str
    version: int
    width: float
    height: float
    boxes: tuple[StepBox, ...]
    groups: tuple[GroupFrame, ...]
    arrows: tuple[Arrow, ...]


def definition_diagram(
    definition: SagaDefinition, document: DefinitionSpec | None = None
) -> Diagram:
    """The diagram of a definition; with its `document`, the boxes also name each step's
    command, compensation command and condition, and each group its name."""
    specs = {s.name: s for stage in document.stages() for s in stage} if document else {}
    groups = _group_names(document) if document else {}
    pivot = next((s.name for s in definition.steps if s.compensation is None), None)
    boxes: list[StepBox] = []
    frames: list[GroupFrame] = []
    arrows: list[Arrow] = []
    y, undoable = MARGIN, True
    for index, names in enumerate(definition.stages):
        if index:
            arrows.append(Arrow(WIDTH / 2, y, WIDTH / 2, y + ARROW - 2))
            y += ARROW
        parallel = len(names) > 1
        inner = y + (GROUP_LABEL + PADDING if parallel else 0)
        left = MARGIN + (PADDING if parallel else 0)
        room = WIDTH - 2 * left
        per_line = min(len(names), PER_LINE)
        width = (room - SPACING * (per_line - 1)) / per_line
        made = []
        for n, name in enumerate(names):
            undoable = undoable and name != pivot
            made.append(
                _box(
                    definition,
                    specs.get(name),
                    name,
                    index,
                    pivot=name == pivot,
                    undoable=undoable,
                    x=left + (n % per_line) * (width + SPACING),
                    width=width,
                )
            )
        # Each line of boxes as tall as its tallest; lines of a wrapped group one below
        # the other.
        top = inner
        for start in range(0, len(made), per_line):
            line = made[start : start + per_line]
            height = max(b.height for b in line)
            boxes.extend(_placed(b, top, height) for b in line)
            top += height + SPACING
        bottom = top - SPACING
        if parallel:
            group = groups.get(index)
            label = f"parallel: {group}" if group else "parallel"
            frames.append(
                GroupFrame(group, index, MARGIN, y, WIDTH - 2 * MARGIN, bottom + PADDING - y, label)
            )
            bottom += PADDING
        y = bottom
    return Diagram(
        saga_type=definition.name,
        version=definition.version,
        width=WIDTH,
        height=y + MARGIN,
        boxes=tuple(boxes),
        groups=tuple(frames),
        arrows=tuple(arrows),
    )


def _group_names(document: DefinitionSpec) -> dict[int, str]:
    """The name of each stage that is a group, by its position."""
    return {i: s.name for i, s in enumerate(document.steps) if isinstance(s, GroupSpec)}


def _box(
    definition: SagaDefinition,
    spec: StepSpec | None,
    name: str,
    stage: int,
    *,
    pivot: bool,
    undoable: bool,
    x: float,
    width: float,
) -> StepBox:
    """A step's box, its lines laid out from its top at 0 (placed later)."""
    step = definition.step(name)
    command = spec.action.command if spec else None
    compensation = spec.compensation.command if spec and spec.compensation else None
    condition = spec.when if spec else None
    said: list[tuple[LineKind, str]] = [
        ("name", f"{name} (pivot)" if pivot else name),
        ("participant", f"by {step.participant}"),
    ]
    if command:
        said.append(("command", f"command: {command}"))
    if step.compensation is None:
        said.append(("compensation", "cannot be undone"))
    else:
        said.append(("compensation", f"undo: {compensation}" if compensation else "undo: yes"))
    if condition:
        said.append(("condition", f"when: {condition}"))
    fits = max(int((width - 2 * PADDING) / CHAR_WIDTH), 4)
    lines = tuple(
        TextLine(kind, _cut(text, fits), x + PADDING, PADDING + (i + 0.8) * LINE_HEIGHT)
        for i, (kind, text) in enumerate(said)
    )
    return StepBox(
        step=name,
        participant=step.participant,
        command=command,
        compensation=compensation,
        condition=condition,
        pivot=pivot,
        undoable=undoable,
        stage=stage,
        x=round(x, 2),
        y=0.0,
        width=round(width, 2),
        height=2 * PADDING + len(said) * LINE_HEIGHT,
        lines=lines,
        title="\n".join(text for _, text in said),
    )


def _placed(box: StepBox, top: float, height: float) -> StepBox:
    """The box moved down to `top`, as tall as the tallest of its line."""
    lines = tuple(
        TextLine(line.kind, line.text, line.x, round(line.y + top, 2)) for line in box.lines
    )
    return replace(box, y=round(top, 2), height=height, lines=lines)


def _cut(text: str, fits: int) -> str:
    """The text cut to `fits` characters (the box's title holds it whole)."""
    return text if len(text) <= fits else text[: fits - 1] + "…"
