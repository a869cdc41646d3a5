"""The shop as the engine's first user: its saga type, contracts and participants."""

from importlib.resources import files
from typing import Final

from saga.definitions import Builtins, compile_documents
from services.messages import CATALOGUE

# The shop's definition documents, by source name.
DEFINITIONS: Final = {
    "order.yaml": (files("services.definitions") / "order.yaml").read_text(encoding="utf-8")
}
BUILTINS: Final[Builtins] = compile_documents(DEFINITIONS, CATALOGUE)
ORDER_SAGA: Final = BUILTINS["order"][0]
ORDER_SPEC: Final = BUILTINS["order"][1]


def is_builtin(saga_type: str, version: int) -> bool:
    """Whether this definition version is one the shop builds in."""
    builtin = BUILTINS.get(saga_type)
    return builtin is not None and builtin[0].version == version
