"""Conversion of Chrononaut 0.1 history tables into ``chrononaut_activity``.

Chrononaut 0.1 kept one ``<table>_history`` table per versioned table; each row held
the state an object had *before* a change, with the time and change info of that
change. :class:`HistoryModelDataConverter` rewrites that history as snapshots of the
state *after* each change, the format every later release reads, chunk by chunk:
:mod:`~chrononaut.maintenance.legacy_history` reads the rows,
:mod:`~chrononaut.maintenance.legacy_snapshots` maps them, and this module writes the
snapshots an object does not have yet. ``docs/migration.rst`` gives the exact mapping
and the recipe.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import groupby
from typing import Any

from sqlalchemy import (
    Column,
    Insert,
    Integer,
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
from chrononaut.exceptions import InvalidArgumentError
from chrononaut.history.activity import activity_class_for
from chrononaut.history.serialization import UTC
from chrononaut.maintenance.legacy_history import FROM_LEGACY, Key, LegacyHistoryReader
from chrononaut.maintenance.legacy_snapshots import SnapshotMapping
from chrononaut.maintenance.legacy_tables import introduces_table

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
        self._mapping = SnapshotMapping(self._reader, self._key_names)
        self._table_name = self._mapping.table_name
        self._after: Key | None = None
        # Running totals over all the calls of this converter.
        #: The objects looked at.
        self.objects_seen = 0
        #: The objects that got at least one snapshot.
        self.objects_converted = 0
        #: The snapshots written.
        self.snapshots_written = 0
        #: The 0.1 history rows read; a row of the joined history tables of a mapper
        #: chain counts once.
        self.legacy_rows_read = 0

    @property
    def objects_already_complete(self) -> int:
        """The objects looked at that had every snapshot already."""
        return self.objects_seen - self.objects_converted

    @property
    def legacy_table_names(self) -> list[str]:
        """The names of the 0.1 history tables read, the root table's first."""
        return self._reader.table_names

    @property
    def subclasses_left(self) -> list[type[Any]]:
        """The subclasses with a table of their own. This converter leaves their
        objects to their own converters: convert each of them too."""
        return [sub.class_ for sub in self._reader.subclasses_elsewhere if introduces_table(sub)]

    def convert(self, session: Session, limit: int = 10000) -> int:
        """Convert the next chunk of objects that needs it, and commit.

        Objects are taken in primary-key order, ``limit`` at a time. A chunk whose
        objects all have every snapshot already is read and passed over, so a new
        converter (after a crash, say) resumes where work is left; the first chunk
        with work gets its missing snapshots in one transaction. Call it until it
        returns 0; the call after that starts over from the first object (and
        returns 0 again when nothing changed).

        :param session: the session to read and write with; it is committed.
        :param limit: the number of objects per chunk.
        :return: the number of objects of that chunk that got at least one snapshot
            (from 1 to ``limit``), or 0 when no object after the previous chunk needed
            one. The attributes :attr:`objects_seen`, :attr:`objects_converted`,
            :attr:`snapshots_written` and :attr:`legacy_rows_read` keep the totals.
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

        Safe to run again: objects that have every snapshot are passed over.

        :return: the number of objects that got at least one snapshot.
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
        legacy_rows = sum(row.source == FROM_LEGACY for row in rows)
        width = len(self._key_names)
        now = datetime.now(UTC)
        objects = [
            list(self._mapping.snapshots(list(object_rows), now))
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
        self.objects_converted += converted
        self.snapshots_written += len(inserts)
        self.legacy_rows_read += legacy_rows
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


def _key_text(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True)
