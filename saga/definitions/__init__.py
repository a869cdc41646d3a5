"""Definition documents as text or files: read, validated, compiled."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from saga.core.contracts import EMPTY, Catalogue
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


def load_text(
    text: str, *, source: str = "the document", catalogue: Catalogue = EMPTY
) -> SagaDefinition:
    """Read, validate and compile a definition document against the participants'
    contracts in `catalogue`."""
    spec = read_text(text, source=source)
    try:
        return compile_definition(spec, catalogue)
    except DefinitionError as exc:
        raise exc.within(source) from None


Builtins = Mapping[str, tuple[SagaDefinition, DefinitionSpec]]


def compile_documents(documents: Mapping[str, str], catalogue: Catalogue) -> Builtins:
    """Documents by source name (`order.yaml`) compiled: saga type -> (definition, its
    document); raises DefinitionError, or ValueError for two documents of one type."""
    compiled: dict[str, tuple[SagaDefinition, DefinitionSpec]] = {}
    for source, text in documents.items():
        spec = read_text(text, source=source)
        if spec.name in compiled:
            raise ValueError(f"{source}: saga type {spec.name} is built in twice")
        try:
            compiled[spec.name] = (compile_definition(spec, catalogue), spec)
        except DefinitionError as exc:
            raise exc.within(source) from None
    return compiled
