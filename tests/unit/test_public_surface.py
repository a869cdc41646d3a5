"""What users may import from `saga` is a deliberate list."""

import saga
import saga.participant


def test_the_public_names_are_the_agreed_ones() -> None:
    assert sorted(saga.__all__) == [
        "Catalogue",
        "Contract",
        "Decision",
        "EventRecord",
        "Extension",
        "OutgoingCommand",
        "ReplyReceived",
        "SagaDefinition",
        "SagaState",
        "Settings",
        "StepDefinition",
        "StepState",
        "decide",
        "evolve",
        "fold",
        "start_saga",
    ]
    assert all(hasattr(saga, name) for name in saga.__all__)


def test_the_conformance_check_s_public_names_are_the_agreed_ones() -> None:
    from saga.participant import check

    assert sorted(check.__all__) == [
        "Action",
        "CaseResult",
        "CheckError",
        "Report",
        "SampleError",
        "StepSample",
        "assert_conforms",
        "check_participant",
        "learn_steps",
        "named_steps",
    ]
    assert all(hasattr(check, name) for name in check.__all__)


def test_the_participant_sdk_names_are_the_agreed_ones() -> None:
    assert sorted(saga.participant.__all__) == [
        "COMPENSATED_FIRST",
        "CommandHandler",
        "Compensated",
        "Context",
        "EffectScript",
        "EffectUnknown",
        "Handler",
        "LoadError",
        "PARTICIPANT_ERROR",
        "Participant",
        "ParticipantRuntime",
        "Refused",
        "Transient",
        "load_participant",
    ]
    assert all(hasattr(saga.participant, name) for name in saga.participant.__all__)


def test_the_core_does_no_io() -> None:
    """The pure core imports no network, clock-reading or randomness modules."""
    import ast
    from pathlib import Path

    core = Path(saga.__file__).parent / "core"
    forbidden = {"redis", "aio_pika", "httpx", "asyncio", "random", "uuid", "time", "socket"}
    for path in core.glob("*.py"):
        source = path.read_text()
        for clock_read in (".now(", ".utcnow(", ".today(", "time.time", "monotonic("):
            assert clock_read not in source, f"{path.name} reads the clock ({clock_read})"
        tree = ast.parse(source)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"


def test_the_verifier_s_public_names_are_the_agreed_ones() -> None:
    import saga.verify

    assert sorted(saga.verify.__all__) == [
        "Behaviour",
        "Broken",
        "Coverage",
        "DefinitionPaths",
        "EndState",
        "SagaPath",
        "Try",
        "Verdict",
    ]
    assert all(hasattr(saga.verify, name) for name in saga.verify.__all__)
