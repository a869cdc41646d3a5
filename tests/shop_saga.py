"""The shop's order saga compiled once for the tests that drive it without a Wiring (the
engine itself compiles an extension's definitions in `saga.bootstrap.Wiring`)."""

from typing import Final

from saga.definitions import Builtins, compile_documents
from services.messages import CATALOGUE
from services.shop import DEFINITIONS

BUILTINS: Final[Builtins] = compile_documents(DEFINITIONS, CATALOGUE)
ORDER_SAGA: Final = BUILTINS["order"][0]
ORDER_SPEC: Final = BUILTINS["order"][1]


def is_builtin(saga_type: str, version: int) -> bool:
    """Whether this definition version is one the shop builds in."""
    builtin = BUILTINS.get(saga_type)
    return builtin is not None and builtin[0].version == version
