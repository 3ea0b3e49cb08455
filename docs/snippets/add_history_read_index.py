"""Give an older ``chrononaut_activity`` table the index of Chrononaut 0.6.

An Alembic migration for databases whose activity table was made before Chrononaut
0.6: it builds ``ix_chrononaut_activity_table_name_key_changed``, which the history
reads use, and then drops the original ``ix_chrononaut_activity_key_table_name``, which
the new index makes redundant. Both run without locking out writes.
"""

from alembic import op

revision = "chrononaut_history_read_index"
down_revision = None  # set to your latest revision

TABLE = "chrononaut_activity"
NEW_INDEX = "ix_chrononaut_activity_table_name_key_changed"
NEW_COLUMNS = ["table_name", "key", "changed", "id"]
OLD_INDEX = "ix_chrononaut_activity_key_table_name"
OLD_COLUMNS = ["key", "table_name"]


def _swap(create: str, columns: list[str], drop: str) -> None:
    # CREATE and DROP INDEX CONCURRENTLY cannot run inside a transaction. The new index
    # is complete before the old one goes, so reads always have one of them.
    with op.get_context().autocommit_block():
        op.create_index(create, TABLE, columns, postgresql_concurrently=True, if_not_exists=True)
        op.drop_index(drop, table_name=TABLE, postgresql_concurrently=True, if_exists=True)


def upgrade() -> None:
    _swap(NEW_INDEX, NEW_COLUMNS, OLD_INDEX)


def downgrade() -> None:
    _swap(OLD_INDEX, OLD_COLUMNS, NEW_INDEX)
