"""Give an older ``chrononaut_activity`` table the time-travel columns of Chrononaut 1.0.

An Alembic migration for databases whose activity table was made before 1.0. It adds
``operation`` and ``transaction_id``, both nullable and without a default, which
PostgreSQL records in its catalog alone: the table is not rewritten, and rows already
there read as NULL. Then it builds two indexes without locking out writes:

- ``ix_chrononaut_activity_transaction_id``, a BRIN index of the rows of each
  recorded transaction;
- ``ix_chrononaut_activity_without_operation``, a partial index of the rows that do
  not record their operation (those older releases wrote). ``Model.as_of()`` and
  ``Model.changed_between()`` ask it, once per connection pool, whether a model has
  such rows, and read their operation by a rule that costs two lookups per object only
  when it does; without the index they always apply that rule. Rows written from 1.0
  on never enter it, so it costs nothing to record a change.

A run that failed half way (a lock it gave up waiting for, a build cancelled or
timed out) can simply be run again.
"""

from alembic import op
from sqlalchemy import text

revision = "chrononaut_time_travel_columns"
down_revision = None  # set to your latest revision

TABLE = "chrononaut_activity"
TRANSACTION_INDEX = "ix_chrononaut_activity_transaction_id"
WITHOUT_OPERATION_INDEX = "ix_chrononaut_activity_without_operation"

# Adding a column takes the table's exclusive lock for an instant, but waits for every
# transaction using the table to end, and every write queued behind it waits too. Give
# up after a few seconds rather than stall the application; then run it again.
LOCK_TIMEOUT = "5s"


def _drop_if_invalid(name: str) -> None:
    # A failed CREATE INDEX CONCURRENTLY leaves an invalid index behind, which
    # IF NOT EXISTS would take for a finished one.
    valid = op.get_bind().scalar(
        text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
        {"name": name},
    )
    if valid is False:
        op.drop_index(name, table_name=TABLE, postgresql_concurrently=True)


def _alter_table(changes: str) -> None:
    # The timeout holds for this statement only, not for later migrations of the run.
    op.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    op.execute(f"ALTER TABLE {TABLE} {changes}")
    op.execute("SET LOCAL lock_timeout TO DEFAULT")


def upgrade() -> None:
    _alter_table(
        "ADD COLUMN IF NOT EXISTS operation text, ADD COLUMN IF NOT EXISTS transaction_id bigint"
    )
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction; entering the block
    # commits the columns first.
    with op.get_context().autocommit_block():
        _drop_if_invalid(TRANSACTION_INDEX)
        op.create_index(
            TRANSACTION_INDEX,
            TABLE,
            ["transaction_id"],
            postgresql_using="brin",
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        _drop_if_invalid(WITHOUT_OPERATION_INDEX)
        op.create_index(
            WITHOUT_OPERATION_INDEX,
            TABLE,
            ["table_name"],
            postgresql_where=text("operation IS NULL"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    # Both indexes read the columns; dropped here first, concurrently, rather than by
    # DROP COLUMN under the table's exclusive lock.
    with op.get_context().autocommit_block():
        for name in (WITHOUT_OPERATION_INDEX, TRANSACTION_INDEX):
            op.drop_index(name, table_name=TABLE, postgresql_concurrently=True, if_exists=True)
    _alter_table("DROP COLUMN IF EXISTS operation, DROP COLUMN IF EXISTS transaction_id")
