"""The versions of the shapes a saga is stored in: its event records and its state snapshot.

A stored shape without a version is of version 1 (every record and snapshot written before
versions were named). This release writes version 1 and reads versions up to the ones
below; a shape of a later version was written by a later release and is refused, never
misread. A release that changes a shape raises its version here, writes it (its field is
no longer left out), and reads the older versions through an upcaster tested on the
golden histories (tests/golden, docs/verify.md).
"""

from typing import Any, Final

EVENT_SCHEMA: Final = 1
SNAPSHOT_SCHEMA: Final = 1


def known_version(data: Any, *, what: str, reads: int) -> Any:
    """`data` (a stored shape about to be read) as it is, if this release reads its
    version; raises ValueError saying so otherwise."""
    if isinstance(data, dict):
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= reads:
            raise ValueError(
                f"{what} of schema version {version!r}: this release reads versions 1 to "
                f"{reads}; a later release wrote it, so only a release that knows it may read it"
            )
    return data
