"""The mapping from one object's 0.1 rows to its snapshots (``docs/migration.rst``).

A 0.1 history row holds the state an object had *before* a change, with the time and
change info of that change; a snapshot holds the state *after* a change, dated by the
moment that state began. :class:`SnapshotMapping` turns the rows that
:class:`~chrononaut.maintenance.legacy_history.LegacyHistoryReader` reads for one
object into its snapshots, oldest first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Mapper

from chrononaut.exceptions import ChrononautException
from chrononaut.history.activity import HIDDEN_COLUMNS_CHANGED_KEY, VERSION_KEY
from chrononaut.history.columns import VersionedColumns
from chrononaut.history.serialization import as_utc, serialize_value
from chrononaut.maintenance.legacy_history import FROM_LEGACY, FROM_LIVE, LegacyHistoryReader

# The name the documentation gives; the converter's public import path.
logger = logging.getLogger("chrononaut.data_converters")

#: The key of a 0.1 ``change_info`` that holds the extra change info.
_EXTRA = "extra"


class SnapshotMapping:
    """Builds the snapshots of the objects one reader reads.

    :param reader: the reader of the converted class's rows.
    :param key_names: the attribute names of the key values that start every row.
    """

    def __init__(self, reader: LegacyHistoryReader, key_names: Sequence[str]) -> None:
        self._reader = reader
        self._key_names = list(key_names)
        mapper = reader.mapper
        self._model_name = mapper.class_.__name__
        # Every class of the family shares the table, so the snapshots' table name.
        self.table_name = VersionedColumns.of(mapper).table_name
        self._tracked_positions = {
            identity: self._tracked_positions_of(family_mapper)
            for identity, family_mapper in reader.mappers_by_identity.items()
        }
        # Rows whose discriminator no class of the family claims (a class renamed or
        # removed since, or NULL) are snapshotted as the model's own.
        self._own_tracked_positions = self._tracked_positions_of(mapper)

    def snapshots(self, rows: list[Row[Any]], now: datetime) -> Iterator[dict[str, Any]]:
        """The snapshots of one object, oldest first, as activity row values.

        :param rows: the object's rows, as :meth:`LegacyHistoryReader.object_rows`
            returns them.
        :param now: the time of the conversion, which dates the only state of an object
            that was never changed and has no ``created_at``.
        :raises ChrononautException: a change info is not a JSON object.
        """
        history = [row for row in rows if row.source == FROM_LEGACY]
        live = next((row for row in rows if row.source == FROM_LIVE), None)
        # A state began when the one before it was replaced; 0.1 did not record when
        # the first one began.
        starts = [self._created(history, live, now)] + [as_utc(row.changed) for row in history]
        change_infos: list[Any] = [None] + [row.change_info for row in history]
        states: list[tuple[Row[Any], int | None]] = [(row, row.version) for row in history]
        if live is not None:
            states.append((live, live.version))
        elif history:
            states.append((history[-1], None))  # deleted: the last state once more
        key = {
            name: serialize_value(value)
            for name, value in zip(self._key_names, rows[0][: len(self._key_names)], strict=True)
        }
        if live is not None and history and _skips_versions(history[-1].version, live.version):
            logger.warning(
                "%s %s: its 0.1 history ends at version %s, but the live row has version "
                "%s; the states in between were never recorded and stay missing.",
                self._model_name,
                key,
                history[-1].version,
                live.version,
            )
        version = -1
        for (row, stored), changed, change_info in zip(states, starts, change_infos, strict=True):
            version = version + 1 if stored is None else max(stored, version + 1)
            columns, positions = self._tracked_of(row)
            data = {name: serialize_value(row[index]) for name, index in positions}
            columns.escape_json_text(data)
            data[VERSION_KEY] = version
            user_info, extra_info = _split_change_info(change_info)
            yield {
                "table_name": self.table_name,
                "changed": changed,
                "version": version,
                "key": key,
                "data": data,
                "user_info": user_info,
                "extra_info": extra_info,
            }

    def _tracked_positions_of(
        self, mapper: Mapper[Any]
    ) -> tuple[VersionedColumns, list[tuple[str, int]]]:
        """The columns of ``mapper``, and each tracked attribute with the position of its
        value in a row."""
        columns = VersionedColumns.of(mapper)
        return columns, [
            (name, self._reader.attribute_index(mapper, name)) for name in columns.tracked
        ]

    def _tracked_of(self, row: Row[Any]) -> tuple[VersionedColumns, list[tuple[str, int]]]:
        """The columns and tracked positions of the class ``row`` belongs to."""
        identity_column = self._reader.identity_column
        if identity_column is None:
            return self._own_tracked_positions
        identity = row[self._reader.value_index(identity_column)]
        return self._tracked_positions.get(identity, self._own_tracked_positions)

    def _created(self, history: list[Row[Any]], live: Row[Any] | None, now: datetime) -> datetime:
        """When the first state began: ``created_at``, else the first change, else now.

        ``created_at`` is the live row's, else the first 0.1 row's that has one: 0.1
        history tables often hold ``NULL`` there. It is never later than the first
        change.
        """
        first_change = as_utc(history[0].changed) if history else None
        created = None
        if self._reader.created_at is not None:
            index = self._reader.value_index(self._reader.created_at)
            rows = ([live] if live is not None else []) + history
            created = next(
                (as_utc(row[index]) for row in rows if isinstance(row[index], datetime)), None
            )
        if created is None:
            return first_change or now
        return min(created, first_change) if first_change else created


def _skips_versions(last_recorded: int | None, live: int | None) -> bool:
    """Tell whether a live version is more than one past the last recorded one."""
    return last_recorded is not None and live is not None and live > last_recorded + 1


def _split_change_info(change_info: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a 0.1 ``change_info`` into the ``user_info`` and ``extra_info`` of 0.2+."""
    if not change_info:
        return {}, {}
    if not isinstance(change_info, dict):
        raise ChrononautException(
            f"A 0.1 change_info must be a JSON object or NULL, not {change_info!r}."
        )
    user_info = {
        name: value
        for name, value in change_info.items()
        if name not in (_EXTRA, HIDDEN_COLUMNS_CHANGED_KEY)
    }
    extra_info = dict(change_info.get(_EXTRA) or {})
    if change_info.get(HIDDEN_COLUMNS_CHANGED_KEY):
        extra_info[HIDDEN_COLUMNS_CHANGED_KEY] = list(change_info[HIDDEN_COLUMNS_CHANGED_KEY])
    return user_info, extra_info
