"""Definition documents on disk: the ones that ship with the engine, and any file."""

from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from saga.core.definition import SagaDefinition
from saga.core.document import DefinitionError, compile_definition, read_definition


def parse_document(text: str, *, source: str) -> Any:
    """A YAML or JSON document (JSON is YAML) as data; raises DefinitionError."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{source}: not YAML or JSON: {exc}") from None


def load_text(text: str, *, source: str = "the document") -> SagaDefinition:
    """Read, validate and compile a definition document."""
    try:
        return compile_definition(read_definition(parse_document(text, source=source)))
    except DefinitionError as exc:
        raise DefinitionError(f"{source}: {exc}") from None


def load_file(path: Path) -> SagaDefinition:
    """Read, validate and compile a definition file (YAML or JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DefinitionError(f"cannot read {path}: {exc.strerror}") from None
    return load_text(text, source=str(path))


def builtin(name: str) -> SagaDefinition:
    """A definition that ships with the engine (`saga/definitions/NAME.yaml`)."""
    return load_text(
        (files(__package__) / f"{name}.yaml").read_text(encoding="utf-8"), source=f"{name}.yaml"
    )


ORDER_SAGA = builtin("order")
