"""The import paths and exception hierarchy that applications rely on."""

from __future__ import annotations

import importlib

import pytest

from chrononaut.exceptions import (
    ChrononautException,
    ChrononautRelationshipError,
    HiddenAttributeError,
    UntrackedAttributeError,
)

IMPORT_PATHS = {
    "chrononaut": [
        "VersionedSQLAlchemy",
        "VersionedSession",
        "Versioned",
        "RecordChanges",
        "extra_change_info",
        "rationale",
        "append_change_info",
        "ChrononautException",
    ],
    "chrononaut.exceptions": [
        "ChrononautException",
        "ChrononautRelationshipError",
        "UntrackedAttributeError",
        "HiddenAttributeError",
    ],
    "chrononaut.models": ["HistorySnapshot", "activity_factory"],
    "chrononaut.unsafe": ["suppress_versioning"],
    "chrononaut.flask_versioning": ["UTC", "serialize_datetime"],
}


@pytest.mark.parametrize(("module", "names"), IMPORT_PATHS.items())
def test_import_paths(module, names):
    imported = importlib.import_module(module)
    missing = [name for name in names if not hasattr(imported, name)]
    assert missing == []


@pytest.mark.parametrize(
    "error", [ChrononautRelationshipError, UntrackedAttributeError, HiddenAttributeError]
)
def test_attribute_errors_are_both_chrononaut_and_attribute_errors(error):
    assert issubclass(error, ChrononautException)
    assert issubclass(error, AttributeError)


def test_chrononaut_exception_is_reexported():
    import chrononaut

    assert chrononaut.ChrononautException is ChrononautException
