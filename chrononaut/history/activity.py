"""The ``chrononaut_activity`` table, which holds every snapshot, and the names of the
keys stored in its JSON columns."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from weakref import WeakKeyDictionary

from sqlalchemy import BigInteger, DateTime, Index, Integer, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from chrononaut.exceptions import ChrononautException

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import Pool

#: The key of a snapshot's ``data`` that holds the object's version.
VERSION_KEY = "version"
#: The key of ``extra_info`` that lists the hidden columns a change touched.
HIDDEN_COLUMNS_CHANGED_KEY = "hidden_cols_changed"

#: ``Table.info`` key that marks a table as holding history.
_ROLE_KEY = "chrononaut.role"
_HISTORY_ROLE = "history"
#: ``MetaData.info`` key of the activity class of a declarative registry's metadata.
_ACTIVITY_CLASS_KEY = "chrononaut.activity_class"

_EMPTY_JSON = text("'{}'::jsonb")

#: The values of ``operation``: what a change did to the object.
INSERT, UPDATE, DELETE = "insert", "update", "delete"
#: The columns added in 1.0 for time travel; tables made before lack them.
TIME_TRAVEL_COLUMNS = ("operation", "transaction_id")
#: The documented migration that adds them, named in the errors of time-travel calls.
TIME_TRAVEL_MIGRATION = "docs/migration.rst, 'Operation and transaction of each change'"


class Activity:
    """The columns of the activity table: one row per recorded change of one object.

    :func:`activity_factory` maps a subclass of it on a declarative base; this class
    itself is what the type checker sees of that model.
    """

    __table__: ClassVar[Table]

    # Said outright, so that ``id`` keeps its sequence in the partitioned layout, whose
    # primary key is ``(id, changed)`` (chrononaut.history.partitions).
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    #: The versioned table the object is stored in.
    table_name: Mapped[str] = mapped_column(Text, nullable=False)
    #: When the change was flushed, in UTC; every row of one flush shares it.
    changed: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    #: The object's version after the change.
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    #: The object's primary key, ``{attribute: value}``.
    key: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=_EMPTY_JSON)
    #: The tracked values after the change, plus ``version``.
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=_EMPTY_JSON)
    #: Who made the change: ``user_id`` and ``remote_addr``.
    user_info: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=_EMPTY_JSON
    )
    #: Why: the extra change info, and the hidden columns the change touched.
    extra_info: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=_EMPTY_JSON
    )
    # The two time-travel columns are deferred so that ORM queries of a table made
    # before they existed still work; :func:`has_time_travel_columns` tells.
    #: What the change did: :data:`INSERT`, :data:`UPDATE` or :data:`DELETE`; ``None``
    #: on rows written before the column existed (see :mod:`chrononaut.history.lives`).
    operation: Mapped[str | None] = mapped_column(Text, nullable=True, deferred=True)
    #: The id of the database transaction that wrote the row (``pg_current_xact_id()``):
    #: every row of one commit shares it.
    transaction_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, deferred=True)


def activity_factory(Base: type[Any], schema: str | None = None) -> type[Activity]:
    """Define the ``chrononaut_activity`` model on a declarative base.

    :class:`~chrononaut.VersionedSQLAlchemy` calls this for ``db.Model``; call it
    yourself only when you manage the declarative base on your own.

    :param Base: the declarative base class (``db.Model``).
    :param schema: the database schema of the table, if not the default one.
    :return: the mapped activity class.
    """

    class ChrononautActivity(Activity, Base):  # type: ignore[misc]
        """One snapshot of one versioned row."""

        __tablename__ = "chrononaut_activity"
        # The identity is `id` alone, in the partitioned layout too.
        __mapper_args__: ClassVar[dict[str, Any]] = {"primary_key": ["id"]}
        __table_args__ = (
            # One object's rows in time order, so that version_at() reads one index
            # entry however long the history is. It replaces the original index on
            # (key, table_name), whose columns it leads with: a second index only made
            # every recorded change dearer. Tables made by older releases may still
            # have that one; docs/migration.rst has the migration that swaps them.
            Index(
                "ix_chrononaut_activity_table_name_key_changed",
                "table_name",
                "key",
                "changed",
                "id",
            ),
            # The rows of one recorded transaction, for undoing it. Rows are appended
            # in transaction order, so a BRIN index finds them at almost no cost to
            # each write, where a btree would be one more index to maintain.
            Index(
                "ix_chrononaut_activity_transaction_id",
                "transaction_id",
                postgresql_using="brin",
            ),
            # The rows written without an operation (by older releases): dated reads ask
            # it whether a model has any, and leave the rule that reads their operation
            # out of the SQL when not. Rows written since never enter it, so it costs
            # nothing to record a change.
            Index(
                "ix_chrononaut_activity_without_operation",
                "table_name",
                postgresql_where=text("operation IS NULL"),
            ),
            {"schema": schema, "info": {_ROLE_KEY: _HISTORY_ROLE}},
        )

    Base.registry.metadata.info[_ACTIVITY_CLASS_KEY] = ChrononautActivity
    return ChrononautActivity


def activity_class_for(model: type[Any]) -> type[Activity]:
    """Return the activity class that holds the history of ``model``.

    Models on a ``__bind_key__`` metadata of their own share their registry's activity
    class.

    :raises ChrononautException: ``model`` is not on a base that has an activity table.
    """
    try:
        activity: type[Activity] = model.registry.metadata.info[_ACTIVITY_CLASS_KEY]
    except (AttributeError, KeyError):
        raise ChrononautException(
            f"{model.__name__} has no activity table: versioned models must derive "
            "from the `Model` of a `VersionedSQLAlchemy` instance."
        ) from None
    return activity


def is_history_table(table: Any) -> bool:
    """Tell whether ``table`` is an activity table defined by :func:`activity_factory`."""
    return isinstance(table, Table) and table.info.get(_ROLE_KEY) == _HISTORY_ROLE


def is_activity(obj: object) -> bool:
    """Tell whether ``obj`` is a row of an activity table."""
    return isinstance(obj, Activity) and is_history_table(getattr(type(obj), "__table__", None))


# Whether the activity tables reached through a pool have the time-travel columns, by
# (schema, table name). Keyed on the pool, which ``Engine.dispose()`` replaces, so that
# disposing of the engine after a migration is enough to see its columns.
_LAYOUTS: WeakKeyDictionary[Pool, dict[tuple[str | None, str], bool]] = WeakKeyDictionary()

_COLUMNS_OF_TABLE = text(
    "SELECT column_name FROM information_schema.columns "
    "WHERE table_schema = coalesce(CAST(:schema AS text), current_schema()) "
    "AND table_name = CAST(:name AS text)"
)


def has_time_travel_columns(session: Session, table: Table) -> bool:
    """Tell whether the activity table ``table``, as the session's database has it,
    has the time-travel columns (:data:`TIME_TRAVEL_COLUMNS`).

    Tables made before they existed keep working without them: changes are recorded
    without an operation and history reads as before. The answer is asked once per
    connection pool; a table that does not exist yet is taken to be a new one.
    """
    bind = session.get_bind(clause=table)
    pool = bind.engine.pool
    layouts = _LAYOUTS.setdefault(pool, {})
    where = (table.schema, table.name)
    if where not in layouts:
        names = set(
            session.connection(bind_arguments={"clause": table}).scalars(
                _COLUMNS_OF_TABLE, {"schema": table.schema, "name": table.name}
            )
        )
        if not names:
            return True
        layouts[where] = set(TIME_TRAVEL_COLUMNS) <= names
    return layouts[where]


def require_time_travel_columns(session: Session, table: Table) -> None:
    """Refuse a time-travel call on an activity table without the time-travel columns.

    :raises ChrononautException: the table lacks them; the message names the migration.
    """
    if not has_time_travel_columns(session, table):
        raise ChrononautException(
            f"{table.name} has no {' or '.join(TIME_TRAVEL_COLUMNS)} column: it was made "
            "by an older release. Time travel needs them; add them with the migration in "
            f"{TIME_TRAVEL_MIGRATION}, then dispose of the engine or restart the app."
        )
