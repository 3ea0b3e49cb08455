"""Chrononaut: history, audit and time travel for Flask-SQLAlchemy models."""

from importlib.metadata import PackageNotFoundError, version

from chrononaut.capture.acting import acting_as, current_change_context, resume_change_context
from chrononaut.capture.change_info import RecordChanges
from chrononaut.capture.context import append_change_info, extra_change_info, rationale
from chrononaut.capture.session import VersionedSession
from chrononaut.capture.versioned import Versioned
from chrononaut.exceptions import ChrononautException
from chrononaut.extension import VersionedSQLAlchemy
from chrononaut.maintenance.erasure import Erasure, allow_erasure, erase
from chrononaut.maintenance.retention import Retention

try:
    __version__ = version("chrononaut")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "ChrononautException",
    "Erasure",
    "RecordChanges",
    "Retention",
    "Versioned",
    "VersionedSQLAlchemy",
    "VersionedSession",
    "acting_as",
    "allow_erasure",
    "append_change_info",
    "current_change_context",
    "erase",
    "extra_change_info",
    "rationale",
    "resume_change_context",
]
