"""Prove a saga type before it runs: every path of a definition walked through the pure
core, and path tests for users (docs/verify.md)."""

from saga.verify.explore import Coverage, SagaPath
from saga.verify.script import Behaviour, Try
from saga.verify.testing import DefinitionPaths
from saga.verify.verdict import Broken, EndState, Verdict

__all__ = [
    "Behaviour",
    "Broken",
    "Coverage",
    "DefinitionPaths",
    "EndState",
    "SagaPath",
    "Try",
    "Verdict",
]
