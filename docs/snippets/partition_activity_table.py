"""Turn a plain ``chrononaut_activity`` table into one partitioned by month of
``changed``, the layout ``CHRONONAUT_ACTIVITY_PARTITIONS = "monthly"`` creates.

An Alembic migration, for a table that already has the time-travel columns (run the
migration of ``docs/migration.rst`` first). In one transaction, which keeps every
write to the table waiting until it commits:

1. the plain table is renamed out of the way, and a partitioned table made like it,
   with the same columns, defaults and ``id`` sequence;
2. a partition is created for each month from the oldest row's to :data:`AHEAD`
   months after the current one, and the default partition;
3. every row is copied into its month's partition, then the primary key
   ``(id, changed)`` and the three indexes are built on the partitioned table;
4. the sequence is handed over to the new table and the plain one dropped.

If anything fails (a view that reads the table stands in the way of the drop, for
one), the transaction rolls back and the plain table is as it was. The downgrade
copies the rows back into a plain table the same way.
"""

from datetime import datetime, timezone

from alembic import op
from sqlalchemy import text

revision = "chrononaut_partition_activity"
down_revision = None  # set to your latest revision

TABLE = "chrononaut_activity"
OLD = "chrononaut_activity_old"
#: The months after the current one that get a partition now; afterwards
#: `flask chrononaut partitions` (run daily) creates them ahead of time.
AHEAD = 3
INDEXES = {
    "ix_chrononaut_activity_table_name_key_changed": "(table_name, key, changed, id)",
    "ix_chrononaut_activity_transaction_id": "USING brin (transaction_id)",
    "ix_chrononaut_activity_without_operation": "(table_name) WHERE operation IS NULL",
}


def _month_of(moment: datetime) -> datetime:
    """The first moment of ``moment``'s month, in UTC."""
    utc = moment.astimezone(timezone.utc)
    return utc.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def _set_aside(table: str) -> str:
    """Rename ``table`` to :data:`OLD`, drop its indexes and primary key (their names
    are for the new table) and return the name of its ``id`` sequence."""
    op.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    sequence = op.get_bind().scalar(text(f"SELECT pg_get_serial_sequence('{table}', 'id')"))
    op.execute(f"ALTER TABLE {table} RENAME TO {OLD}")
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.execute(f"ALTER TABLE {OLD} DROP CONSTRAINT {table}_pkey")
    return sequence


def _take_over(sequence: str, primary_key: str) -> None:
    """Give the new table, which holds the rows, its key, indexes and sequence."""
    op.execute(f"ALTER TABLE {TABLE} ADD PRIMARY KEY ({primary_key})")
    for name, definition in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON {TABLE} {definition}")
    # The sequence belongs to the old table's `id`, and would be dropped with it.
    op.execute(f"ALTER SEQUENCE {sequence} OWNED BY {TABLE}.id")
    op.execute(f"DROP TABLE {OLD}")
    op.execute(f"ANALYZE {TABLE}")


def upgrade() -> None:
    sequence = _set_aside(TABLE)
    op.execute(f"CREATE TABLE {TABLE} (LIKE {OLD} INCLUDING DEFAULTS) PARTITION BY RANGE (changed)")
    now = datetime.now(timezone.utc)
    month = _month_of(op.get_bind().scalar(text(f"SELECT min(changed) FROM {OLD}")) or now)
    last = _month_of(now)
    for _ in range(AHEAD):
        last = _next_month(last)
    while month <= last:
        following = _next_month(month)
        op.execute(
            f"CREATE TABLE {TABLE}_p{month:%Y_%m} PARTITION OF {TABLE} "
            f"FOR VALUES FROM ('{month.isoformat()}') TO ('{following.isoformat()}')"
        )
        month = following
    op.execute(f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT")
    op.execute(f"INSERT INTO {TABLE} SELECT * FROM {OLD}")
    _take_over(sequence, "id, changed")


def downgrade() -> None:
    sequence = _set_aside(TABLE)
    op.execute(f"CREATE TABLE {TABLE} (LIKE {OLD} INCLUDING DEFAULTS)")
    op.execute(f"INSERT INTO {TABLE} SELECT * FROM {OLD}")
    _take_over(sequence, "id")
