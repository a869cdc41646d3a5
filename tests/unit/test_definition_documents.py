"""Definitions as documents: the path language, conditions, validation and compilation."""

from dataclasses import replace
from typing import Any

import pytest

from saga.core.conditions import Condition, ConditionError
from saga.core.decide import ReplyReceived, decide, start_saga
from saga.core.definition import InputError, SagaDefinition
from saga.core.document import DefinitionError, compile_definition, read_definition
from saga.core.durations import DURATION_FORMS
from saga.core.paths import Path, PathError, Template
from saga.core.problems import dotted
from saga.core.reasons import INVALID_STEP_INPUT
from saga.definitions import load_text
from services.messages import CATALOGUE
from services.orders import OrderInput
from tests.shop_saga import ORDER_SAGA
from tests.unit.sagas import T0, Run, order_input

CONTEXT: dict[str, Any] = {
    "input": {
        "customer": "ann@example.com",
        "items": [{"product_id": "p1", "quantity": 2}, {"product_id": "p1", "quantity": 1}],
        "note": None,
    },
    "steps": {"quote": {"status": "succeeded", "result": {"amount": "12.50", "ok": True}}},
    "saga": {"id": "s1", "type": "order", "customer": "ann@example.com"},
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("input.customer", "ann@example.com"),
        ("customer", "ann@example.com"),  # a bare name is a field of the input
        ("input.items[0].quantity", 2),
        ("input.items[-1].quantity", 1),
        ("input.items[*].product_id", ["p1", "p1"]),
        ("input.items[*].product_id | unique", ["p1"]),
        ("input.items | length", 2),
        ("input.items | last", {"product_id": "p1", "quantity": 1}),
        ("steps.quote.result.amount", "12.50"),
        ("saga.id", "s1"),
        ("input.nothing | optional", None),
        ("input.nothing | length | optional", None),
        ("input.customer | first | optional", None),
        ("input.note", None),
    ],
)
def test_a_path_leads_to_its_value(path: str, value: Any) -> None:
    assert Path.parse(path).get(CONTEXT) == value


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("input.nothing", "input.nothing: no such field"),
        ("input.items[5]", r"input.items\[5\]: no such element"),
        ("input.customer[*]", "not a list"),
        ("steps.quote.result.amount.cents", "no such field"),
        ("input.customer | length | first", "first and last need a list"),
    ],
)
def test_a_path_that_leads_nowhere_says_where(path: str, message: str) -> None:
    with pytest.raises(PathError, match=message):
        Path.parse(path).get(CONTEXT)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "must start with a name"),
        ("input..customer", "cannot read"),
        ("input.items[x]", "cannot read"),
        ("input.customer | upper", "unknown filter 'upper'"),
        ("x" * 300, "longer than"),
    ],
)
def test_a_path_that_does_not_parse_says_why(path: str, message: str) -> None:
    with pytest.raises(PathError, match=message):
        Path.parse(path)


def test_a_template_keeps_whole_values_and_writes_in_the_rest() -> None:
    template = Template.compile(
        {
            "items": "{{input.items}}",
            "label": "order of {{ input.customer }} for {{steps.quote.result.amount}}",
            "count": "{{input.items | length}}",
            "fixed": [1, True, None, "plain"],
        }
    )
    assert template.render(CONTEXT) == {
        "items": CONTEXT["input"]["items"],
        "label": "order of ann@example.com for 12.50",
        "count": 2,
        "fixed": [1, True, None, "plain"],
    }
    assert [p.text for p in template.paths] == [
        "input.items",
        "input.customer",
        "steps.quote.result.amount",
        "input.items | length",
    ]


def test_a_template_with_unbalanced_braces_is_refused() -> None:
    with pytest.raises(PathError, match="unbalanced braces"):
        Template.compile({"a": "{{input.customer"})


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ('payment_method != "Cash on Delivery"', True),
        ('input.payment_method == "Credit Card" and steps.quote.result.ok', True),
        ("steps.quote.result.ok == true and not input.missing", True),
        ('input.payment_method in ["Debit Card", "Cash on Delivery"]', False),
        ("input.items[0].quantity >= 2", True),
        ('input["payment_method"] == "Credit Card"', True),
        ("input.missing == null", True),
        ("1 < input.items[0].quantity <= 2", True),
        ("input.items[-1].quantity > -1", True),
    ],
)
def test_a_condition_is_judged_on_the_saga(text: str, holds: bool) -> None:
    context = {**CONTEXT, "input": {**CONTEXT["input"], "payment_method": "Credit Card"}}
    assert Condition(text)(context) is holds


