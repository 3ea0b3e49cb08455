"""A read-only session that sees the versioned models as they were at a past moment.

The session has a database connection and transaction of its own. In that transaction
a temporary view named like each versioned table (:mod:`~chrononaut.history.past_views`)
stands in for the table: PostgreSQL looks unqualified relation names up in the
session's temporary schema first, so every statement the ORM writes for the table
(queries, ``get``, lazy and eager relationship loads) reads the view without being
rewritten. Tables that the ORM names with a schema are read from the temporary schema
as well (through ``schema_translate_map``). The transaction is made read-only and
rolled back when the session closes, which drops the views; the connection, and the
application's own sessions, never see them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, event, inspect, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import ORMExecuteState, Session

from chrononaut.exceptions import ChrononautException, InvalidArgumentError
from chrononaut.history.activity import Activity, require_time_travel_columns
from chrononaut.history.past_views import MOMENT_SETTING, PastTable, past_tables, view_sql
from chrononaut.history.serialization import serialize_datetime

#: REPEATABLE READ gives every read of the session one snapshot, so that commits made
#: while it is open cannot mix two moments. Set on the connection, it also overrides an
#: engine in autocommit mode, in which the views would outlive every statement.
_ISOLATION = "REPEATABLE READ"
#: Run with the views, in one round trip.
_SETUP = (
    # The temporary schema is put first on the search path in case the application's
    # path names it later; it is only ever searched for relations and types, never
    # for functions.
    "SELECT set_config('search_path', CASE current_setting('search_path') WHEN '' "
    "THEN 'pg_temp' ELSE 'pg_temp, ' || current_setting('search_path') END, true)",
    # The views' plans are estimated dear on long histories; compiling them with JIT
    # costs more than the queries themselves.
    "SET LOCAL jit = off",
)
#: The last statement: from then on, nothing but temporary tables can be written.
_READ_ONLY = "SET TRANSACTION READ ONLY"
#: Whether a view of the session outlived its transaction (a COMMIT sent as SQL text).
_LEFT_OVER = text(
    "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema() "
    "AND relkind = 'v' AND relname = ANY(CAST(:names AS text[]))"
)


class PastSession(Session):
    """A session whose reads of :class:`~chrononaut.Versioned` models return them as
    they were at one moment; see :doc:`/past-session`.

    Made by :meth:`chrononaut.VersionedSQLAlchemy.as_of`. Use it as a context manager,
    or call :meth:`close`, which ends its transaction and drops its views.

    .. versionadded:: 1.0
    """

    def __init__(
        self, connection: Connection, at: datetime, metadata: MetaData, views: list[str]
    ) -> None:
        # The views live in the connection's transaction; the session works in a
        # savepoint of it, so that its commit and rollback never end that transaction.
        super().__init__(bind=connection, join_transaction_mode="create_savepoint")
        self._past_connection: Connection | None = connection
        self._past_metadata = metadata
        self._past_views = views
        #: The moment the session shows.
        self.at = at

    def get_bind(self, mapper: Any = None, clause: Any = None, **kwargs: Any) -> Any:
        """Return the session's connection, refusing models of another database.

        :raises ChrononautException: the model is on another ``__bind_key__`` than the
            activity table; its history is not in the database its rows are in.
        """
        if mapper is not None:
            table = inspect(mapper).local_table
            if isinstance(table, Table) and table.metadata is not self._past_metadata:
                raise ChrononautException(
                    f"{inspect(mapper).class_.__name__} is on another database (bind key) "
                    "than chrononaut_activity; a past session reads only the models of "
                    "the activity table's database."
                )
        return super().get_bind(mapper=mapper, clause=clause, **kwargs)

    def flush(self, objects: Any = None) -> None:
        """Refuse to write: a past session is read-only.

        :raises ChrononautException: an object was added, changed or deleted.
        """
        if self.new or self.dirty or self.deleted:
            self._refuse_write()
        super().flush(objects)

    def bulk_save_objects(self, *args: Any, **kwargs: Any) -> None:
        """Refuse to write: a past session is read-only.

        :raises ChrononautException: always.
        """
        self._refuse_write()

    def bulk_insert_mappings(self, *args: Any, **kwargs: Any) -> None:
        """Refuse to write: a past session is read-only.

        :raises ChrononautException: always.
        """
        self._refuse_write()

    def bulk_update_mappings(self, *args: Any, **kwargs: Any) -> None:
        """Refuse to write: a past session is read-only.

        :raises ChrononautException: always.
        """
        self._refuse_write()

    def _refuse_write(self) -> None:
        raise ChrononautException(
            f"This session shows the data as of {self.at.isoformat()} and is read-only: "
            "make changes in db.session. Nothing was written."
        )

    def close(self) -> None:
        """Close the session, roll its transaction back (dropping the views) and give
        its connection back to the pool.

        Should the views have outlived the transaction (a ``COMMIT`` sent as SQL
        text), or closing fail, the connection is discarded instead, so that no view
        ever shadows a table for the next user of the connection.
        """
        connection, self._past_connection = self._past_connection, None
        if connection is None:
            super().close()
            return
        try:
            super().close()
            connection.rollback()
            if connection.scalar(_LEFT_OVER, {"names": self._past_views}):
                connection.invalidate()
        except BaseException:
            connection.invalidate()
            raise
        finally:
            connection.close()


def _refuse_write_statements(execute_state: ORMExecuteState) -> None:
    if isinstance(execute_state.session, PastSession) and (
        execute_state.is_insert or execute_state.is_update or execute_state.is_delete
    ):
        raise ChrononautException(
            "A past session is read-only: run INSERT, UPDATE and DELETE statements in db.session."
        )


event.listen(PastSession, "do_orm_execute", _refuse_write_statements)


def open_past_session(engine: Engine, activity_class: type[Activity], at: datetime) -> PastSession:
    """Open a :class:`PastSession` on ``engine`` showing the moment ``at``.

    :param engine: the engine of the activity table's database.
    :param activity_class: the activity model whose history the views read.
    :param at: the moment; a naive datetime is taken to be UTC. A change made exactly
        at ``at`` is included.
    :raises InvalidArgumentError: ``at`` is not a datetime.
    :raises ChrononautException: the activity table lacks the time-travel columns, two
        tables would have views of the same name, or the engine translates schemas.
    """
    if not isinstance(at, datetime):
        raise InvalidArgumentError(f"`at` must be a datetime, not {type(at).__name__}.")
    activity = activity_class.__table__
    metadata = activity.metadata
    registry = inspect(activity_class).registry
    tables = past_tables(
        mapper
        for mapper in registry.mappers
        if getattr(mapper.local_table, "metadata", None) is metadata
    )
    schemas = sorted({past.table.schema for past in tables if past.table.schema is not None})
    # The ORM names the tables of those schemas with the schema, which would pass the
    # views by: the session reads them from the temporary schema instead, where the
    # tables without history get views of their live rows.
    with_history = {past.table for past in tables}
    live = [
        table
        for table in metadata.tables.values()
        if table.schema in schemas and table not in with_history
    ]
    _refuse_clashes(tables, live, metadata)
    if engine.get_execution_options().get("schema_translate_map"):
        # The schema names it adds would lead every statement past the views.
        raise ChrononautException(
            "Past sessions cannot read through an engine with a schema_translate_map: "
            "its schema names would lead the queries past the temporary views."
        )
    connection = engine.connect().execution_options(isolation_level=_ISOLATION)
    try:
        # Before the search path changes, as the check looks in the current schema, and
        # in a session of its own, whose savepoint must not come before the views.
        with Session(bind=connection, join_transaction_mode="create_savepoint") as checking:
            require_time_travel_columns(checking, activity)
        connection.exec_driver_sql(_setup_script(tables, live, activity, connection.dialect, at))
        if schemas:
            connection.execution_options(schema_translate_map=dict.fromkeys(schemas, "pg_temp"))
        views = [past.table.name for past in tables] + [table.name for table in live]
        session = PastSession(connection, at, metadata, views)
    except BaseException:
        connection.close()
        raise
    return session


def _refuse_clashes(tables: list[PastTable], live: list[Table], metadata: MetaData) -> None:
    """Refuse tables whose views would share one name in the temporary schema, or
    shadow a table of the default schema.

    :raises ChrononautException: two such tables have the same name.
    """
    with_history = {past.table for past in tables}
    shadowed = [
        table
        for table in metadata.tables.values()
        if table.schema is None and table not in with_history
    ]
    seen: dict[str, Table] = {}
    for table in [*(past.table for past in tables), *live, *shadowed]:
        other = seen.setdefault(table.name, table)
        if other is not table:
            first, second = sorted((other.fullname, table.fullname))
            raise ChrononautException(
                f"A past session reads {first} and {second} from one temporary schema, "
                "where their names clash; rename one of the tables."
            )


def _setup_script(
    tables: list[PastTable], live: list[Table], activity: Table, dialect: Dialect, at: datetime
) -> str:
    """Return the statements that make the views of ``tables`` at ``at``, and of the
    ``live`` tables as they are, as one script.

    Each view is made under a name of its own first: the SQL of a view must name the
    live tables, which the views shadow once they are renamed.
    """
    preparer = dialect.identifier_preparer
    # ISO text of a datetime: digits, signs, colons and a "T", safe to inline.
    moment = f"SELECT set_config('{MOMENT_SETTING}', '{serialize_datetime(at)}', true)"
    bodies = [(past.table, view_sql(past, activity, dialect)) for past in tables] + [
        (table, f"SELECT * FROM {preparer.format_table(table)}") for table in live
    ]
    temporary = [f"chrononaut_past_{number}" for number in range(len(bodies))]
    creates = [
        f"CREATE TEMPORARY VIEW {name} AS {body}"
        for name, (_, body) in zip(temporary, bodies, strict=True)
    ]
    renames = [
        f"ALTER VIEW pg_temp.{name} RENAME TO {preparer.quote(table.name)}"
        for name, (table, _) in zip(temporary, bodies, strict=True)
    ]
    return ";\n".join([*_SETUP, moment, *creates, *renames, _READ_ONLY])
