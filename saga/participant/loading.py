"""Finding a participant by `module:attribute`, as `saga participant run` is given it."""

import importlib
import os
import sys
from types import ModuleType

from saga.participant.declaration import Participant
from saga.transport import error_text

EXAMPLE = "examples.shipping.participant:carrier"


class LoadError(Exception):
    """`module:attribute` names no Participant: the message says why, in one line."""


def load_participant(target: str, *, from_directory: str | None = None) -> Participant:
    """The Participant `module:attribute` names (the attribute may be dotted). The module
    is imported as Python would, with `from_directory` (the current one by default)
    searched first."""
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise LoadError(f"{target!r} is not MODULE:ATTRIBUTE (as in {EXAMPLE})")
    directory = os.path.abspath(from_directory or os.getcwd())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(f"{missing}.")):
            raise LoadError(
                f"no module {module_name!r} (looked in {directory} and the installed packages)"
            ) from None
        raise LoadError(f"importing {module_name} failed: {error_text(exc)}") from None
    except Exception as exc:
        raise LoadError(f"importing {module_name} failed: {error_text(exc)}") from None
    found: object = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise LoadError(f"module {module_name} has no attribute {attribute!r}") from None
    if not isinstance(found, Participant):
        raise LoadError(f"{target} is {_what(found)}, not a Participant (saga.participant)")
    return found


def _what(found: object) -> str:
    """What a thing is, in words: a module, the class X, a str."""
    if isinstance(found, ModuleType):
        return "a module"
    if isinstance(found, type):
        return f"the class {found.__name__}"
    return f"a {type(found).__name__}"