@pytest.mark.parametrize(
    "text",
    [
        '__import__("os").system("true")',
        "input.items.pop()",
        "input.a + 1",
        "1 if input.a else 2",
        "[x for x in input.items]",
        "lambda: 1",
        "input[input.key]",
        "true.x",
        "input.a; input.b",
    ],
)
def test_a_condition_allows_no_code(text: str) -> None:
    with pytest.raises(ConditionError):
        Condition(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("input.customer < 3", "cannot compare str < int"),
        ("input.items in input", "`in` an object needs a field name"),
        ("input.items[0] in input.items[1]", "`in` an object needs a field name"),
        ("3 in input.customer", "`in` a string needs a string"),
    ],
)
def test_a_condition_that_cannot_be_judged_says_why(text: str, message: str) -> None:
    with pytest.raises(ConditionError, match=message):
        Condition(text)(CONTEXT)


def _document(**changes: Any) -> dict[str, Any]:
    step = {
        "name": "quote",
        "participant": "quoter",
        "action": {"command": "Quote", "input": {"who": "{{input.customer}}"}, "reply": "Quoted"},
        "compensation": {"command": "Unquote", "reply": "Unquoted"},
    }
    base: dict[str, Any] = {
        "name": "quoting",
        "version": 1,
        "input": {"type": "object", "required": ["customer"]},
        "steps": [step],
    }
    return base | changes


def test_a_document_that_is_not_a_definition_names_the_place() -> None:
    document = _document()
    document["steps"][0]["participant"] = "orchestrator"  # the engine's own queue
    with pytest.raises(DefinitionError, match=r"steps\.0\.participant"):
        read_definition(document)
    with pytest.raises(DefinitionError, match=r"steps\.0\.timeout"):
        read_definition(_document(steps=[{**_document()["steps"][0], "timeout": "soon"}]))
    with pytest.raises(DefinitionError, match="typo: Extra inputs are not permitted"):
        read_definition(_document(typo=1))


def test_every_shape_problem_of_a_document_is_reported_with_its_place() -> None:
    step = {**_document()["steps"][0], "participant": "Not A Name", "timeout": "soon"}
    with pytest.raises(DefinitionError) as refused:
        read_definition(_document(version=0, steps=[step], typo=1))
    places = [dotted(p.loc) for p in refused.value.problems]
    assert places == ["version", "steps.0.participant", "steps.0.timeout", "typo"]
    for place in places:
        assert f"{place}: " in str(refused.value)


def test_a_document_shows_its_durations_as_a_document_writes_them_and_reads_them_back() -> None:
    quote = _document()["steps"][0]
    retry = {"max_attempts": 2, "backoff": 0, "max_backoff": "1h"}
    step = {**quote, "timeout": 90, "retry": retry, "compensation_retry": {"backoff": 0.0015}}
    spec = read_definition(_document(steps=[step]))
    shown = spec.model_dump(mode="json")["steps"][0]
    assert shown["timeout"] == "90s"
    assert (shown["retry"]["backoff"], shown["retry"]["max_backoff"]) == ("0s", "1h")
    assert shown["compensation_retry"]["backoff"] == "1.5ms"
    assert shown["compensation_retry"]["max_backoff"] == "30s"  # the default
    assert read_definition(spec.model_dump(mode="json")) == spec
    for seconds, written in [(0.5, "500ms"), (120, "2m"), (7200, "2h"), (61, "61s")]:
        spec = read_definition(_document(steps=[{**quote, "timeout": seconds}]))
        assert spec.model_dump(mode="json")["steps"][0]["timeout"] == written


def test_a_document_s_meaning_is_checked_once_its_shape_is_right() -> None:
    # As docs/definitions.md says: the meaning checks read relations between the parts
    # (names, earlier steps, the pivot), which a misshapen part would only echo.
    quote = _document()["steps"][0]
    misshapen = {**quote, "timeout": "soon"}
    meaningless = {**quote, "when": "input.a +"}  # a second step named quote, too
    with pytest.raises(DefinitionError) as shape:
        read_definition(_document(steps=[misshapen, meaningless]))
    assert [dotted(p.loc) for p in shape.value.problems] == ["steps.0.timeout"]
    with pytest.raises(DefinitionError) as meaning:
        compile_definition(read_definition(_document(steps=[quote, meaningless])))
    assert [dotted(p.loc) for p in meaning.value.problems] == ["steps", "steps.1.when"]


