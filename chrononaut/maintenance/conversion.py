"""Conversion of Chrononaut 0.1 history tables into ``chrononaut_activity``.

Chrononaut 0.1 kept one ``<table>_history`` table per versioned table; each row held
the state an object had *before* a change, with the time and change info of that
change. :class:`HistoryModelDataConverter` rewrites that history as snapshots of the
state *after* each change, the format every later release reads. ``docs/migration.rst``
gives the exact mapping and the recipe.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import groupby
from typing import Any

from sqlalchemy import (
    Column,
    Insert,
    Integer,
    Row,
    TypeDecorator,
    bindparam,
    column,
    func,
    insert,
    inspect,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapper, Session

from chrononaut.capture.versioned import Versioned
from chrononaut.exceptions import ChrononautException, InvalidArgumentError
from chrononaut.history.activity import HIDDEN_COLUMNS_CHANGED_KEY, VERSION_KEY, activity_class_for
from chrononaut.history.columns import VersionedColumns
from chrononaut.history.serialization import UTC, as_utc, serialize_value
from chrononaut.maintenance.legacy_history import (
    FROM_LEGACY,
    FROM_LIVE,
    Key,
    LegacyHistoryReader,
)

logger = logging.getLogger(__name__)

#: The key of a 0.1 ``change_info`` that holds the extra change info.
_EXTRA = "extra"

_ACTIVITY_COLUMNS = ("table_name", "changed", "version", "key", "data", "user_info", "extra_info")


class HistoryModelDataConverter:
    """Moves the 0.1 history of one :class:`~chrononaut.Versioned` model into the
    activity table.

    Work is done in chunks of objects, one transaction per chunk, and only the versions
    an object does not have in the activity table yet are written, so every method is
    safe to run again after an interruption.

    :param model: the versioned model class. For joined-table inheritance pass the class
        whose objects you convert; its 0.1 history is read by joining the history tables
        of every table in its mapper chain.
    :param id_column: the name of the primary-key column, or a sequence of names for a
        composite key; it must name exactly the model's primary key (column or attribute
        names).
    :raises ChrononautException: ``model`` is not versioned, or ``id_column`` does not
        name its primary key.
    """

    def __init__(self, model: type[Any], id_column: str | Sequence[str] = "id") -> None:
        if not (isinstance(model, type) and issubclass(model, Versioned)):
            raise InvalidArgumentError(f"{model!r} is not a Versioned model; it has no history.")
        self.model = model
        mapper: Mapper[Any] = inspect(model)
        self._activity = activity_class_for(model).__table__
        key_columns = _key_columns(mapper, id_column)
        self._key_names = [mapper.get_property_by_column(key).key for key in key_columns]
        self._reader = LegacyHistoryReader(mapper, key_columns)
        # Every class of the family shares the table, so the snapshots' table name.
        self._table_name = VersionedColumns.of(mapper).table_name
        self._tracked_positions = {
            identity: self._tracked_positions_of(family_mapper)
            for identity, family_mapper in self._reader.mappers_by_identity.items()
        }
        self._after: Key | None = None
        #: The number of objects looked at, and of snapshots written, so far.
        self.objects_seen = 0
        self.snapshots_written = 0

    @property
    def legacy_table_names(self) -> list[str]:
        """The names of the 0.1 history tables read, the root table's first."""
        return self._reader.table_names

    def convert(self, session: Session, limit: int = 10000) -> int:
        """Convert the next chunk of at most ``limit`` objects and commit.

        Call it until it returns 0. Objects that already have all their versions are
        passed over, so a new converter (after a crash, say) resumes where work is left.

        :param session: the session to read and write with; it is committed.
        :param limit: the number of objects per chunk.
        :return: the number of objects that got snapshots, 0 when nothing is left.
        :raises ChrononautException: the 0.1 history tables are missing or lack columns,
            or hold a change info that is not a JSON object.
        """
        if limit < 1:
            raise InvalidArgumentError("`limit` must be a positive number of objects.")
        with _rolled_back_on_error(session):
            while keys := self._reader.next_keys(session, self._after, limit):
                converted = self._convert_chunk(session, keys)
                if converted:
                    return converted
            self._after = None
            session.commit()
        return 0

    def convert_all(self, session: Session, limit: int = 10000) -> int:
        """Convert every object, committing after each chunk of ``limit`` objects.

        :return: the number of objects that got snapshots.
        """
        total = 0
        while converted := self.convert(session, limit):
            total += converted
        return total

    def update(
        self, session: Session, update_from: datetime | str | None = None, limit: int = 10000
    ) -> int:
        """Add the versions the 0.1 tables gained since ``update_from``.

        For when the 0.1 application kept running during the first conversion: it
        revisits the objects with 0.1 rows changed at or after ``update_from`` and the
        live objects (only those created since then, when the model has
        ``created_at``), and writes the versions they are missing.

        :param update_from: a datetime (naive means UTC) or ISO 8601 text; ``None``
            revisits every object.
        :return: the number of snapshots written.
        :raises ChrononautException: as :meth:`convert`, or ``update_from`` is no time.
        """
        since = _moment(update_from)
        written_before = self.snapshots_written
        self._after = None
        with _rolled_back_on_error(session):
            while keys := self._reader.next_keys(session, self._after, limit, since):
                self._convert_chunk(session, keys)
            self._after = None
            session.commit()
        return self.snapshots_written - written_before

    def count(self, session: Session) -> int:
        """Return the number of objects that have a live row or 0.1 history."""
        return self._reader.count(session)

    # -- writing -----------------------------------------------------------------------

    def _convert_chunk(self, session: Session, keys: list[Key]) -> int:
        """Write the missing snapshots of the objects from ``keys[0]`` to ``keys[-1]``
        and commit.

        :return: the number of objects that got at least one snapshot.
        """
        # Two converters of one table would both see a version as missing.
        lock_name = "chrononaut-convert:" + self._table_name
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(literal(lock_name)))))
        rows = self._reader.object_rows(session, keys[0], keys[-1])
        width = len(self._key_names)
        now = datetime.now(UTC)
        objects = [
            list(self._snapshots(list(object_rows), now))
            for _, object_rows in groupby(rows, key=lambda row: tuple(row[:width]))
        ]
        existing = self._existing_versions(session, objects)
        inserts = []
        converted = 0
        for snapshots in objects:
            missing = [
                snapshot
                for snapshot in snapshots
                if (_key_text(snapshot["key"]), snapshot["version"]) not in existing
            ]
            converted += bool(missing)
            inserts.extend(missing)
        if inserts:
            session.execute(self._insert_snapshots(), {"snapshots": inserts})
        session.commit()
        self._after = keys[-1]
        self.objects_seen += len(keys)
        self.snapshots_written += len(inserts)
        return converted

    def _insert_snapshots(self) -> Insert:
        """One ``INSERT ... SELECT`` of the snapshots passed as one JSON array.

        PostgreSQL unpacks the array with ``jsonb_to_recordset``, several times faster
        than binding every value. Ids follow the array's order, so an object's
        snapshots get ids in version order.
        """
        activity = self._activity
        records = (
            func.jsonb_to_recordset(bindparam("snapshots", type_=_SnapshotArray()))
            .table_valued(
                *(column(name, activity.c[name].type) for name in _ACTIVITY_COLUMNS),
                column("position", Integer),
            )
            .render_derived(name="snapshot", with_types=True)
        )
        rows = select(*(records.c[name] for name in _ACTIVITY_COLUMNS)).order_by(records.c.position)
        return insert(activity).from_select(_ACTIVITY_COLUMNS, rows)

    def _existing_versions(
        self, session: Session, objects: list[list[dict[str, Any]]]
    ) -> set[tuple[str, int]]:
        """(key, version) of the snapshots these objects already have."""
        keys = [snapshots[0]["key"] for snapshots in objects if snapshots]
        if not keys:
            return set()
        activity = self._activity
        query = select(activity.c.key, activity.c.version).where(
            activity.c.table_name == self._table_name, activity.c.key.in_(keys)
        )
        return {(_key_text(key), version) for key, version in session.execute(query)}

    # -- the mapping -------------------------------------------------------------------

    def _tracked_positions_of(self, mapper: Mapper[Any]) -> list[tuple[str, int]]:
        """Each tracked attribute of ``mapper`` with the position of its value in a row."""
        return [
            (name, self._reader.value_index(mapper.get_property(name).columns[0]))
            for name in VersionedColumns.of(mapper).tracked
        ]

    def _snapshots(self, rows: list[Row[Any]], now: datetime) -> Iterator[dict[str, Any]]:
        """The snapshots of one object, oldest first (see ``docs/migration.rst``)."""
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
        width = len(self._key_names)
        key = {
            name: serialize_value(value)
            for name, value in zip(self._key_names, rows[0][:width], strict=True)
        }
        if live is not None and history and _skips_versions(history[-1].version, live.version):
            logger.warning(
                "%s %s: its 0.1 history ends at version %s, but the live row has version "
                "%s; the states in between were never recorded and stay missing.",
                self.model.__name__,
                key,
                history[-1].version,
                live.version,
            )
        version = -1
        for (row, stored), changed, change_info in zip(states, starts, change_infos, strict=True):
            version = version + 1 if stored is None else max(stored, version + 1)
            data = {name: serialize_value(row[index]) for name, index in self._tracked_of(row)}
            data[VERSION_KEY] = version
            user_info, extra_info = _split_change_info(change_info)
            yield {
                "table_name": self._table_name,
                "changed": changed,
                "version": version,
                "key": key,
                "data": data,
                "user_info": user_info,
                "extra_info": extra_info,
            }

    def _tracked_of(self, row: Row[Any]) -> list[tuple[str, int]]:
        """The tracked positions of the class ``row`` belongs to."""
        identity_column = self._reader.identity_column
        if identity_column is None:
            return self._tracked_positions[None]
        return self._tracked_positions[row[self._reader.value_index(identity_column)]]

    def _created(self, history: list[Row[Any]], live: Row[Any] | None, now: datetime) -> datetime:
        """When the first state began: ``created_at``, else the first change, else now."""
        first_change = as_utc(history[0].changed) if history else None
        created = None
        created_at = self._reader.created_at
        first_row = history[0] if history else live
        if created_at is not None and first_row is not None:
            value = first_row[self._reader.value_index(created_at)]
            created = as_utc(value) if isinstance(value, datetime) else None
        if created is None:
            return first_change or now
        return min(created, first_change) if first_change else created


