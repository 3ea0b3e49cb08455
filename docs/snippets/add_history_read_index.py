"""Add the index Chrononaut's history reads use.

An Alembic migration for databases whose ``chrononaut_activity`` table was made before
Chrononaut 0.6. The index is built without locking out writes; the original
``ix_chrononaut_activity_key_table_name`` stays.
"""

from alembic import op

revision = "add_chrononaut_read_index"
down_revision = None  # set to your latest revision

INDEX = "ix_chrononaut_activity_table_name_key_changed"


def upgrade() -> None:
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    with op.get_context().autocommit_block():
        op.create_index(
            INDEX,
            "chrononaut_activity",
            ["table_name", "key", "changed", "id"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            INDEX,
            table_name="chrononaut_activity",
            postgresql_concurrently=True,
            if_exists=True,
        )