def test_every_problem_compiling_finds_is_reported_with_its_place() -> None:
    quote = _document()["steps"][0]
    broken = {
        **quote,
        "when": "input.a +",
        "action": {
            "command": "Q",
            "input": {"a": "{{steps.later.result}}", "b": ["{{input.x | shout}}"]},
            "reply": "R",
        },
        "compensation": {"command": "U", "input": {"q": "{{steps.quote.result}}"}, "reply": "R"},
    }
    pivot = {**quote, "name": "pivot", "compensation": None}
    after = {**quote, "name": "later"}
    document = _document(
        input={"type": "thing"},
        steps=[broken, pivot, after],
        summary={"total": "{{steps.nothing.result}}"},
        participants={"stock": {"http": {"url": "http://127.0.0.1:1"}}},
    )
    with pytest.raises(DefinitionError) as refused:
        compile_definition(read_definition(document), CATALOGUE)
    places = [dotted(p.loc) for p in refused.value.problems]
    found = {dotted(p.loc): p.msg for p in refused.value.problems}
    assert places == [
        "input.type",
        "participants.stock",  # a participant with registered contracts,
        "participants.stock",  # and named by no step
        "steps.0.when",
        "steps.0.action.input.a",
        "steps.0.action.input.b.0",
        "steps.0.compensation.input.q",
        "steps.2.compensation",
        "summary.total",
    ], refused.value.problems
    assert "not a JSON Schema" in found["input.type"]
    assert "named by no step" in found["participants.stock"]
    assert "cannot read condition" in found["steps.0.when"]
    assert "reads step 'later', which is not an earlier step" in found["steps.0.action.input.a"]
    assert "unknown filter 'shout'" in found["steps.0.action.input.b.0"]
    assert "must end in `| optional`" in found["steps.0.compensation.input.q"]
    assert "after or beside pivot" in found["steps.2.compensation"]
    assert "reads step 'nothing'" in found["summary.total"]
    assert str(refused.value).startswith("saga quoting v1: input.type: not a JSON Schema")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"when": "input.a +"}, r"steps\.0\.when: cannot read condition"),
        (
            {"action": {"command": "Q", "input": {"a": "{{steps.later.result}}"}, "reply": "R"}},
            "reads step 'later', which is not an earlier step",
        ),
        (
            {"action": {"command": "Q", "input": {"a": "{{input.a | shout}}"}, "reply": "R"}},
            "unknown filter 'shout'",
        ),
        ({"when": "steps.quote.status == 'succeeded'"}, "not an earlier step"),
        (
            {
                "compensation": {
                    "command": "U",
                    "input": {"q": "{{steps.quote.result.id}}"},
                    "reply": "R",
                }
            },
            "must end in `| optional`: a compensation also runs after its step timed out",
        ),
    ],
)
def test_a_step_that_cannot_work_is_refused_when_loaded(
    change: dict[str, Any], message: str
) -> None:
    document = _document(steps=[{**_document()["steps"][0], **change}])
    with pytest.raises(DefinitionError, match=message):
        compile_definition(read_definition(document))


def test_whole_document_rules_are_checked_when_loaded() -> None:
    step = _document()["steps"][0]
    twice = _document(steps=[step, step])
    with pytest.raises(DefinitionError, match="unique"):
        compile_definition(read_definition(twice))
    with pytest.raises(DefinitionError, match="not a JSON Schema"):
        compile_definition(read_definition(_document(input={"type": "thing"})))
    pivot = {**step, "name": "pivot", "compensation": None}
    with pytest.raises(DefinitionError, match="must not have compensations"):
        compile_definition(read_definition(_document(steps=[pivot, step])))
    with pytest.raises(DefinitionError, match="not YAML or JSON"):
        load_text("name: [unclosed")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {
                "participant": "stock",
                "action": {"command": "ConfirmStok", "reply": "StockConfirmed"},
            },
            "stock takes no command 'ConfirmStok'",
        ),
        (
            {
                "participant": "stock",
                "action": {"command": "ConfirmStock", "reply": "StockConfirmd"},
            },
            "'StockConfirmd' is not a reply of stock",
        ),
        (
            {"action": {"command": "Q", "input": {"a": "{{input.amont}}"}, "reply": "R"}},
            "reads input field 'amont', which the input schema does not allow",
        ),
    ],
)
def test_typos_the_document_can_tell_are_refused_when_loaded(
    change: dict[str, Any], message: str
) -> None:
    closed = {"type": "object", "additionalProperties": False, "properties": {"amount": {}}}
    document = _document(input=closed, steps=[{**_document()["steps"][0], **change}])
    document["steps"][0].pop("compensation")
    with pytest.raises(DefinitionError, match=message):
        compile_definition(read_definition(document), CATALOGUE)


