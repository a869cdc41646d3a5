"""The definitions a namespace runs: those built in, and those applied to Redis.

A definition version never changes once applied: applying the same document again is a
no-op, applying a different one under the same version is refused, and so is applying
a version that was deleted (processes may still hold its old content). New sagas start on
the latest version of their type; a running saga keeps the version it started with to
its end, whatever is applied meanwhile. A version can be deleted only once no saga that
may still need it is left (none running, compensating or failed): the delete and every
start check each other in one Redis script each, so no saga ever starts on a version
being deleted.
"""

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol, cast

import structlog
from pydantic import BaseModel

from saga.clock import new_id
from saga.connections import AnyRedis, once_more
from saga.core.contracts import EMPTY, Catalogue
from saga.core.definition import SagaDefinition
from saga.core.document import (
    ISO_DURATIONS,
    DefinitionError,
    DefinitionSpec,
    HttpSpec,
    compile_definition,
)
from saga.keyspace import DEFAULT_BUCKETS, keyspace_of
from saga.store import NoSuchDefinition, definition_field

log = structlog.get_logger(__name__)

# KEYS: applied definitions (field -> json), the type's versions (zset), all types
#       (set), every participant any definition names (set), the HTTP participants
#       (name -> json of how to reach it), the versions deleted (set of fields).
# ARGV: field, json, version, type, number of participants, the participants, then
#       (name, json) of each HTTP participant. Returns {'created'|'unchanged'|'conflict'|
#       'deleted'}, or {'participant_conflict', name, what it is}.
# Its checks alone (_CHECK then 'created') are the dry run: the same refusals, no writes.
_CHECK: Final = """
local found = redis.call('HGET', KEYS[1], ARGV[1])
if found then
  return {found == ARGV[2] and 'unchanged' or 'conflict'}
end
if redis.call('SISMEMBER', KEYS[6], ARGV[1]) == 1 then
  return {'deleted'}
end
local named = tonumber(ARGV[5])
local http = 6 + named
local ours = {}
for i = http, #ARGV, 2 do
  ours[ARGV[i]] = true
  local known = redis.call('HGET', KEYS[5], ARGV[i])
  if known and known ~= ARGV[i + 1] then
    return {'participant_conflict', ARGV[i], known}
  end
  if not known and redis.call('SISMEMBER', KEYS[4], ARGV[i]) == 1 then
    return {'participant_conflict', ARGV[i], 'a queue participant'}
  end
end
for i = 6, http - 1 do
  if not ours[ARGV[i]] and redis.call('HEXISTS', KEYS[5], ARGV[i]) == 1 then
    return {'participant_conflict', ARGV[i], 'an HTTP participant'}
  end
end
"""
_APPLY: Final = (
    _CHECK
    + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
for i = 6, http - 1 do
  redis.call('SADD', KEYS[4], ARGV[i])
end
for i = http, #ARGV, 2 do
  redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1])
end
return {'created'}
"""
)
_DRY_RUN: Final = _CHECK + "return {'created'}\n"

# Close one bucket to a version, unless sagas of the bucket may still need it: no saga
# of the bucket starts on it from then on (the append checks). KEYS: the bucket's closed
# versions, the version's sagas in the bucket. ARGV: field. Returns how many sagas of the
# bucket need it (0: closed).
_CLOSE: Final = """
local users = redis.call('SCARD', KEYS[2])
if users == 0 then
  redis.call('SADD', KEYS[1], ARGV[1])