class _SnapshotArray(TypeDecorator[list[dict[str, Any]]]):
    """Snapshots as one JSON array, with ``changed`` as ISO text and a ``position``."""

    impl = JSONB
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return [
            {**snapshot, "changed": snapshot["changed"].isoformat(), "position": position}
            for position, snapshot in enumerate(value)
        ]


def _key_columns(mapper: Mapper[Any], id_column: str | Sequence[str]) -> list[Column[Any]]:
    """The primary-key columns in the order ``id_column`` names them."""
    names: list[Any] = (
        list(id_column)
        if isinstance(id_column, Sequence) and not isinstance(id_column, str)
        else [id_column]
    )
    by_name: dict[str, Column[Any]] = {}
    for key_column in mapper.primary_key:
        by_name[key_column.name] = key_column  # type: ignore[assignment]
        by_name[mapper.get_property_by_column(key_column).key] = key_column  # type: ignore[assignment]
    chosen = [by_name[name] for name in names if isinstance(name, str) and name in by_name]
    # Names outside the key are dropped from ``chosen`` and repeated names shrink its
    # set: only the whole key, each column once, passes.
    if not len(chosen) == len(names) == len(set(chosen)) == len(mapper.primary_key):
        primary_key = ", ".join(key_column.name for key_column in mapper.primary_key)
        raise InvalidArgumentError(
            f"`id_column` {id_column!r} does not name the primary key of "
            f"{mapper.class_.__name__}, which is ({primary_key})."
        )
    return chosen


@contextmanager
def _rolled_back_on_error(session: Session) -> Iterator[None]:
    """Roll back the chunk under way when anything fails, so the session stays usable."""
    try:
        yield
    except BaseException:
        session.rollback()
        raise


def _moment(value: datetime | str | None) -> datetime | None:
    if not isinstance(value, str):
        return value
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgumentError(f"`update_from` {value!r} is not an ISO 8601 time.") from None


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


def _key_text(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True)