def test_a_duration_that_is_not_one_says_how_to_write_it() -> None:
    step = {**_document()["steps"][0], "timeout": "10 seconds"}
    with pytest.raises(DefinitionError, match=f"steps.0.timeout: .*{DURATION_FORMS}"):
        read_definition(_document(steps=[step]))


def test_durations_read_as_people_write_them() -> None:
    step = {**_document()["steps"][0], "timeout": "500ms", "retry": {"backoff": "2s"}}
    definition = compile_definition(read_definition(_document(steps=[step])))
    assert definition.steps[0].timeout.total_seconds() == 0.5
    assert definition.steps[0].retry.backoff == 2.0
    # The syntax of settings too (saga.core.durations): days, and a number as text.
    step = {**step, "timeout": "1d", "retry": {"backoff": "90", "max_backoff": "2h"}}
    definition = compile_definition(read_definition(_document(steps=[step])))
    assert definition.steps[0].timeout.total_seconds() == 86400
    assert (definition.steps[0].retry.backoff, definition.steps[0].retry.max_backoff) == (90, 7200)


def test_a_negative_duration_is_refused_in_any_form() -> None:
    for written in (-1, "-1s", "-PT1S"):
        step = {**_document()["steps"][0], "timeout": written}
        with pytest.raises(DefinitionError, match=r"steps\.0\.timeout: .*cannot be negative"):
            read_definition(_document(steps=[step]))


def _quoting() -> SagaDefinition:
    return compile_definition(read_definition(_document()))


def test_a_saga_starts_only_with_input_its_schema_takes() -> None:
    with pytest.raises(InputError, match="'customer' is a required property"):
        start_saga(
            _quoting(), saga_id="s1", customer="ann", saga_input={}, now=T0, new_id=lambda: "x"
        )


def test_an_input_checked_once_is_not_checked_again_by_its_definition_s_start() -> None:
    seen: list[Any] = []

    def counting(saga_input: Any) -> dict[str, Any]:
        seen.append(saga_input)
        return ORDER_SAGA.check_input(saga_input)

    order = replace(ORDER_SAGA, check_input=counting)
    checked = order.checked(order_input().model_dump(mode="json"))
    assert len(seen) == 1

    def start(definition: SagaDefinition, saga_input: Any) -> dict[str, Any]:
        decision = start_saga(
            definition,
            saga_id="s1",
            customer="ann",
            saga_input=saga_input,
            now=T0,
            new_id=lambda: "x",
        )
        return decision.state.input

    assert start(order, checked) == checked.value and len(seen) == 1
    # The same definition with an operator's policy keeps its check.
    assert start(order.with_policy(max_attempts=2), checked) == checked.value
    assert len(seen) == 1
    # An input another definition's check took (another saga, another version's
    # schema) is checked by this one's all the same.
    quoted = _quoting().checked({"customer": "ann@example.com"})
    with pytest.raises(InputError, match="'vendor' is a required property"):
        start(order, quoted)
    assert len(seen) == 2
    with pytest.raises(InputError):
        order.checked({})


def test_every_problem_of_an_input_is_reported_with_its_place() -> None:
    order = order_input().model_dump(mode="json")
    items = [{"product_id": "p1", "quantity": 0}] * 6 + [{"quantity": 1}]
    bad = order | {"items": items, "payment_method": "IOU"}
    del bad["vendor"]
    with pytest.raises(InputError) as refused:
        ORDER_SAGA.check_input(bad)
    assert [p.loc for p in refused.value.problems] == [
        *[("items", i, "quantity") for i in range(6)],
        ("items", 6, "product_id"),  # a missing field's place is the field's
        ("payment_method",),
        ("vendor",),
    ], refused.value.problems
    assert "input.items[6].product_id: 'product_id' is a required property" in str(refused.value)


