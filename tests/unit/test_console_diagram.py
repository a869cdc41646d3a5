"""The console's diagram of a saga definition: stages top to bottom, parallel groups side
by side, each step's participant, command, compensation and condition labelled, the
pivot marked; drawn for the shop's order saga and every example."""

import itertools
from pathlib import Path
from typing import Final

import pytest

from saga.console.diagram import Diagram, StepBox, definition_diagram
from saga.core.document import DefinitionSpec, compile_definition
from saga.definitions import read_file
from saga.extensions import load
from tests.unit.console_markup import classes, elements, render, title

ROOT: Final = Path(__file__).resolve().parents[2]
SHIPPED: Final = sorted(
    str(p.relative_to(ROOT))
    for p in [ROOT / "services/definitions/order.yaml", *ROOT.glob("examples/*/*.yaml")]
)


def document(source: str) -> DefinitionSpec:
    return read_file(ROOT / source)


def drawn(source: str) -> Diagram:
    spec = document(source)
    return definition_diagram(compile_definition(spec, load(None).catalogue), spec)


def box(diagram: Diagram, step: str) -> StepBox:
    (found,) = [b for b in diagram.boxes if b.step == step]
    return found


def overlap(a: StepBox, b: StepBox) -> bool:
    return (
        a.x < b.x + b.width
        and b.x < a.x + a.width
        and a.y < b.y + b.height
        and b.y < a.y + a.height
    )


def test_the_order_saga_is_four_stages_top_to_bottom_with_its_labels() -> None:
    diagram = drawn("services/definitions/order.yaml")
    assert [b.step for b in diagram.boxes] == [
        "reserve_stock",
        "take_payment",
        "create_order",
        "confirm_stock",
    ]
    tops = [b.y for b in diagram.boxes]
    assert tops == sorted(tops) and len(set(tops)) == 4
    assert len(diagram.arrows) == 3 and diagram.groups == ()
    reserve = box(diagram, "reserve_stock")
    assert (reserve.participant, reserve.command, reserve.compensation) == (
        "stock",
        "ReserveStock",
        "ReleaseStock",
    )
    assert box(diagram, "take_payment").condition == 'payment_method != "Cash on Delivery"'
    confirm = box(diagram, "confirm_stock")
    assert confirm.pivot and not confirm.undoable and confirm.compensation is None
    assert not any(b.pivot for b in diagram.boxes if b is not confirm)
    for above, below in itertools.pairwise(diagram.boxes):
        (arrow,) = [a for a in diagram.arrows if above.y + above.height <= a.y1 < below.y]
        assert arrow.y2 <= below.y


def test_the_steps_of_a_group_sit_side_by_side_in_its_frame() -> None:
    diagram = drawn("examples/order_processing/order-fulfilment.yaml")
    shipment, invoice = box(diagram, "book_shipment"), box(diagram, "issue_invoice")
    assert shipment.y == invoice.y and shipment.x + shipment.width < invoice.x
    assert shipment.stage == invoice.stage
    frame = next(g for g in diagram.groups if g.stage == shipment.stage)
    assert frame.label == "parallel: ship_and_invoice"
    for inside in (shipment, invoice):
        assert frame.x <= inside.x and inside.x + inside.width <= frame.x + frame.width
        assert frame.y < inside.y and inside.y + inside.height <= frame.y + frame.height
    assert box(diagram, "sms").condition == "input.phone != null"
    assert box(diagram, "confirm_stock").pivot
    assert not box(diagram, "email").undoable and box(diagram, "book_shipment").undoable


@pytest.mark.parametrize("source", SHIPPED)
def test_every_shipped_definition_draws_inside_its_diagram_without_overlaps(source: str) -> None:
    diagram = drawn(source)
    spec = document(source)
    assert {b.step for b in diagram.boxes} == {s.name for st in spec.stages() for s in st}
    for b in diagram.boxes:
        assert b.x >= 0 and b.x + b.width <= diagram.width
        assert b.y >= 0 and b.y + b.height <= diagram.height
        assert all(b.x < line.x and b.y < line.y < b.y + b.height for line in b.lines)
        assert not [o for o in diagram.boxes if o is not b and overlap(b, o)]
    svg = render("console/_diagram.html", diagram=diagram)
    assert [g.get("data-step") for g in elements(svg, "g") if g.get("data-step")] == [
        b.step for b in diagram.boxes
    ]


def test_the_partial_labels_each_box_and_marks_the_pivot() -> None:
    diagram = drawn("services/definitions/order.yaml")
    svg = render("console/_diagram.html", diagram=diagram)
    assert svg.get("viewBox") == f"0 0 {diagram.width} {diagram.height}"
    (payment,) = elements(svg, "g", data_step="take_payment")
    assert classes(payment) == {"step-box", "undoable", "conditional"}
    texts = {t.get("class"): t.text for t in elements(payment, "text")}
    assert texts == {
        "step-name": "take_payment",
        "step-participant": "by payment",
        "step-command": "command: ChargePayment",
        "step-compensation": "undo: RefundPayment",
        "step-condition": 'when: payment_method != "Cash on Delivery"',
    }
    (confirm,) = elements(svg, "g", data_step="confirm_stock")
    assert "pivot" in classes(confirm) and "cannot be undone" in title(confirm)
    assert len(elements(svg, "line")) == 3
    assert not [e for e in svg.iter() if e.get("style") is not None]


def test_a_long_condition_is_cut_in_its_box_and_whole_in_its_title() -> None:
    spec = document("services/definitions/order.yaml")
    long = "payment_method != " + '"<b>x</b>"' * 30
    steps = [
        s.model_copy(update={"when": long}) if s.name == "take_payment" else s for s in spec.steps
    ]
    changed = spec.model_copy(update={"steps": steps})
    diagram = definition_diagram(compile_definition(changed, load(None).catalogue), changed)
    svg = render("console/_diagram.html", diagram=diagram)
    (payment,) = elements(svg, "g", data_step="take_payment")
    (condition,) = [t for t in elements(payment, "text") if t.get("class") == "step-condition"]
    assert (condition.text or "").endswith("…") and len(condition.text or "") < len(long)
    assert f"when: {long}" in title(payment)


def test_without_its_document_a_definition_still_draws_what_it_knows() -> None:
    spec = document("services/definitions/order.yaml")
    diagram = definition_diagram(compile_definition(spec, load(None).catalogue))
    reserve = box(diagram, "reserve_stock")
    assert (reserve.command, reserve.condition, reserve.participant) == (None, None, "stock")
    assert [line.text for line in reserve.lines] == ["reserve_stock", "by stock", "undo: yes"]
    assert box(diagram, "confirm_stock").pivot
