"""History as data for scripts: the JSON documents and CSV rows that
``flask chrononaut history`` and ``activity`` print with ``--format json`` or ``csv``.

The JSON documents are a stable schema (``docs/viewer.rst`` describes it): new keys may
be added, none is renamed or removed. Values are the stored JSON values, with enum
members by name (:func:`~chrononaut.interfaces.display.readable_value`); hidden columns
appear by name only. CSV cells are text as the tables print it, control characters
escaped (:func:`~chrononaut.interfaces.display.as_text`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chrononaut.interfaces.display import (
    as_text,
    change_info_text,
    column_changes,
    columns_text,
    model_label,
    readable_state,
)
from chrononaut.interfaces.text import format_key, utc
from chrononaut.interfaces.timeline import (
    HIDDEN_MARKER,
    TimelineEntry,
    has_been_deleted,
    table_name_of,
)

#: The header row of ``history --format csv``: one row per column changed in a version.
HISTORY_CSV_HEADER = (
    "version",
    "kind",
    "changed",
    "user_id",
    "remote_addr",
    "change_info",
    "column",
    "before",
    "after",
)

#: The header row of ``activity --format csv``: one row per change.
ACTIVITY_CSV_HEADER = (
    "changed",
    "kind",
    "model",
    "key",
    "version",
    "columns",
    "user_id",
    "remote_addr",
    "change_info",
)


def timeline_document(
    model: type[Any], key: dict[str, Any], entries: list[TimelineEntry]
) -> dict[str, Any]:
    """Return the history of one object as a JSON-ready dict.

    :param key: the object's key as stored.
    :param entries: its versions, from :func:`~chrononaut.interfaces.timeline.object_timeline`.
    :return: ``model``, ``table``, ``key``, ``deleted`` (its history ends with a
        delete) and ``versions``, oldest first,
        each with ``version``, ``kind``, ``changed`` (ISO 8601, UTC), ``user_id``,
        ``remote_addr``, ``extra_info``, ``changes`` (``{column: {"before": ...,
        "after": ...}}``), ``hidden_changed`` (column names) and ``state`` (every
        tracked value of that version).
    """
    return {
        "model": model.__name__,
        "table": table_name_of(model),
        "key": key,
        "deleted": has_been_deleted(entries),
        "versions": [
            {
                **_who_and_when(entry),
                "changes": {
                    change.column: {"before": change.before, "after": change.after}
                    for change in column_changes(entry)
                },
                "hidden_changed": list(entry.hidden_changed),
                "state": readable_state(entry),
            }
            for entry in entries
        ],
    }


def feed_document(entries: list[TimelineEntry]) -> dict[str, Any]:
    """Return changes from :func:`~chrononaut.interfaces.timeline.activity_feed` as a
    JSON-ready dict.

    :return: ``changes``, in the order given, each with ``model`` (``None`` for a table
        no model maps), ``table``, ``key``, ``version``, ``kind``, ``changed``,
        ``user_id``, ``remote_addr``, ``extra_info``, ``columns`` (the tracked columns
        it changed) and ``hidden_changed``.
    """
    return {
        "changes": [
            {
                "model": None if entry.model is None else entry.model.__name__,
                "table": entry.snapshot.chrononaut_meta["table_name"],
                "key": dict(entry.snapshot.chrononaut_key),
                **_who_and_when(entry),
                "columns": entry.changed_columns,
                "hidden_changed": list(entry.hidden_changed),
            }
            for entry in entries
        ]
    }


def _who_and_when(entry: TimelineEntry) -> dict[str, Any]:
    return {
        "version": entry.version,
        "kind": entry.kind,
        "changed": utc(entry.changed).isoformat(),
        "user_id": entry.user_id,
        "remote_addr": entry.remote_addr,
        "extra_info": entry.extra,
    }


def history_rows(entries: list[TimelineEntry]) -> Iterator[list[str]]:
    """Yield the CSV rows of an object's versions, after :data:`HISTORY_CSV_HEADER`: a
    row per changed column, hidden ones with :data:`HIDDEN_MARKER` after; a version that
    changed no tracked column gets one row with the column cells empty."""
    for entry in entries:
        first = [
            str(entry.version),
            entry.kind,
            utc(entry.changed).isoformat(),
            as_text(entry.user_id),
            as_text(entry.remote_addr),
            change_info_text(entry),
        ]
        rows = [
            [as_text(change.column), as_text(change.before), as_text(change.after)]
            for change in column_changes(entry)
        ]
        rows += [[as_text(column), "", HIDDEN_MARKER] for column in entry.hidden_changed]
        for row in rows or [["", "", ""]]:
            yield first + row


def feed_rows(entries: list[TimelineEntry]) -> Iterator[list[str]]:
    """Yield the CSV rows of changes, after :data:`ACTIVITY_CSV_HEADER`."""
    for entry in entries:
        yield [
            utc(entry.changed).isoformat(),
            entry.kind,
            as_text(model_label(entry)),
            as_text(format_key(dict(entry.snapshot.chrononaut_key))),
            str(entry.version),
            columns_text(entry),
            as_text(entry.user_id),
            as_text(entry.remote_addr),
            change_info_text(entry),
        ]
