"""Give an older ``chrononaut_activity`` table the index of Chrononaut 0.6.

An Alembic migration for databases whose activity table was made before Chrononaut
0.6: it builds ``ix_chrononaut_activity_table_name_key_changed``, which the history
reads use, and then drops the original ``ix_chrononaut_activity_key_table_name``, which
the new index makes redundant. Both run without locking out writes, and a run that
failed half way (a build cancelled or timed out) can simply be run again.
"""

from alembic import op
from sqlalchemy import text

revision = "chrononaut_history_read_index"
down_revision = None  # set to your latest revision

TABLE = "chrononaut_activity"
NEW_INDEX = "ix_chrononaut_activity_table_name_key_changed"
NEW_COLUMNS = ["table_name", "key", "changed", "id"]
OLD_INDEX = "ix_chrononaut_activity_key_table_name"
OLD_COLUMNS = ["key", "table_name"]


def _drop_if_invalid(name: str) -> None:
    # A failed CREATE INDEX CONCURRENTLY leaves an invalid index behind, which
    # IF NOT EXISTS would take for a finished one.
    valid = op.get_bind().scalar(
        text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
        {"name": name},
    )
    if valid is False:
        op.drop_index(name, table_name=TABLE, postgresql_concurrently=True)


def _swap(create: str, columns: list[str], drop: str) -> None:
    # CREATE and DROP INDEX CONCURRENTLY cannot run inside a transaction. The new index
    # is complete before the old one goes, so reads always have one of them.
    with op.get_context().autocommit_block():
        _drop_if_invalid(create)
        op.create_index(create, TABLE, columns, postgresql_concurrently=True, if_not_exists=True)
        op.drop_index(drop, table_name=TABLE, postgresql_concurrently=True, if_exists=True)


def upgrade() -> None:
    _swap(NEW_INDEX, NEW_COLUMNS, OLD_INDEX)


def downgrade() -> None:
    _swap(OLD_INDEX, OLD_COLUMNS, NEW_INDEX)
