"""Definition documents on disk: the ones that ship with the engine, and any file."""

from importlib.resources import files
from pathlib import Path
from typing import Any, Final

import yaml

from saga.core.definition import SagaDefinition
from saga.core.document import DefinitionError, DefinitionSpec, compile_definition, read_definition


def parse_document(text: str, *, source: str) -> Any:
    """A YAML or JSON document (JSON is YAML) as data; raises DefinitionError."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DefinitionError(f"{source}: not YAML or JSON: {problem}{where}") from None


def read_text(text: str, *, source: str = "the document") -> DefinitionSpec:
    """Read and validate a definition document (not yet compiled)."""
    document = parse_document(text, source=source)
    try:
        return read_definition(document)
    except DefinitionError as exc:
        raise exc.within(source) from None


def read_file(path: Path) -> DefinitionSpec:
    """Read and validate a definition file (YAML or JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DefinitionError(f"cannot read {path}: {exc.strerror}") from None
    return read_text(text, source=str(path))


def load_text(text: str, *, source: str = "the document") -> SagaDefinition:
    """Read, validate and compile a definition document."""
    spec = read_text(text, source=source)
    try:
        return compile_definition(spec)
    except DefinitionError as exc:
        raise exc.within(source) from None


def _builtin(name: str) -> tuple[SagaDefinition, DefinitionSpec]:
    text = (files(__package__) / f"{name}.yaml").read_text(encoding="utf-8")
    spec = read_text(text, source=f"{name}.yaml")
    return compile_definition(spec), spec


# The definitions that ship with the engine: name -> (definition, its document).
BUILTINS: Final = {"order": _builtin("order")}
ORDER_SAGA: Final = BUILTINS["order"][0]


def is_builtin(saga_type: str, version: int) -> bool:
    """Whether this definition version ships with the engine (no other is applied)."""
    builtin = BUILTINS.get(saga_type)
    return builtin is not None and builtin[0].version == version
