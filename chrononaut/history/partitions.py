"""The partitioned layout of the activity table: one partition per interval of
``changed`` (a day, a week, a month or a year, in UTC), and a default partition.

It is opt-in: the setting ``CHRONONAUT_ACTIVITY_PARTITIONS`` names the interval, and
:func:`partition_activity_table` makes ``db.create_all()`` create the table
partitioned, with the partitions of the current and the next interval and the default
one. ``docs/partitioning.rst`` tells the whole story.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text

from chrononaut._compat import partition_by_range
from chrononaut.exceptions import ChrononautException
from chrononaut.history.serialization import UTC

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy import Connection, Table

#: The setting that turns the partitioned layout on, with the interval's name.
PARTITIONS_CONFIG = "CHRONONAUT_ACTIVITY_PARTITIONS"
#: The column the table is partitioned by.
PARTITION_KEY = "changed"
#: ``Table.info`` key that holds the interval of a partitioned activity table.
_INTERVAL_KEY = "chrononaut.partitions"
#: The suffix of the default partition's name.
DEFAULT_SUFFIX = "default"


@dataclass(frozen=True)
class Interval:
    """The span of ``changed`` each partition holds.

    :ivar name: the setting's value: ``daily``, ``weekly``, ``monthly`` or ``yearly``.
    """

    name: str

    def start(self, moment: datetime) -> datetime:
        """The start of the interval that holds ``moment`` (an aware datetime), in UTC."""
        moment = moment.astimezone(UTC)
        day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.name == "daily":
            return day
        if self.name == "weekly":  # ISO weeks, from Monday
            return day - timedelta(days=day.weekday())
        if self.name == "monthly":
            return day.replace(day=1)
        return day.replace(month=1, day=1)

    def following(self, start: datetime) -> datetime:
        """The start of the interval after the one that starts at ``start``."""
        if self.name == "daily":
            return start + timedelta(days=1)
        if self.name == "weekly":
            return start + timedelta(days=7)
        if self.name == "monthly":
            # The 28th plus four days is always in the next month.
            return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
        return start.replace(year=start.year + 1)

    def starts(self, moment: datetime, count: int) -> Iterator[datetime]:
        """The starts of ``count`` intervals, from the one that holds ``moment`` on."""
        start = self.start(moment)
        for _ in range(count):
            yield start
            start = self.following(start)

    def suffix(self, start: datetime) -> str:
        """The name of the partition that starts at ``start``, after the table's name."""
        if self.name == "weekly":
            year, week, _ = start.isocalendar()
            return f"p{year}w{week:02}"
        formats = {"daily": "p%Y_%m_%d", "monthly": "p%Y_%m", "yearly": "p%Y"}
        return start.strftime(formats[self.name])


#: The intervals the setting accepts.
INTERVALS = {name: Interval(name) for name in ("daily", "weekly", "monthly", "yearly")}


def interval_from_setting(value: Any) -> Interval | None:
    """Read the setting: ``None`` (or unset) for the plain table, else an interval.

    :raises ChrononautException: the value is not one of :data:`INTERVALS`.
    """
    if value is None:
        return None
    if not isinstance(value, str) or value not in INTERVALS:
        raise ChrononautException(
            f"{PARTITIONS_CONFIG} must be one of {', '.join(map(repr, INTERVALS))}, or None "
            f"for the plain table, not {value!r}."
        )
    return INTERVALS[value]


def partition_activity_table(table: Table, interval: Interval) -> None:
    """Make ``db.create_all()`` create ``table`` partitioned by ``interval``.

    The table is partitioned by range of ``changed``, so its primary key becomes
    ``(id, changed)`` (PostgreSQL requires the partition key in it); ``id`` keeps its
    sequence and stays the ORM identity. Right after the table, its default partition
    and those of the current and the next interval are created. Doing it again with
    the same interval does nothing.

    :raises ChrononautException: the table is already partitioned by another interval
        (two apps with different settings share one extension).
    """
    current = partition_interval(table)
    if current == interval:
        return
    if current is not None:
        raise ChrononautException(
            f"{table.name} is already partitioned {current.name} by another app of this "
            f"extension: {PARTITIONS_CONFIG} must be the same in every app."
        )
    partition_by_range(table, PARTITION_KEY)
    table.info[_INTERVAL_KEY] = interval

    @event.listens_for(table, "after_create")
    def create_first_partitions(target: Table, connection: Connection, **_: Any) -> None:
        connection.execute(text(default_partition_ddl(target)))
        for start in interval.starts(datetime.now(UTC), 2):
            connection.execute(text(partition_ddl(target, interval, start)))


def partition_interval(table: Table) -> Interval | None:
    """The interval ``table`` is partitioned by in this process, or ``None``."""
    interval: Interval | None = table.info.get(_INTERVAL_KEY)
    return interval


def quoted(table: Table, name: str) -> str:
    """``name`` quoted, in the schema of ``table``."""
    schema = table.schema
    return f'"{schema}"."{name}"' if schema else f'"{name}"'


def partition_name(table: Table, interval: Interval, start: datetime) -> str:
    """The name of ``table``'s partition that starts at ``start``."""
    return f"{table.name}_{interval.suffix(start)}"


def partition_ddl(table: Table, interval: Interval, start: datetime) -> str:
    """``CREATE TABLE`` of ``table``'s partition that starts at ``start``."""
    name = partition_name(table, interval, start)
    end = interval.following(start)
    return (
        f"CREATE TABLE {quoted(table, name)} PARTITION OF {quoted(table, table.name)} "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    )


def default_partition_ddl(table: Table) -> str:
    """``CREATE TABLE`` of ``table``'s default partition, which takes the rows no other
    partition does, so that a write never fails for want of one."""
    name = f"{table.name}_{DEFAULT_SUFFIX}"
    return f"CREATE TABLE {quoted(table, name)} PARTITION OF {quoted(table, table.name)} DEFAULT"
