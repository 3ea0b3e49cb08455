"""Chrononaut: history, audit and time travel for Flask-SQLAlchemy models."""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from chrononaut.capture.acting import acting_as, current_change_context, resume_change_context
from chrononaut.capture.change_info import RecordChanges
from chrononaut.capture.context import append_change_info, extra_change_info, rationale
from chrononaut.capture.session import VersionedSession
from chrononaut.capture.versioned import Versioned
from chrononaut.exceptions import ChrononautException
from chrononaut.extension import VersionedSQLAlchemy
from chrononaut.history.retention import Retention

if TYPE_CHECKING:
    from chrononaut.maintenance.erasure import Erasure, allow_erasure, erase
    from chrononaut.maintenance.partitions import CreatedPartitions, create_partitions

try:
    __version__ = version("chrononaut")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# Erasure and partition upkeep belong to the maintenance layer, which `import chrononaut`
# does not load: a web process that never erases does not pay for it.
_LOADED_ON_USE = {
    **{name: "chrononaut.maintenance.erasure" for name in ("Erasure", "allow_erasure", "erase")},
    **{
        name: "chrononaut.maintenance.partitions"
        for name in ("CreatedPartitions", "create_partitions")
    },
}


def __getattr__(name: str) -> Any:
    if name not in _LOADED_ON_USE:
        raise AttributeError(f"module 'chrononaut' has no attribute {name!r}")
    return getattr(import_module(_LOADED_ON_USE[name]), name)


__all__ = [
    "ChrononautException",
    "CreatedPartitions",
    "Erasure",
    "RecordChanges",
    "Retention",
    "Versioned",
    "VersionedSQLAlchemy",
    "VersionedSession",
    "acting_as",
    "allow_erasure",
    "append_change_info",
    "create_partitions",
    "current_change_context",
    "erase",
    "extra_change_info",
    "rationale",
    "resume_change_context",
]
