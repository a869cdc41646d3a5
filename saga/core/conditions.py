"""Step conditions: `payment_method != "Cash on Delivery"`, parsed once and never evaluated.

The text is read by Python's parser into a syntax tree, and only a small part of that
tree is accepted: paths (as in `saga.core.paths`: `input.total`, `steps.quote.result.ok`,
or a bare input field), literals (strings, numbers, `true`/`false`/`null`, lists of
them), comparisons (`==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `not in`), `and`, `or`,
`not`. Anything else — calls, arithmetic, attributes of literals — is refused when the
definition is loaded. A path that leads nowhere is `null`; ordering values of
different kinds (a number and a string) is an error for that saga, not a guess.
"""

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any, Final

from saga.core.paths import MAX_PATH, ROOTS, Path

MAX_CONDITION: Final = 500
_LITERAL_NAMES: Final[Mapping[str, Any]] = {"true": True, "false": False, "null": None}

Evaluator = Callable[[Mapping[str, Any]], Any]


class ConditionError(ValueError):
    """A condition that cannot be read (in a definition), or judged (for one saga)."""


def _ordered(op: Callable[[Any, Any], bool], symbol: str) -> Callable[[Any, Any], bool]:
    def compare(left: Any, right: Any) -> bool:
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
        if not numbers and not (isinstance(left, str) and isinstance(right, str)):
            raise ConditionError(
                f"cannot compare {type(left).__name__} {symbol} {type(right).__name__}"
            )
        return op(left, right)

    return compare


def _within(left: Any, right: Any) -> bool:
    if isinstance(right, str) and not isinstance(left, str):
        raise ConditionError(f"`in` a string needs a string, got {type(left).__name__}")
    if not isinstance(right, list | str | dict):
        raise ConditionError(
            f"`in` needs a list, a string or an object, got {type(right).__name__}"
        )
    if isinstance(right, dict) and not isinstance(left, str):
        raise ConditionError(f"`in` an object needs a field name, got {type(left).__name__}")
    return left in right


_COMPARISONS: Final[Mapping[type[ast.cmpop], Callable[[Any, Any], bool]]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: _ordered(operator.lt, "<"),
    ast.LtE: _ordered(operator.le, "<="),
    ast.Gt: _ordered(operator.gt, ">"),
    ast.GtE: _ordered(operator.ge, ">="),
    ast.In: _within,
    ast.NotIn: lambda left, right: not _within(left, right),
}


class Condition:
    """A parsed condition; call it with a saga's context (as paths see it)."""

    def __init__(self, text: str) -> None:
        if len(text) > MAX_CONDITION:
            raise ConditionError(f"a condition is at most {MAX_CONDITION} characters")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ConditionError(f"cannot read condition {text!r}: {exc.msg}") from None
        self.text = text
        self.paths: list[Path] = []
        self._evaluate = self._compile(tree.body)

    def __call__(self, context: Mapping[str, Any]) -> bool:
        """Whether the condition holds for this context; raises ConditionError if it
        cannot be judged."""
        return bool(self._evaluate(context))

    def _compile(self, node: ast.expr) -> Evaluator:
        match node:
            case ast.BoolOp(op=ast.And(), values=values):
                parts = [self._compile(v) for v in values]
                return lambda c: all(p(c) for p in parts)
            case ast.BoolOp(op=ast.Or(), values=values):
                parts = [self._compile(v) for v in values]
                return lambda c: any(p(c) for p in parts)
            case ast.UnaryOp(op=ast.Not(), operand=operand):
                inner = self._compile(operand)
                return lambda c: not inner(c)
            case ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=int() | float() as n)):
                return lambda _: -n
            case ast.Compare(left=left, ops=ops, comparators=comparators):
                return self._comparison(left, ops, comparators)
            case ast.Constant(value=str() | int() | float() | bool() | None as value):
                return lambda _: value
            case ast.List(elts=items) | ast.Tuple(elts=items):
                members = [self._compile(i) for i in items]
                return lambda c: [m(c) for m in members]
            case ast.Name(id=name) if name in _LITERAL_NAMES:
                literal = _LITERAL_NAMES[name]
                return lambda _: literal
            case ast.Name() | ast.Attribute() | ast.Subscript():
                return self._path(node)
        raise ConditionError(f"not allowed in a condition: {ast.unparse(node)!r}")

    def _comparison(
        self, left: ast.expr, ops: list[ast.cmpop], comparators: list[ast.expr]
    ) -> Evaluator:
        operands = [self._compile(left), *(self._compile(c) for c in comparators)]
        tests = [_COMPARISONS[type(op)] for op in ops]

        def compare(context: Mapping[str, Any]) -> bool:
            values = [o(context) for o in operands]
            return all(t(values[i], values[i + 1]) for i, t in enumerate(tests))

        return compare

    def _path(self, node: ast.expr) -> Evaluator:
        text = ast.unparse(node)
        if len(text) > MAX_PATH:
            raise ConditionError(f"path longer than {MAX_PATH} characters in {self.text!r}")
        root, segments = _path_parts(node)
        if root not in ROOTS:
            root, segments = "input", [root, *segments]  # a field of the input
        path = Path(text, root, tuple(segments), optional=True)  # nowhere is null
        self.paths.append(path)
        return path.get


def _path_parts(node: ast.expr) -> tuple[str, list[str | int]]:
    """A path's root and segments: names, `.field`, `["field"]` and `[index]`, from a name."""
    segments: list[str | int] = []
    while not isinstance(node, ast.Name):
        match node:
            case ast.Attribute(value=inner, attr=name):
                segments.append(name)
            case ast.Subscript(value=inner, slice=ast.Constant(value=str() | int() as key)):
                if isinstance(key, bool):
                    raise ConditionError(f"not a path: {ast.unparse(node)!r}")
                segments.append(key)
            case ast.Subscript(
                value=inner,
                slice=ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=int() as i)),
            ):
                segments.append(-i)
            case _:
                raise ConditionError(f"not a path: {ast.unparse(node)!r}")
        node = inner
    if node.id in _LITERAL_NAMES:
        raise ConditionError(f"{node.id} is a literal, it has no fields")
    return node.id, segments[::-1]
