"""Extensions: what code outside the engine registers with it, and how the engine finds it.

An extension is an `Extension` value named by an entry point of the group
`saga.extensions` (in its package's pyproject.toml). It brings definition documents
built in, its participants' contracts, the participants it ships, routes for the front
door, commands for the command line, the keys that show its data in a namespace, and
what `saga demo` seeds and places. The engine runs with none; `SAGA_EXTENSIONS` names
the ones a process loads (default: every installed one).
"""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Final, Protocol

from saga.connections import AnyRedis
from saga.core.contracts import EMPTY, Catalogue
from saga.settings import Settings, SettingsError
from saga.transport import Transport

if TYPE_CHECKING:  # loaded only by the processes that use them
    import typer
    from fastapi import APIRouter

GROUP: Final = "saga.extensions"


class ParticipantLike(Protocol):
    """A participant the engine runs: given a connected transport, it starts consuming
    its queue `<ns>.<name>` (and replies on the same transport)."""

    @property
    def name(self) -> str:
        """The participant's name (its queue's)."""
        ...

    async def start(self, transport: Transport) -> None:
        """Start consuming; returns once the consumer runs."""
        ...


# Builds a participant on the process's Redis client and settings.
ParticipantFactory = Callable[[AnyRedis, Settings], ParticipantLike]


@dataclass(frozen=True)
class DemoRequest:
    """One request `saga demo` makes to the front door as `customer`, and the status the
    saga it starts must end in."""

    name: str
    customer: str
    path: str
    body: Mapping[str, Any]
    expect: str = "completed"


@dataclass(frozen=True)
class Demo:
    """What `saga demo` does for an extension: seed its data, then make its requests (the
    demo adds each request's customer as a user first)."""

    seed: Callable[[AnyRedis, Settings], Awaitable[None]]
    requests: Sequence[DemoRequest]


def _none() -> Sequence[Any]:
    return ()


def _no_commands() -> Mapping[str, "typer.Typer"]:
    return {}


@dataclass(frozen=True)
class Extension:
    """What one extension registers with the engine. Routes and commands are made when
    asked for, so that a process that serves neither does not load FastAPI or typer."""

    name: str
    # Definition documents built in, by source name (`order.yaml`) -> YAML or JSON text.
    definitions: Mapping[str, str] = field(default_factory=dict)
    # Its participants' command and reply models.
    catalogue: Catalogue = EMPTY
    # The participants it ships, by name.
    participants: Mapping[str, ParticipantFactory] = field(default_factory=dict)
    # Routers the front door serves beside its own.
    routers: Callable[[], Sequence["APIRouter"]] = _none
    # Command groups the command line adds, by name (`saga <name> ...`).
    commands: Callable[[], Mapping[str, "typer.Typer"]] = _no_commands
    # The Redis keys of a namespace (given a client and the namespace) whose existence
    # shows the extension's data is there.
    presence: Callable[[AnyRedis, str], Sequence[str]] = lambda _redis, _namespace: ()
    demo: Demo | None = None


@dataclass(frozen=True)
class Extensions:
    """The extensions a process loaded, taken together."""

    loaded: tuple[Extension, ...] = ()

    @property
    def names(self) -> list[str]:
        """The loaded extensions' names."""
        return [e.name for e in self.loaded]

    @property
    def catalogue(self) -> Catalogue:
        """Every loaded participant's contract."""
        merged = EMPTY
        for extension in self.loaded:
            merged = merged.merged(extension.catalogue)
        return merged

    @property
    def definitions(self) -> dict[str, str]:
        """Every built-in document, by `<extension>/<source>`."""
        return {f"{e.name}/{s}": text for e in self.loaded for s, text in e.definitions.items()}

    @property
    def participants(self) -> dict[str, ParticipantFactory]:
        """Every participant shipped, by name; raises ValueError for one shipped twice."""
        found: dict[str, ParticipantFactory] = {}
        for extension in self.loaded:
            for name, factory in extension.participants.items():
                if name in found:
                    raise ValueError(f"participant {name!r} is shipped by two extensions")
                found[name] = factory
        return found

    def routers(self) -> list["APIRouter"]:
        """Every router the extensions add to the front door."""
        return [r for e in self.loaded for r in e.routers()]

    def commands(self) -> dict[str, "typer.Typer"]:
        """Every command group the extensions add to the command line."""
        return {name: app for e in self.loaded for name, app in e.commands().items()}

    def presence_keys(self, redis: AnyRedis, namespace: str) -> list[str]:
        """The keys that show any loaded extension's data in the namespace."""
        return [k for e in self.loaded for k in e.presence(redis, namespace)]

    @property
    def demos(self) -> list[Demo]:
        """What the loaded extensions give `saga demo`."""
        return [e.demo for e in self.loaded if e.demo is not None]


def installed() -> dict[str, Any]:
    """The installed extensions' entry points, by name (not yet loaded)."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


@cache
def load(names: tuple[str, ...] | None = None) -> Extensions:
    """Load the named extensions (None: every installed one), in that order; raises
    SettingsError for a name that is not installed, or an entry point that is not an
    Extension."""
    available = installed()
    wanted = sorted(available) if names is None else list(names)
    missing = [n for n in wanted if n not in available]
    if missing:
        shown = ", ".join(sorted(available)) or "none"
        raise SettingsError(
            [
                f"SAGA_EXTENSIONS={','.join(wanted)!r}: not installed: {', '.join(missing)} "
                f"(installed: {shown})"
            ]
        )
    loaded = []
    for name in wanted:
        extension = available[name].load()
        if not isinstance(extension, Extension):
            raise SettingsError(
                [f"extension {name}: {available[name].value} is not a saga.extensions.Extension"]
            )
        loaded.append(extension)
    return Extensions(tuple(loaded))


def named(setting: str | None) -> Extensions:
    """The extensions a SAGA_EXTENSIONS value names (unset: every installed one), loaded."""
    if setting is None:
        return load(None)
    return load(tuple(n for n in setting.split(",") if n))


def selected(settings: Settings) -> Extensions:
    """The extensions the settings name (SAGA_EXTENSIONS), loaded."""
    return named(settings.extensions)
