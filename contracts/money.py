"""Money: a Decimal with two places that travels as a decimal string, never a float."""

import re
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, PlainSerializer

CENT = Decimal("0.01")
MAX_MONEY = Decimal("1000000000")  # a billion: far above any order, far below float trouble
# How an amount is written: digits, and a point with decimals; no exponent, no sign but a
# minus (refused below with its own reason), no NaN or Infinity.
_WRITTEN: Final = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def money(value: Any) -> Decimal:
    """Parse an amount: a decimal string (`12.50`) or an int; floats, exponents, NaN and
    Infinity are refused, and more than two places."""
    if isinstance(value, (bool, float)):
        raise ValueError('money must be a decimal string such as "12.50", not a float')
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int | str):
        text = str(value).strip()
        if not _WRITTEN.fullmatch(text):
            raise ValueError(
                "not a decimal amount (write digits, with at most two decimal places: 12.50)"
            )
        amount = Decimal(text)
    else:
        raise ValueError(f"money must be a decimal string, got {type(value).__name__}")
    if not amount.is_finite():
        raise ValueError("money must be a finite amount")
    # Bounds first: quantizing 1e400 to cents is beyond Decimal's precision.
    if amount < 0:
        raise ValueError("money cannot be negative")
    if amount > MAX_MONEY:
        raise ValueError(f"money cannot exceed {MAX_MONEY}")
    if amount != amount.quantize(CENT, rounding=ROUND_HALF_EVEN):
        raise ValueError("money has at most two decimal places")
    return amount.quantize(CENT)


Money = Annotated[
    Decimal,
    BeforeValidator(money),
    PlainSerializer(lambda d: f"{d:.2f}", return_type=str),
]
