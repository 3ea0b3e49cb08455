"""Give an older ``chrononaut_activity`` table the index dated reads use.

An Alembic migration for activity tables made before Chrononaut 1.0, to run after the
one that adds the ``operation`` and ``transaction_id`` columns. It builds
``ix_chrononaut_activity_without_operation``, a partial index of the rows that do not
record their operation (those older releases wrote). ``Model.as_of()`` and
``Model.changed_between()`` ask it whether a model has such rows; without it they
assume so and apply the rule that reads those rows' operation, which makes a read of
a whole model slower. Rows written from 1.0 on never enter the index, so it costs
nothing to record a change. The build does not lock out writes, and a build that
failed half way can simply be run again.
"""

from alembic import op
from sqlalchemy import text

revision = "chrononaut_as_of_index"
down_revision = None  # set to the revision that adds the operation column

TABLE = "chrononaut_activity"
INDEX = "ix_chrononaut_activity_without_operation"


def upgrade() -> None:
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    with op.get_context().autocommit_block():
        # A cancelled concurrent build leaves an invalid index, which IF NOT EXISTS
        # would take for a finished one.
        valid = op.get_bind().scalar(
            text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
            {"name": INDEX},
        )
        if valid is False:
            op.drop_index(INDEX, table_name=TABLE, postgresql_concurrently=True)
        op.create_index(
            INDEX,
            TABLE,
            ["table_name"],
            postgresql_where=text("operation IS NULL"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name=TABLE, postgresql_concurrently=True, if_exists=True)
