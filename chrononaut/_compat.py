"""Every use of SQLAlchemy's and Flask-SQLAlchemy's non-public parts, in one place.

Each item says why the public API does not do and which test fails when an upgrade
changes it (``tests/test_compat.py`` checks each assumption directly as well), so that
an upgrade has one module to mend.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Delete, FromClause, Insert, PrimaryKeyConstraint, Table, Update
from sqlalchemy.dialects.postgresql.dml import OnConflictDoUpdate
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import InstanceState, Mapper, sessionmaker
from sqlalchemy.orm.attributes import History
from sqlalchemy.orm.base import PASSIVE_NO_INITIALIZE, instance_state
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import GenerativeSelect
from sqlalchemy.sql.visitors import iterate

__all__ = [
    "SessionFactoryHook",
    "attribute_history",
    "changed_since_load",
    "instance_state",
    "json_serializer",
    "locks_rows",
    "named_froms",
    "new_instance",
    "partition_by_range",
    "requests_returning",
    "statement_parts",
    "statement_shape",
    "update_assignments",
    "updates_on_conflict",
]

# ``instance_state(obj)`` is what ``sqlalchemy.inspect(obj)`` returns for a mapped
# instance, without the dispatch through the inspection registry; the flush listeners
# call it for every object they see. Caught by every recording test.


def changed_since_load(state: InstanceState[Any]) -> Any:
    """Return the attribute names set on ``state`` since it was loaded or flushed.

    ``InstanceState.committed_state`` holds the value each such attribute had before;
    the public way, asking every attribute for its history, costs a call per attribute
    on every flushed object. Caught by ``tests/test_compat.py`` and the change
    detection tests of ``tests/test_versioned.py``.
    """
    return state.committed_state


def attribute_history(state: InstanceState[Any], key: str) -> History:
    """Return the pending change of attribute ``key`` without loading anything.

    ``AttributeState.history`` is public but may load an expired value; inside a flush
    that would issue a query per attribute. ``PASSIVE_NO_INITIALIZE`` is the flag
    SQLAlchemy's own unit of work uses. Caught by ``tests/test_compat.py``.
    """
    return state.get_history(key, PASSIVE_NO_INITIALIZE)


def new_instance(mapper: Mapper[Any]) -> Any:
    """Return an instance of ``mapper``'s class without calling its ``__init__``.

    A snapshot is turned back into a model instance attribute by attribute; the
    model's own constructor may require arguments or have side effects. Caught by the
    ``reify`` tests of ``tests/test_types.py``.
    """
    return mapper.class_manager.new_instance()


def statement_parts(statement: Any) -> Iterator[Any]:
    """Yield every element of ``statement``, the statement itself first.

    ``sqlalchemy.sql.visitors.iterate`` is public, but which children it visits is not
    documented; the write guard relies on it reaching every CTE (those added with
    ``add_cte()`` too, kept in the private ``_independent_ctes``), the statements inside
    them, and subqueries. Caught by ``tests/test_compat.py`` and the CTE cases of
    ``tests/test_bulk.py`` and ``tests/test_security.py``.
    """
    return iterate(statement)


def statement_shape(statement: Any) -> Any:
    """Return a hashable key equal for statements of the same structure (bound values
    aside), or ``None`` if the statement has none.

    It is the key of SQLAlchemy's compiled cache, from the private
    ``_generate_cache_key()``; SQLAlchemy keeps it on the statement and uses it again
    when it executes the statement, so asking for it costs no extra work. The write
    guard keeps what it found in a statement under it, and walks each structure once.
    Caught by ``tests/test_compat.py``.
    """
    generate = getattr(statement, "_generate_cache_key", None)
    cache_key = generate() if generate is not None else None
    return None if cache_key is None else cache_key.key


def updates_on_conflict(insert: Insert) -> bool:
    """Tell whether ``insert`` is an ``INSERT ... ON CONFLICT DO UPDATE``.

    PostgreSQL's ``Insert`` keeps its ``ON CONFLICT`` clause in the private
    ``_post_values_clause``. Caught by ``tests/test_compat.py`` and the upsert cases
    of ``tests/test_security.py``.
    """
    return isinstance(getattr(insert, "_post_values_clause", None), OnConflictDoUpdate)


def requests_returning(statement: UpdateBase) -> bool:
    """Tell whether an INSERT, UPDATE or DELETE already asks for rows back, with
    ``returning()`` or ``return_defaults()``.

    Both are kept in private attributes; ``exported_columns`` only shows the first.
    A recorded statement adds RETURNING of its own. Caught by the RETURNING cases of
    ``tests/test_bulk.py``.
    """
    return bool(statement._returning) or bool(statement._return_defaults)


def update_assignments(statement: Update) -> Mapping[Any, Any] | None:
    """Return the columns an UPDATE sets, with their values, or ``None`` when it sets
    them with ``ordered_values()``, whose list cannot be added to.

    The SET clause is kept in the private ``_values``; a recorded UPDATE adds the
    version bump to it. Caught by ``tests/test_bulk.py``.
    """
    if statement._maintain_values_ordering:
        return None
    return statement._values or {}


def named_froms(statement: Update | Delete) -> Iterator[FromClause]:
    """Yield the tables and other FROM elements an UPDATE or DELETE names outside
    subqueries, in ``using()``, its WHERE clause or its SET values: besides its own
    target, those make it an ``UPDATE ... FROM`` or ``DELETE ... USING``.

    SQLAlchemy's compiler finds them through the private ``_extra_froms`` and
    ``_from_objects``. Caught by the ``UPDATE ... FROM`` cases of ``tests/test_bulk.py``.
    """
    yield from getattr(statement, "_extra_froms", ())  # DELETE ... USING only
    clauses = list(statement._where_criteria)
    if isinstance(statement, Update):
        clauses.extend((statement._values or {}).values())
    for clause in clauses:
        yield from getattr(clause, "_from_objects", ())


def locks_rows(select: GenerativeSelect) -> bool:
    """Tell whether ``select`` has a ``FOR UPDATE`` or ``FOR SHARE`` clause.

    ``with_for_update()`` keeps it in the private ``_for_update_arg``, and no public
    accessor reads it back; a locking read must go to the primary, which a hot standby
    refuses. Caught by ``tests/test_compat.py`` and ``tests/test_replica.py``.
    """
    return select._for_update_arg is not None


def json_serializer(dialect: Dialect) -> Callable[[Any], str]:
    """Return the function that turns values into JSON text for ``dialect``: the
    engine's ``json_serializer`` argument, else :func:`json.dumps`.

    SQLAlchemy keeps it in the private ``Dialect._json_serializer``; psycopg 3 calls it
    only while sending a statement, too late for a recorded statement to find out that
    its change info cannot be stored. Caught by the change-info cases of
    ``tests/test_bulk.py``.
    """
    serializer: Callable[[Any], str] | None = getattr(dialect, "_json_serializer", None)
    return serializer or json.dumps


def partition_by_range(table: Table, column_name: str) -> None:
    """Make ``CREATE TABLE`` of ``table`` partition it by range of ``column_name``, and
    add that column to its primary key, as PostgreSQL requires of a partitioned table.

    ``dialect_kwargs`` is documented as writable, but that ``append_constraint()`` of a
    second primary key replaces the first is not: it is what
    ``PrimaryKeyConstraint._set_parent`` does. The table's model must name its
    identity columns in ``__mapper_args__["primary_key"]``, and its integer key column
    must say ``autoincrement=True``, or it would lose its sequence in a composite key.
    Caught by ``tests/test_compat.py`` and every test of ``tests/test_partitions.py``.
    """
    column = table.c[column_name]
    key = [*table.primary_key.columns, column]
    # Marked first, or SQLAlchemy warns that the columns marked differ from the key's.
    column.primary_key = True
    table.append_constraint(PrimaryKeyConstraint(*key))
    table.dialect_kwargs["postgresql_partition_by"] = f"RANGE ({column_name})"


class SessionFactoryHook(SQLAlchemy):
    """Flask-SQLAlchemy's extension, with one hook on the options of every session
    factory it makes.

    ``_make_session_factory`` is private, but it is the one place that both
    ``db.session`` and ``db._make_scoped_session(options)`` (which application test
    fixtures call to bind a session to a connection) go through. Caught by
    ``tests/test_extension.py::test_bound_test_sessions_from_make_scoped_session_are_versioned``.
    """

    def session_factory_options(self, options: dict[str, Any]) -> None:
        """Adjust ``options`` in place before a session factory is made from them."""

    def _make_session_factory(self, options: dict[str, Any]) -> sessionmaker[Any]:
        self.session_factory_options(options)
        return super()._make_session_factory(options)
