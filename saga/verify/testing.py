"""Path tests for users: a definition's paths, one scripted in a line or all of them, on a
simulated clock and without servers.

    order = DefinitionPaths.from_file(Path("order.yaml"))
    path = order.walk({"take_payment": Try.LOST_REPLY, "create_order": Try.REFUSED,
                       "undo take_payment": [Try.TRANSIENT, Try.TRANSIENT]})
    assert path.end == "compensated" and "take_payment" in path.undone
"""

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saga.core.contracts import EMPTY, Catalogue
from saga.core.definition import SagaDefinition
from saga.core.document import DefinitionSpec, compile_definition
from saga.definitions import read_file, read_text
from saga.verify.explore import MAX_PATHS, SAMPLES, SagaPath, paths, walk
from saga.verify.samples import SampleInput, sample_inputs, sample_replies
from saga.verify.script import Try, script
from saga.verify.verdict import Verdict, verify
from saga.verify.world import Replies


@dataclass(frozen=True)
class DefinitionPaths:
    """A definition ready to walk: the inputs its sagas start on and its success replies
    (made up from its schema, contracts and paths unless given)."""

    definition: SagaDefinition
    inputs: tuple[SampleInput, ...]
    replies: Replies

    @classmethod
    def from_spec(
        cls,
        spec: DefinitionSpec,
        catalogue: Catalogue = EMPTY,
        *,
        inputs: Sequence[Mapping[str, Any]] = (),
        replies: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> "DefinitionPaths":
        """From a document: `inputs` to start on (default: made up), `replies` by step
        name (`undo NAME` for a compensation) for the success payloads to use instead of
        made-up ones. Raises DefinitionError, SampleError, InputError."""
        definition = compile_definition(spec, catalogue)
        made = dict(sample_replies(spec, definition))
        made.update(_keys(replies or {}))
        given = [SampleInput(f"input {n}", v) for n, v in enumerate(inputs, 1)]
        for sample in given:
            definition.check_input(sample.value)
        chosen = given or sample_inputs(spec, definition)
        return cls(definition, tuple(chosen), made)

    @classmethod
    def from_file(cls, path: Path, catalogue: Catalogue = EMPTY, **given: Any) -> "DefinitionPaths":
        """From a definition file (YAML or JSON); see from_spec."""
        return cls.from_spec(read_file(path), catalogue, **given)

    @classmethod
    def from_text(cls, text: str, catalogue: Catalogue = EMPTY, **given: Any) -> "DefinitionPaths":
        """From a definition document's text; see from_spec."""
        return cls.from_spec(read_text(text), catalogue, **given)

    def walk(
        self, answers: Mapping[str, Try | Sequence[Try]] | None = None, *, on: int = 0
    ) -> SagaPath:
        """The path on which each action named answers its tries as given (`{"pay":
        [Try.TRANSIENT, Try.REFUSED], "undo pay": Try.LOST_REPLY}`), every other one ok;
        started on input number `on`. Every invariant is checked (`violations`)."""
        sample = self.inputs[on]
        return walk(
            self.definition,
            sample.value,
            self.replies,
            script(answers or {}),
            input_name=sample.name,
        )

    def paths(self, *, max_faults: int | None = 1) -> Iterator[SagaPath]:
        """Every path with at most `max_faults` actions that do not simply answer ok (None:
        every path; mind the count), on every input, each checked."""
        for sample in self.inputs:
            yield from paths(
                self.definition,
                sample.value,
                self.replies,
                input_name=sample.name,
                max_faults=max_faults,
            )

    def verify(
        self,
        *,
        accept_failed: Collection[str] = (),
        max_paths: int = MAX_PATHS,
        samples: int = SAMPLES,
        seed: int = 0,
    ) -> Verdict:
        """What `saga definitions verify` finds."""
        return verify(
            self.definition,
            self.inputs,
            self.replies,
            accept_failed=accept_failed,
            max_paths=max_paths,
            samples=samples,
            seed=seed,
        )


def _keys(replies: Mapping[str, Mapping[str, Any]]) -> Replies:
    """Replies by `NAME` / `undo NAME` as the explorer keys them."""
    return {
        (name.removeprefix("undo "), "compensate" if name.startswith("undo ") else "execute"): dict(
            payload
        )
        for name, payload in replies.items()
    }
