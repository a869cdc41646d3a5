"""Values typed on the command line, parsed where click parses them: a bad one is a usage
error (exit 2) in one line naming its option or argument."""

import functools
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

import typer
from pydantic import EmailStr, TypeAdapter, ValidationError

from contracts.money import money
from saga.auth.users import ROLES

MIN_PASSWORD: Final = 8


def _money(what: str) -> Callable[[str], Decimal]:
    def parse(text: str) -> Decimal:
        written = text.strip()
        try:
            # The sign is judged after the form, in the words a person needs.
            value = money(written.removeprefix("-"))
        except ValueError as exc:
            raise typer.BadParameter(f"{text!r}: {exc}") from None
        if value == 0 or written.startswith("-"):
            raise typer.BadParameter(f"{text!r}: the {what} must be positive")
        return value

    parse.__doc__ = f"A {what}: a positive amount of money as a person writes it (12.50)."
    return parse


amount = _money("amount")
price = _money("price")


@functools.cache
def _email() -> TypeAdapter[Any]:
    # Built on first use: it loads email-validator, which most commands never need.
    return TypeAdapter(EmailStr)


def email(text: str) -> str:
    """An email address, lower-cased."""
    try:
        return str(_email().validate_python(text)).lower()
    except ValidationError:
        raise typer.BadParameter(f"{text!r} is not an email address") from None


def password(text: str) -> str:
    """A password long enough (never repeated in the refusal)."""
    if len(text) < MIN_PASSWORD:
        raise typer.BadParameter(f"a password has at least {MIN_PASSWORD} characters")
    return text


def role(text: str) -> str:
    """A role a user may have."""
    if text not in ROLES:
        raise typer.BadParameter(f"{text!r} is not a role; one of {', '.join(sorted(ROLES))}")
    return text


def one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    """A parser taking one of `choices`."""

    def parse(text: str) -> str:
        if text not in choices:
            raise typer.BadParameter(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse
