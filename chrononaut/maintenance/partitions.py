"""Creating the partitions of the activity table ahead of time, in the partitioned
layout (:mod:`chrononaut.history.partitions`; ``docs/partitioning.rst``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from chrononaut.exceptions import ChrononautException, InvalidArgumentError
from chrononaut.history.partitions import (
    DEFAULT_SUFFIX,
    PARTITION_KEY,
    PARTITIONS_CONFIG,
    Interval,
    default_partition_ddl,
    partition_ddl,
    partition_interval,
    partition_name,
    quoted,
)
from chrononaut.history.serialization import UTC

if TYPE_CHECKING:
    from sqlalchemy import Connection, Table

#: The most intervals ``create_partitions`` creates ahead: more would be a slip.
MAX_AHEAD = 1000
#: PostgreSQL's SQLSTATE for a partition whose range overlaps another's.
_INVALID_OBJECT_DEFINITION = "42P17"

_PARTITIONS_OF = text(
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = to_regclass(:table)"
)
#: The table's default partition (0 for none), or no row when it is not partitioned.
_DEFAULT_PARTITION = text(
    "SELECT partdefid FROM pg_partitioned_table WHERE partrelid = to_regclass(:table)"
)


@dataclass
class CreatedPartitions:
    """What :func:`create_partitions` did.

    :ivar created: the names of the partitions created: the default one first, if it
        was missing, then the others, oldest first.
    :ivar moved: the rows moved out of the default partition into them.
    """

    created: list[str] = field(default_factory=list)
    moved: int = 0


def create_partitions(db: Any, ahead: int = 3) -> CreatedPartitions:
    """Create the activity table's partitions of the current interval and the
    ``ahead`` intervals after it, those that do not exist yet, and its default
    partition if it has none.

    Rows that landed in the default partition (written when their interval had no
    partition yet) and belong to a partition it creates are moved into it, in the
    same transaction: PostgreSQL would refuse the partition otherwise. Each partition
    is created in a transaction of its own, which locks the table out for as long as
    it takes, an instant unless rows are moved. Run it regularly (a daily
    ``flask chrononaut partitions``), so that writes never go to the default partition.

    .. versionadded:: 1.0

    :param db: the :class:`~chrononaut.VersionedSQLAlchemy` instance.
    :param ahead: how many intervals after the current one to create partitions for.
    :return: the partitions created and the rows moved.
    :raises InvalidArgumentError: ``ahead`` is not an integer from 0 to
        :data:`MAX_AHEAD`.
    :raises ChrononautException: ``CHRONONAUT_ACTIVITY_PARTITIONS`` is not set, or the
        table in the database is not partitioned (nothing is changed then), or a
        partition of another name covers part of a new one's range.
    """
    if type(ahead) is not int or not 0 <= ahead <= MAX_AHEAD:
        raise InvalidArgumentError(
            f"ahead must be an integer from 0 to {MAX_AHEAD}, not {ahead!r}."
        )
    table = db.activity_cls.__table__
    interval = partition_interval(table)
    engine = db.engines[table.metadata.info.get("bind_key")]
    with engine.connect() as connection:
        default = connection.scalar(_DEFAULT_PARTITION, {"table": quoted(table, table.name)})
        existing = set(connection.scalars(_PARTITIONS_OF, {"table": quoted(table, table.name)}))
    if interval is None:
        raise ChrononautException(
            f"{PARTITIONS_CONFIG} is not set: the app uses the plain {table.name} table, "
            "which has no partitions to create."
            + (
                f" The table is partitioned: set {PARTITIONS_CONFIG}."
                if default is not None
                else ""
            )
        )
    if default is None:
        raise ChrononautException(
            f"{table.name} is a plain table, not partitioned: nothing was created. Turn it "
            "into a partitioned one with the migration of docs/partitioning.rst first."
        )
    report = CreatedPartitions()
    if not default:  # a table made by other means than db.create_all()
        with engine.begin() as connection:
            connection.execute(text(default_partition_ddl(table)))
        report.created.append(f"{table.name}_{DEFAULT_SUFFIX}")
    for start in interval.starts(datetime.now(UTC), ahead + 1):
        name = partition_name(table, interval, start)
        if name not in existing:
            try:
                with engine.begin() as connection:
                    report.moved += _create_partition(connection, table, interval, start)
            except DBAPIError as error:
                if _sqlstate(error) != _INVALID_OBJECT_DEFINITION:
                    raise
                raise ChrononautException(
                    f"{name} would overlap a partition of another name: the table's "
                    f"partitions were not made by Chrononaut for {PARTITIONS_CONFIG} = "
                    f"{interval.name!r}. Nothing was changed for {name}."
                ) from None
            report.created.append(name)
    return report


def _create_partition(
    connection: Connection, table: Table, interval: Interval, start: datetime
) -> int:
    """Create the partition that starts at ``start``, moving into it the rows of the
    default partition that belong to it; return how many were moved."""
    parent = quoted(table, table.name)
    default = quoted(table, f"{table.name}_{DEFAULT_SUFFIX}")
    columns = ", ".join(f'"{column.name}"' for column in table.columns)
    bounds = {"start": start, "end": interval.following(start)}
    # Taken first, as creating the partition would take it: no write can reach the
    # default partition between the move and the creation.
    connection.execute(text(f"LOCK TABLE {parent} IN ACCESS EXCLUSIVE MODE"))
    in_range = f"{PARTITION_KEY} >= :start AND {PARTITION_KEY} < :end"
    moving = connection.execute(
        text(f"SELECT count(*) FROM {default} WHERE {in_range}"), bounds
    ).scalar_one()
    if moving:
        connection.execute(
            text(
                "CREATE TEMPORARY TABLE chrononaut_moving ON COMMIT DROP AS "
                f"WITH gone AS (DELETE FROM {default} WHERE {in_range} RETURNING {columns}) "
                "SELECT * FROM gone"
            ),
            bounds,
        )
    connection.execute(text(partition_ddl(table, interval, start)))
    if moving:
        connection.execute(
            text(f"INSERT INTO {parent} ({columns}) SELECT {columns} FROM chrononaut_moving")
        )
    return int(moving)


def _sqlstate(error: DBAPIError) -> str | None:
    """The SQLSTATE of a driver's error, under psycopg's name or psycopg2's."""
    code: str | None = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code
