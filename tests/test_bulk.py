"""Bulk writes never bypass history silently: they are refused unless opted out of."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import MetaData, Table, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from chrononaut.exceptions import UnrecordedWriteError
from chrononaut.unsafe import suppress_versioning
from tests.activity import activity_rows


@pytest.fixture
def todo(session, models):
    todo = models.Todo(title="a")
    session.add(todo)
    session.commit()
    return todo


def _lightweight(name, *columns, schema=None):
    """A table named like ``name`` but built from its name only, as an application
    that never imported the model could."""
    return sa.table(name, *(sa.column(column) for column in columns), schema=schema)


def _in_a_cte(dml):
    """A SELECT whose only write is ``dml``, run as a data-modifying CTE."""
    cte = dml.cte("written")
    return select(cte.c.id)


def _reflected(session):
    return Table("todo", MetaData(), autoload_with=session.connection())


def _statements(models, todo):
    """Each way to write the versioned ``todo`` table around the unit of work: the
    statement, and the titles it leaves when it is allowed to run."""
    table = models.Todo.__table__
    lightweight = _lightweight("todo", "id", "title")
    return {
        "orm update": (
            lambda session: session.execute(
                update(models.Todo).where(models.Todo.id == todo.id).values(title="b")
            ),
            ["b"],
        ),
        "orm delete": (
            lambda session: session.execute(delete(models.Todo).where(models.Todo.id == todo.id)),
            [],
        ),
        "orm insert": (
            lambda session: session.execute(insert(models.Todo), [{"title": "b"}]),
            ["a", "b"],
        ),
        "core update": (lambda session: session.execute(update(table).values(title="b")), ["b"]),
        "core delete": (lambda session: session.execute(delete(table)), []),
        "core insert": (
            lambda session: session.execute(insert(table).values(title="b")),
            ["a", "b"],
        ),
        "query update": (lambda session: session.query(models.Todo).update({"title": "b"}), ["b"]),
        "query delete": (lambda session: session.query(models.Todo).delete(), []),
        "bulk_insert_mappings": (
            lambda session: session.bulk_insert_mappings(models.Todo, [{"title": "b"}]),
            ["a", "b"],
        ),
        "bulk_update_mappings": (
            lambda session: session.bulk_update_mappings(
                models.Todo, [{"id": todo.id, "title": "b", "version": 0}]
            ),
            ["b"],
        ),
        "bulk_save_objects new": (
            lambda session: session.bulk_save_objects([models.Todo(title="b")]),
            ["a", "b"],
        ),
        "bulk_save_objects changed": (
            lambda session: session.bulk_save_objects([_changed(session, todo)]),
            ["b"],
        ),
        "lightweight table update": (
            lambda session: session.execute(update(lightweight).values(title="b")),
            ["b"],
        ),
        "lightweight table delete": (lambda session: session.execute(delete(lightweight)), []),
        "lightweight table insert": (
            lambda session: session.execute(insert(lightweight).values(title="b")),
            ["a", "b"],
        ),
        "schema-qualified lightweight table update": (
            lambda session: session.execute(
                update(_lightweight("todo", "title", schema="public")).values(title="b")
            ),
            ["b"],
        ),
        "reflected table update": (
            lambda session: session.execute(update(_reflected(session)).values(title="b")),
            ["b"],
        ),
        "reflected table delete": (
            lambda session: session.execute(delete(_reflected(session))),
            [],
        ),
        "alias update": (
            lambda session: session.execute(update(table.alias()).values(title="b")),
            ["b"],
        ),
        "alias of a lightweight table delete": (
            lambda session: session.execute(delete(lightweight.alias("t"))),
            [],
        ),
        "update in a cte of a select": (
            lambda session: session.execute(
                _in_a_cte(update(table).values(title="b").returning(table.c.id))
            ),
            ["b"],
        ),
        "delete in a cte of a select": (
            lambda session: session.execute(_in_a_cte(delete(table).returning(table.c.id))),
            [],
        ),
        "insert in a cte of a select": (
            lambda session: session.execute(
                _in_a_cte(insert(table).values(title="b").returning(table.c.id))
            ),
            ["a", "b"],
        ),
        "lightweight delete in a cte of a select": (
            lambda session: session.execute(
                _in_a_cte(delete(lightweight).returning(lightweight.c.id))
            ),
            [],
        ),
        "update in a cte added to a select": (
            lambda session: session.execute(
                select(sa.literal(1)).add_cte(update(table).values(title="b").cte())
            ),
            ["b"],
        ),
        "delete in a cte read by a subquery": (
            lambda session: session.execute(
                select(sa.literal(1)).where(
                    sa.exists(_in_a_cte(delete(lightweight).returning(lightweight.c.id)))
                )
            ),
            [],
        ),
        "update of another table with a cte that deletes": (
            lambda session: session.execute(
                update(models.Note.__table__)
                .values(body="x")
                .add_cte(delete(table).returning(table.c.id).cte())
            ),
            [],
        ),
        "insert from a select with a cte that updates": (
            lambda session: session.execute(
                insert(models.Note.__table__)
                .from_select(["body"], select(sa.literal("x")))
                .add_cte(update(lightweight).values(title="b").cte())
            ),
            ["b"],
        ),
        "upsert": (
            lambda session: session.execute(
                pg_insert(table)
                .values(id=todo.id, title="b")
                .on_conflict_do_update(index_elements=["id"], set_={"title": "b"})
            ),
            ["b"],
        ),
    }


def _changed(session, todo):
    # SQLAlchemy's bulk update needs the primary key loaded, which a commit expired.
    session.refresh(todo)
    todo.title = "b"
    return todo


WRITES = [
    "orm update",
    "orm delete",
    "orm insert",
    "core update",
    "core delete",
    "core insert",
    "query update",
    "query delete",
    "bulk_insert_mappings",
    "bulk_update_mappings",
    "bulk_save_objects new",
    "bulk_save_objects changed",
    "lightweight table update",
    "lightweight table delete",
    "lightweight table insert",
    "schema-qualified lightweight table update",
    "reflected table update",
    "reflected table delete",
    "alias update",
    "alias of a lightweight table delete",
    "update in a cte of a select",
    "delete in a cte of a select",
    "insert in a cte of a select",
    "lightweight delete in a cte of a select",
    "update in a cte added to a select",
    "delete in a cte read by a subquery",
    "update of another table with a cte that deletes",
    "insert from a select with a cte that updates",
    "upsert",
]


def _todos(session, models):
    session.expire_all()
    return session.execute(select(models.Todo.title).order_by(models.Todo.id)).scalars().all()


def test_every_write_is_listed(models):
    assert sorted(_statements(models, None)) == sorted(WRITES)


@pytest.mark.parametrize("write", WRITES)
def test_bulk_write_on_a_versioned_model_is_refused(db, session, models, todo, write):
    statement, _ = _statements(models, todo)[write]
    with pytest.raises(UnrecordedWriteError, match="suppress_versioning") as refused:
        statement(session)

    assert "'todo'" in str(refused.value)
    session.rollback()
    assert _todos(session, models) == ["a"]
    assert len(activity_rows(db)) == 1
    # The session is still usable for changes that are recorded.
    todo.title = "c"
    session.commit()
    assert [row.version for row in activity_rows(db)] == [0, 1]


@pytest.mark.parametrize("write", WRITES)
def test_bulk_write_runs_without_history_when_suppressed(db, session, models, todo, write):
    statement, titles = _statements(models, todo)[write]
    with suppress_versioning():
        statement(session)
        session.commit()

    assert _todos(session, models) == titles
    assert len(activity_rows(db)) == 1


def test_sql_text_is_not_seen(db, session, models, todo):
    # Documented: the guard reads statements, not SQL text.
    session.execute(text("UPDATE todo SET title = 'b'"))
    session.commit()

    assert _todos(session, models) == ["b"]
    assert [row.data["title"] for row in activity_rows(db)] == ["a"]


def test_connection_execute_is_not_seen(db, session, models, todo):
    # Documented: the guard sees what the session executes, not its connection.
    session.connection().execute(update(models.Todo.__table__).values(title="b"))
    session.commit()

    assert _todos(session, models) == ["b"]
    assert [row.data["title"] for row in activity_rows(db)] == ["a"]


@pytest.fixture
def other_schema_todo(db, models):
    """A table ``other.todo``: same name as the versioned table, another schema."""
    with db.engine.begin() as connection:
        connection.execute(text("CREATE SCHEMA other"))
        connection.execute(text("CREATE TABLE other.todo (id serial PRIMARY KEY, title text)"))
    return _lightweight("todo", "title", schema="other")


def test_a_table_of_the_same_name_in_another_schema_is_not_guarded(
    db, session, models, todo, other_schema_todo
):
    session.execute(insert(other_schema_todo).values(title="x"))
    session.execute(update(other_schema_todo).values(title="y"))
    session.commit()

    assert session.execute(select(other_schema_todo.c.title)).scalars().all() == ["y"]
    assert _todos(session, models) == ["a"]


@pytest.mark.parametrize("model_name", ["Dog", "Cat"])
def test_bulk_update_of_an_inherited_model_is_refused(db, session, models, model_name):
    model = getattr(models, model_name)
    session.add(model(name="a"))
    session.commit()

    with pytest.raises(UnrecordedWriteError):
        session.execute(update(model).values(name="b"))
    with pytest.raises(UnrecordedWriteError):
        session.query(model).delete()


def test_bulk_writes_on_unversioned_tables_are_allowed(db, session, models):
    session.execute(insert(models.Note), [{"body": "a"}, {"body": "b"}])
    session.execute(update(models.Note).values(body="c"))
    session.commit()

    assert session.execute(select(models.Note.body)).scalars().all() == ["c", "c"]
    assert activity_rows(db) == []
