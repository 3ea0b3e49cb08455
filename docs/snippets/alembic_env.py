"""``migrations/env.py`` for an application that uses Chrononaut.

Replace ``myapp`` with your package. An application with a module-level ``app``
instead of a factory imports it and defines ``create_app = lambda: app``. Under
Flask-Migrate's ``flask db`` the application's context is already pushed and is used
as it is.
"""

from alembic import context
from flask import has_app_context
from myapp import create_app, db
from sqlalchemy import inspect, text

# The Chrononaut 0.1 history tables: autogenerate leaves them alone until their
# history is converted and a last migration drops them.
LEGACY_HISTORY_TABLES = {"customer_history", "invoice_history"}

# A database made by Chrononaut 0.5 has the original index of the activity table, which
# the read index replaces. Autogenerate would swap them with a plain DROP INDEX and
# CREATE INDEX, and CREATE INDEX locks out writes to the table while it builds; so
# while the original index is there, both are left to the swap migration, which builds
# without locking.
ACTIVITY_TABLE = "chrononaut_activity"
ORIGINAL_INDEX = "ix_chrononaut_activity_key_table_name"
READ_INDEX = "ix_chrononaut_activity_table_name_key_changed"

# A database made before Chrononaut 1.0 lacks the time-travel columns and their two
# indexes: the BRIN one of each transaction's rows, and the partial one of the rows
# without an operation. For the same reason, while either index is missing, the
# columns and both indexes are left to the time-travel migration.
TIME_TRAVEL_COLUMNS = {"operation", "transaction_id"}
TIME_TRAVEL_INDEXES = {
    "ix_chrononaut_activity_transaction_id",
    "ix_chrononaut_activity_without_operation",
}


def index_names(connection, table_name):
    """The index names of the table, or None when there is no such table."""
    # In a transaction of its own: Alembic commits only a transaction it began.
    with connection.begin():
        database = inspect(connection)
        if not database.has_table(table_name):
            return None
        return {index["name"] for index in database.get_indexes(table_name)}


def partition_names(connection, table_name):
    """The names of the table's partitions, in the partitioned layout
    (docs/partitioning.rst). They are not in the metadata: autogenerate would drop
    them."""
    with connection.begin():
        return set(
            connection.scalars(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = to_regclass(:table)"
                ),
                {"table": table_name},
            )
        )


def run_migrations(connection):
    partitions = partition_names(connection, ACTIVITY_TABLE)
    indexes = index_names(connection, ACTIVITY_TABLE)
    before_swap = indexes is not None and ORIGINAL_INDEX in indexes
    before_time_travel = indexes is not None and not TIME_TRAVEL_INDEXES.issubset(indexes)

    def include_object(object_, name, type_, reflected, compare_to):
        if type_ == "table" and (name in LEGACY_HISTORY_TABLES or name in partitions):
            return False
        if type_ == "index" and before_swap and name in (ORIGINAL_INDEX, READ_INDEX):
            return False
        if before_time_travel:
            if type_ == "index" and name in TIME_TRAVEL_INDEXES:
                return False
            if type_ == "column" and object_.table.name == ACTIVITY_TABLE:
                return name not in TIME_TRAVEL_COLUMNS
        return True

    context.configure(
        connection=connection, target_metadata=db.metadata, include_object=include_object
    )
    with context.begin_transaction():
        context.run_migrations()


def run_in_app_context():
    with db.engine.connect() as connection:
        run_migrations(connection)


if has_app_context():
    run_in_app_context()
else:
    with create_app().app_context():
        run_in_app_context()