end
return users
"""

# A delete's lock, released by its holder only (a delete slower than the lease lost it).
# KEYS: the lock. ARGV: the holder's token.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# How long a delete holds its lock at most: closing the buckets takes milliseconds; a
# deleting process that dies holding it leaves the version to delete again after this.
DELETE_LEASE_MS: Final = 30_000

# KEYS: applied definitions, the type's versions, all types, the versions deleted, the
#       documents of deleted versions. ARGV: field, version, type.
# Returns 'deleted' or 'absent'. Run once every bucket is closed to the version.
_DELETE: Final = """
local document = redis.call('HGET', KEYS[1], ARGV[1])
if not document then
  return 'absent'
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], document)
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[1])
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[3])
end
return 'deleted'
"""

Adjust = Callable[[SagaDefinition], SagaDefinition]


class Definitions(Protocol):
    """Where the orchestrator finds the definition version a saga runs."""

    async def get(self, saga_type: str, version: int) -> SagaDefinition | None:
        """The definition, or None if there is no such version."""


class DefinitionConflict(Exception):
    """That version of that saga type exists with other content (versions never change)."""


class DefinitionInUse(Exception):
    """Sagas that may still need the version exist; it cannot be deleted."""


@dataclass(frozen=True)
class Entry:
    """One saga type as listed: its versions, the latest, and whether it is built in."""

    name: str
    versions: tuple[int, ...]
    builtin: tuple[int, ...]

    @property
    def latest(self) -> int:
        """The version new sagas start on."""
        return max(self.versions)


def _identity(definition: SagaDefinition) -> SagaDefinition:
    return definition


class DefinitionRegistry:
    """The built-in definitions and those applied to one namespace's Redis.

    Compiled definitions are kept once read: a version never changes, so no reader
    ever holds a stale one. Every definition is compiled against `catalogue`, the
    contracts of the participants the engine was given. `adjust` applies the operator's
    timeout and retry overrides to every definition it hands out.
    """

    def __init__(
        self,
        redis: AnyRedis,
        namespace: str,
        *,
        builtins: Mapping[str, tuple[SagaDefinition, DefinitionSpec]],
        catalogue: Catalogue = EMPTY,
        adjust: Adjust = _identity,
        buckets: int = DEFAULT_BUCKETS,
    ) -> None:
        self._redis = redis
        self._ns = namespace
        self._catalogue = catalogue
        self._builtins = dict(builtins)
        self._adjust = adjust
        self._compiled: dict[tuple[str, int], SagaDefinition] = {
            (d.name, d.version): adjust(d) for d, _ in builtins.values()
        }
        self._documents: dict[tuple[str, int], DefinitionSpec] = {}
        self._apply_script = redis.register_script(_APPLY)
        self._dry_run_script = redis.register_script(_DRY_RUN)
        self._delete_script = redis.register_script(_DELETE)
        self._close_script = redis.register_script(_CLOSE)
        self._release_script = redis.register_script(_RELEASE)
        # The namespace's definitions share one hash slot on a cluster (the sagas that
        # need a version are counted in each bucket of sagas).
        self._keyspace = keyspace_of(redis, namespace, buckets=buckets)
        self._definitions_key = self._keyspace.shared("definitions")
        self._types_key = self._keyspace.shared("definition-types")
        self._http_key = self._keyspace.shared("http-participants")
        self._deleted_key = self._keyspace.shared("definitions-deleted")
        # What sagas that ended on a deleted version still read (their summary, a late
        # reply to record); nothing starts on it.
        self._retired_key = self._keyspace.shared("definitions-retired")

    def _versions_key(self, saga_type: str) -> str:
        return self._keyspace.shared(f"definition:{saga_type}:versions")

    def is_builtin(self, saga_type: str, version: int) -> bool:
        """Whether this version is one of the registry's built-in ones (never stored, nor
        deleted)."""
        builtin = self._builtins.get(saga_type)
        return builtin is not None and builtin[0].version == version

    async def apply(
        self, spec: DefinitionSpec, *, dry_run: bool = False
    ) -> Literal["created", "unchanged"]:
        """Store a new version (compiled first: a broken document is refused with
        DefinitionError); raises DefinitionConflict if the version exists otherwise, was
        deleted, or reaches a participant another way than the namespace does. With
        `dry_run`, the same checks against what is registered, and nothing stored: what
        applying would do."""
        compile_definition(spec, self._catalogue)
        document = _json(spec)
        if self.is_builtin(spec.name, spec.version):
            if document == _json(self._builtins[spec.name][1]):
                return "unchanged"
            raise DefinitionConflict(f"{spec.name} version {spec.version} is built in")
        named = spec.named_participants()
        script = self._dry_run_script if dry_run else self._apply_script
        result = await script(
            keys=[
                self._definitions_key,
                self._versions_key(spec.name),
                self._types_key,
                participants_key(self._redis, self._ns),
                self._http_key,
                self._deleted_key,
            ],
            args=[
                definition_field(spec.name, spec.version),
                document,
                spec.version,
                spec.name,
                len(named),
                *named,
                *(
                    part
                    for name, participant in sorted(spec.participants.items())
                    for part in (name, _json(participant.http))
                ),
            ],
        )
        outcome, *rest = [o.decode() if isinstance(o, bytes) else o for o in result]
        if outcome == "participant_conflict":
            name, known = rest
            raise DefinitionConflict(
                f"participant {name} is defined otherwise by another definition ({known}); "
                "a participant is reached one way in a namespace"
            )
        if outcome == "deleted":
            raise DefinitionConflict(
                f"{spec.name} version {spec.version} was deleted; a version never comes back "
                "(another process may still know its old content): apply a new version"
            )
        if outcome == "conflict":
            raise DefinitionConflict(
                f"{spec.name} version {spec.version} exists with other content; "
                "apply the change as a new version"
            )
        return "created" if outcome == "created" else "unchanged"

    async def get(self, saga_type: str, version: int) -> SagaDefinition | None:
        """The definition sagas of this version run on, or None if there never was such a
        version. A deleted version is found too: sagas that ended on it still read it."""
        found = self._compiled.get((saga_type, version))
        if found is not None:
            return found
        spec = await self.document(saga_type, version) or await self._retired(saga_type, version)
        if spec is None:
            return None
        definition = self._adjust(compile_definition(spec, self._catalogue))
        self._compiled[(saga_type, version)] = definition
        return definition

    async def latest(self, saga_type: str) -> SagaDefinition:
        """The version new sagas of this type start on; raises NoSuchDefinition."""
        entry = await self.entry(saga_type)
        if entry is None:
            raise NoSuchDefinition(saga_type)
        definition = await self.get(saga_type, entry.latest)
        if definition is None:  # deleted since it was listed
            raise NoSuchDefinition(saga_type, entry.latest)
        return definition

    async def document(self, saga_type: str, version: int) -> DefinitionSpec | None:
        """A version's document, as applied (or built in)."""
        if self.is_builtin(saga_type, version):
            return self._builtins[saga_type][1]
        cached = self._documents.get((saga_type, version))
        if cached is not None:
            return cached
        raw = await once_more(
            self._redis,
            lambda: self._redis.hget(self._definitions_key, definition_field(saga_type, version)),
        )
        if raw is None:
            return None
        try:
            spec = DefinitionSpec.model_validate_json(raw)
        except ValueError as exc:  # stored by a newer engine, or by hand
            raise DefinitionError(f"stored {saga_type} version {version}: {exc}") from None
        self._documents[(saga_type, version)] = spec
        return spec

    async def _retired(self, saga_type: str, version: int) -> DefinitionSpec | None:
        raw = await once_more(
            self._redis,
            lambda: self._redis.hget(self._retired_key, definition_field(saga_type, version)),
        )
        return None if raw is None else DefinitionSpec.model_validate_json(raw)

    async def entry(self, saga_type: str) -> Entry | None:
        """One saga type's versions, or None if it has none."""
        raw = await once_more(
            self._redis, lambda: self._redis.zrange(self._versions_key(saga_type), 0, -1)
        )
        stored = [int(cast(str, v)) for v in raw]
        builtin = self._builtins.get(saga_type)
        ours = (builtin[0].version,) if builtin else ()
        versions = tuple(sorted({*stored, *ours}))
        return Entry(saga_type, versions, ours) if versions else None

    async def entries(self) -> list[Entry]:
        """Every saga type, by name."""
        names = {str(n) for n in await self._redis.smembers(self._types_key)} | set(self._builtins)
        found = [await self.entry(n) for n in sorted(names)]
        return [e for e in found if e is not None]

    async def participants(self) -> list[str]:
        """Every participant any applied or built-in definition names (their queues are
        declared by whoever applies a definition, and by every orchestrator)."""
        named = {
            str(p) for p in await self._redis.smembers(participants_key(self._redis, self._ns))
        }
        builtin = {p for _, spec in self._builtins.values() for p in spec.named_participants()}
        return sorted(named | builtin)

    async def http_participants(self) -> dict[str, HttpSpec]:
        """Every HTTP participant the namespace's definitions name, and how to reach it."""
        found: dict[str, HttpSpec] = {}
        for name, raw in (await self._redis.hgetall(self._http_key)).items():
            try:
                found[str(name)] = HttpSpec.model_validate_json(raw)
            except ValueError as exc:  # stored by hand, or by a newer engine: that one only
                log.error("HTTP participant unreadable", participant=name, error=str(exc))
        return found

    async def delete(self, saga_type: str, version: int) -> None:
        """Delete an applied version; raises DefinitionInUse while any saga that may
        still need it exists, NoSuchDefinition if there is no such applied version."""
        if self.is_builtin(saga_type, version):
            raise DefinitionConflict(f"{saga_type} version {version} is built in")
        field = definition_field(saga_type, version)
        # One delete of a version at a time: a refused one opens the buckets it closed,
        # which must not open them under another delete that is going through.
        lock, token = self._keyspace.shared(f"definition-delete:{field}"), new_id()
        if not await self._redis.set(lock, token, nx=True, px=DELETE_LEASE_MS):
            raise DefinitionInUse(f"{saga_type} version {version} is being deleted already")
        try:
            await self._delete_unlocked(saga_type, version, field)
        finally:
            await self._release_script(keys=[lock], args=[token])

    async def _delete_unlocked(self, saga_type: str, version: int, field: str) -> None:
        if not await self._redis.hexists(self._definitions_key, field):
            raise NoSuchDefinition(saga_type, version)
        # Close every bucket to the version, each only while none of its sagas needs it;
        # then no saga can start on it anywhere, and none needs it.
        buckets = self._keyspace.buckets
        users = await asyncio.gather(
            *(
                self._close_script(
                    keys=[b.closed_definitions, b.definition_sagas(saga_type, version)],
                    args=[field],
                )
                for b in buckets
            )
        )
        if any(int(u) for u in users):
            # Refused: open every bucket again (a bucket closed by an earlier attempt
            # that died half-way too), so that sagas start on it as before.
            await asyncio.gather(*(self._redis.srem(b.closed_definitions, field) for b in buckets))
            raise DefinitionInUse(
                f"{saga_type} version {version} is used by {sum(int(u) for u in users)} "
                "saga(s) not yet completed or compensated"
            )
        status = await self._delete_script(
            keys=[
                self._definitions_key,
                self._versions_key(saga_type),
                self._types_key,
                self._deleted_key,
                self._retired_key,
            ],
            args=[field, version, saga_type],
        )
        if (status.decode() if isinstance(status, bytes) else status) == "absent":
            raise NoSuchDefinition(saga_type, version)  # deleted meanwhile, by another
        self._compiled.pop((saga_type, version), None)
        self._documents.pop((saga_type, version), None)


def participants_key(redis: AnyRedis, namespace: str) -> str:
    """Every participant the namespace's applied definitions name, or that ran there on
    the SDK (never shrinks: a queue outlives the definition that named it)."""
    return keyspace_of(redis, namespace).shared("participants")


async def remember_participant(redis: AnyRedis, namespace: str, name: str) -> None:
    """Count a participant among the namespace's (its queue is the namespace's: listed,
    and removed with it)."""
    await redis.sadd(participants_key(redis, namespace), name)


def _json(model: BaseModel) -> str:
    """A document as it is stored and compared: the form never changes (durations in ISO
    8601, whatever a document shows), so the same document is the same text forever."""
    stored = model.model_dump(mode="json", context=ISO_DURATIONS)
    return json.dumps(stored, sort_keys=True, separators=(",", ":"))
