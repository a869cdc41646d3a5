"""What users may import from `saga` is a deliberate list."""

import saga


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
