"""The assumptions ``chrononaut._compat`` makes about SQLAlchemy and Flask-SQLAlchemy
internals, checked directly, so that an upgrade that breaks one fails here by name."""

from __future__ import annotations

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import delete, event, insert, inspect, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.schema import CreateTable

from chrononaut import VersionedSession
from chrononaut._compat import (
    attribute_history,
    changed_since_load,
    instance_state,
    locks_rows,
    new_instance,
    partition_by_range,
    statement_parts,
    statement_shape,
    updates_on_conflict,
)


def test_instance_state_is_what_inspect_returns(session, models):
    todo = models.Todo(title="state")
    assert instance_state(todo) is inspect(todo)


def test_changed_since_load_names_exactly_the_attributes_set(session, models):
    todo = models.Todo(title="loaded", text="body")
    session.add(todo)
    session.commit()
    todo = session.get(models.Todo, todo.id)
    assert not changed_since_load(inspect(todo))

    todo.title = "set"
    assert set(changed_since_load(inspect(todo))) == {"title"}
    session.commit()
    assert not changed_since_load(inspect(todo))


def test_attribute_history_never_loads(db, session, models):
    todo = models.Todo(title="expired")
    session.add(todo)
    session.commit()  # expires every attribute
    statements = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    history = attribute_history(inspect(todo), "title")

    assert statements == []
    assert not history.has_changes()
    todo.title = "changed"
    assert attribute_history(inspect(todo), "title").added == ["changed"]


def test_new_instance_skips_the_constructor(db):
    class Strict(db.Model):
        __tablename__ = "strict"
        id = db.Column(db.Integer, primary_key=True)

        def __init__(self, required):
            raise AssertionError("the constructor must not run")

    instance = new_instance(inspect(Strict))
    assert type(instance) is Strict
    assert inspect(instance).transient


def test_flask_sqlalchemy_still_makes_every_session_factory_in_one_method(db):
    # VersionedSQLAlchemy makes its sessions versioned by hooking this method.
    assert callable(SQLAlchemy._make_session_factory)
    factory = db._make_session_factory({})
    assert issubclass(factory.class_, VersionedSession)


def test_statement_parts_reach_every_cte_and_the_statements_in_them():
    table = sa.table("item", sa.column("id"), sa.column("title"))
    in_from = delete(table).returning(table.c.id).cte("in_from")
    added = update(table).values(title="x").cte("added")
    in_subquery = insert(table).values(title="y").returning(table.c.id).cte("in_subquery")
    statement = select(in_from.c.id).where(sa.exists(select(in_subquery.c.id))).add_cte(added)

    parts = list(statement_parts(statement))

    assert parts[0] is statement
    assert {type(part).__name__ for part in parts} >= {
        "Select",
        "CTE",
        "Delete",
        "Update",
        "Insert",
    }


def test_updates_on_conflict_tells_upserts_apart():
    table = sa.table("item", sa.column("id"), sa.column("title"))
    values = pg_insert(table).values(id=1, title="x")

    assert updates_on_conflict(
        values.on_conflict_do_update(index_elements=["id"], set_={"title": "y"})
    )
    assert not updates_on_conflict(values.on_conflict_do_nothing())
    assert not updates_on_conflict(values)
    assert not updates_on_conflict(insert(table).values(id=1))


def test_statement_shape_ignores_bound_values_and_is_kept_on_the_statement():
    item = sa.table("item", sa.column("id"), sa.column("title"))
    other = sa.table("other", sa.column("id"))
    statement = select(item.c.title).where(item.c.id == 1)

    shape = statement_shape(statement)

    assert shape == statement_shape(select(item.c.title).where(item.c.id == 2))
    assert shape != statement_shape(select(other.c.id).where(other.c.id == 1))
    assert shape != statement_shape(delete(item).where(item.c.id == 1))
    # SQLAlchemy computes it once per statement, and reuses it when it executes it.
    assert statement._generate_cache_key() is statement._generate_cache_key()


def test_locks_rows_sees_for_update_and_for_share_only():
    item = sa.table("item", sa.column("id"))
    statement = select(item.c.id)

    assert locks_rows(statement.with_for_update())
    assert locks_rows(statement.with_for_update(read=True))
    assert locks_rows(statement.union(select(item.c.id)).with_for_update())
    assert not locks_rows(statement)


def test_partition_by_range_replaces_the_primary_key_and_keeps_the_sequence():
    table = sa.Table(
        "history",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("changed", sa.DateTime(timezone=True), nullable=False),
    )
    partition_by_range(table, "changed")
    assert [column.name for column in table.primary_key.columns] == ["id", "changed"]
    assert [c for c in table.constraints if isinstance(c, sa.PrimaryKeyConstraint)] == [
        table.primary_key
    ]
    assert table.autoincrement_column is table.c.id
    ddl = " ".join(str(CreateTable(table).compile(dialect=postgresql.dialect())).split())
    assert ddl == (
        "CREATE TABLE history ( id BIGSERIAL NOT NULL, changed TIMESTAMP WITH TIME ZONE "
        "NOT NULL, PRIMARY KEY (id, changed) ) PARTITION BY RANGE (changed)"
    )
