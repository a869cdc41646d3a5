"""Email addresses as the contracts carry them: pydantic's EmailStr, remembered.

Every process validates the same few addresses over and over (the customer of a saga
is in most of its commands); the full check, from email-validator, is the costliest
part of parsing a message. The answer for an address never changes, so the last few
thousand are remembered. Same acceptance and normal form as EmailStr.
"""

from functools import lru_cache
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema
from pydantic.networks import validate_email


@lru_cache(maxsize=4096)
def normalized_email(value: str) -> str:
    """The address in EmailStr's normal form; raises a pydantic error if it is not one."""
    return validate_email(value)[1]


Email = Annotated[
    str,
    AfterValidator(normalized_email),
    WithJsonSchema({"type": "string", "format": "email"}),
]
