"""Chrononaut: history, audit and time travel for Flask-SQLAlchemy models."""

from importlib.metadata import PackageNotFoundError, version

from chrononaut.change_info import RecordChanges
from chrononaut.context_managers import append_change_info, extra_change_info, rationale
from chrononaut.exceptions import ChrononautException
from chrononaut.extension import VersionedSQLAlchemy
from chrononaut.session import VersionedSession
from chrononaut.versioned import Versioned

try:
    __version__ = version("chrononaut")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "ChrononautException",
    "RecordChanges",
    "Versioned",
    "VersionedSQLAlchemy",
    "VersionedSession",
    "append_change_info",
    "extra_change_info",
    "rationale",
]