def test_the_problems_of_an_input_never_quote_its_values() -> None:
    # An input may hold a secret (or a megabyte); the answer says where and what is wrong.
    secret = "hunter2-secret"
    order = order_input().model_dump(mode="json")
    bad = order | {
        "vendor": secret,
        "payment_method": secret,
        "description": secret * 200,
        "items": [{"product_id": f"{secret}!", "quantity": secret}, secret],
    }
    with pytest.raises(InputError) as refused:
        ORDER_SAGA.check_input(bad)
    said = {dotted(p.loc): p.msg for p in refused.value.problems}
    assert said == {
        "description": "the value is too long",
        "items.0.product_id": "the value does not match '^[A-Za-z0-9_.:-]{1,64}$'",
        "items.0.quantity": "the value is not of type 'integer'",
        "items.1": "the value is not of type 'object'",
        "payment_method": "the value is not one of ['Credit Card', 'Debit Card', "
        "'Cash on Delivery']",
        "vendor": "the value is not a 'email'",
    }


def test_a_command_that_cannot_be_built_fails_its_step_and_sends_nothing() -> None:
    step = {
        **_document()["steps"][0],
        "participant": "payment",
        "compensation": {"command": "RefundPayment", "reply": "PaymentRefunded"},
        "action": {
            "command": "ChargePayment",  # a contract: its payload is checked by it
            "input": {"customer": "{{input.customer}}", "amount": "a lot"},
            "reply": "PaymentCharged",
        },
    }
    definition = compile_definition(read_definition(_document(steps=[step])), CATALOGUE)
    decision = start_saga(
        definition,
        saga_id="s1",
        customer="ann",
        saga_input={"customer": "ann@example.com"},
        now=T0,
        new_id=lambda: "x",
    )
    assert decision.commands == ()
    assert decision.state.status == "compensated"
    assert decision.state.reason == INVALID_STEP_INPUT
    assert "ChargePayment" in (decision.records[1].event.model_dump().get("detail") or "")


def test_a_reply_without_a_contract_is_kept_as_it_came() -> None:
    ids = iter(f"id{n}" for n in range(100))
    started = start_saga(
        _quoting(),
        saga_id="s1",
        customer="ann",
        saga_input={"customer": "ann@example.com"},
        now=T0,
        new_id=lambda: next(ids),
    )
    (command,) = started.commands
    assert (command.envelope.type, command.envelope.payload) == (
        "Quote",
        {"who": "ann@example.com"},
    )
    reply = ReplyReceived("r1", command.envelope.message_id, "Quoted", {"price": 3, "any": ["x"]})
    decision = decide(
        _quoting(), started.state, reply, now=T0, new_id=lambda: next(ids), rng=lambda: 0.5
    )
    assert decision.state.status == "completed"
    assert decision.state.results["quote"] == {"price": 3, "any": ["x"]}


VALID_ORDERS: list[dict[str, Any]] = [
    {},
    {"payment_method": "Cash on Delivery", "description": "ring twice"},
    {
        "items": [
            {"product_id": "p1", "quantity": 1, "unit_price": "5.00"},
            {"product_id": "p-2", "quantity": 3},
        ]
    },
]
INVALID_ORDERS: list[dict[str, Any]] = [
    {"customer": "not an email"},
    {"items": []},
    {"items": [{"product_id": "p1", "quantity": 0}]},
    {"items": [{"product_id": "p1", "quantity": 1, "unit_price": 5.0}]},
    {"items": [{"product_id": "p 1", "quantity": 1}]},
    {"payment_method": "Bitcoin"},
    {"delivery_address": ""},
    {"extra": True},
]


@pytest.mark.parametrize("changes", VALID_ORDERS)
def test_the_order_documents_schema_takes_what_the_front_door_takes(
    changes: dict[str, Any],
) -> None:
    data = order_input().model_dump(mode="json") | changes
    OrderInput.model_validate(data)
    assert ORDER_SAGA.check_input(data) == data


@pytest.mark.parametrize("changes", INVALID_ORDERS)
def test_the_order_documents_schema_refuses_what_the_front_door_refuses(
    changes: dict[str, Any],
) -> None:
    data = order_input().model_dump(mode="json") | changes
    with pytest.raises(ValueError):
        OrderInput.model_validate(data)
    with pytest.raises(InputError):
        ORDER_SAGA.check_input(data)


def test_every_problem_of_an_input_is_named() -> None:
    with pytest.raises(InputError) as refused:
        ORDER_SAGA.check_input({"vendor": "shop@example.com", "items": []})
    problems = str(refused.value)
    for part in ("'delivery_address' is a required property", "input.items:"):
        assert part in problems


def test_the_order_summary_shows_what_is_known() -> None:
    run = Run.start()
    assert ORDER_SAGA.summarize(run.state) == {"order_id": None, "amount": None}
    run.succeed()
    assert ORDER_SAGA.summarize(run.state) == {"order_id": None, "amount": "10.00"}
