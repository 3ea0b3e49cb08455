"""Bulk writes never bypass history silently: ORM statements on versioned models are
recorded, row by row, as a flush records objects; every other bulk write is refused
unless opted out of."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from sqlalchemy import MetaData, String, Table, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Mapped, mapped_column

from chrononaut import (
    ChrononautException,
    Versioned,
    VersionedSession,
    acting_as,
    extra_change_info,
    rationale,
)
from chrononaut.exceptions import ConcurrentChangeError, UnrecordedWriteError
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


#: Recorded: one snapshot per row (see the tests below).
RECORDED = ["orm update", "orm delete", "orm insert", "query update", "query delete"]
#: Refused: the table is not named through the model, or the write is not the
#: statement's own, or the ``bulk_*`` methods.
REFUSED = [
    "core update",
    "core delete",
    "core insert",
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
WRITES = RECORDED + REFUSED


def _todos(session, models):
    session.expire_all()
    return session.execute(select(models.Todo.title).order_by(models.Todo.id)).scalars().all()


def test_every_write_is_listed(models):
    assert sorted(_statements(models, None)) == sorted(WRITES)


@pytest.mark.parametrize("write", REFUSED)
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


@pytest.mark.parametrize("write", RECORDED)
def test_recorded_write_leaves_the_same_data_with_history(db, session, models, todo, write):
    statement, titles = _statements(models, todo)[write]
    statement(session)
    session.commit()

    assert _todos(session, models) == titles
    rows = activity_rows(db)
    assert len(rows) == 2
    assert [row.operation for row in rows] == ["insert", write.split()[-1]]


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


def test_bulk_writes_on_unversioned_tables_are_allowed(db, session, models):
    session.execute(insert(models.Note), [{"body": "a"}, {"body": "b"}])
    session.execute(update(models.Note).values(body="c"))
    session.commit()

    assert session.execute(select(models.Note.body)).scalars().all() == ["c", "c"]
    assert activity_rows(db) == []


# -- recorded statements ----------------------------------------------------------------


def _history(db, table_name="todo"):
    """``(key id, operation, version, title)`` of each activity row of ``table_name``."""
    return [
        (row.key["id"], row.operation, row.version, row.data.get("title", row.data.get("name")))
        for row in activity_rows(db)
        if row.table_name == table_name
    ]


def _live_versions(session, model):
    session.expire_all()
    return dict(session.execute(select(model.id, model.version).order_by(model.id)).all())


@pytest.fixture
def three(session, models):
    """Three stored todos, ``one``, ``two`` and ``three``, with ids 1 to 3."""
    todos = [models.Todo(title=title) for title in ("one", "two", "three")]
    session.add_all(todos)
    session.commit()
    return [todo.id for todo in todos]


def test_an_update_records_each_row_it_changes_with_its_next_version(db, session, models, three):
    Todo = models.Todo
    first, second, third = three
    session.execute(update(Todo).where(Todo.id == first).values(title="one!"))
    session.commit()

    result = session.execute(
        update(Todo).where(Todo.id.in_([first, second])).values(title=Todo.title + "?")
    )
    session.commit()

    assert result.rowcount == 2
    assert _history(db)[3] == (first, "update", 1, "one!")
    # The rows of one statement come in the order the database wrote them.
    assert sorted(_history(db)[4:]) == [
        (first, "update", 2, "one!?"),
        (second, "update", 1, "two?"),
    ]
    assert _live_versions(session, Todo) == {first: 2, second: 1, third: 0}
    # The snapshot is the row as the statement left it, every tracked column included.
    (newest,) = [row for row in activity_rows(db)[4:] if row.key["id"] == second]
    assert newest.data == {
        "id": second,
        "title": "two?",
        "text": None,
        "done": False,
        "priority": None,
        "due_at": None,
        "version": 1,
    }
    assert newest.key == {"id": second}
    assert newest.user_info == {"user_id": None, "remote_addr": None}
    assert newest.extra_info == {}


def test_a_delete_records_each_row_it_removes(db, session, models, three):
    Todo = models.Todo
    first, second, third = three
    session.execute(update(Todo).where(Todo.id == second).values(done=True))

    result = session.execute(delete(Todo).where(Todo.id != first))
    session.commit()

    assert result.rowcount == 2
    assert _history(db)[3] == (second, "update", 1, "two")
    # The rows of one statement come in the order the database wrote them.
    assert sorted(_history(db)[4:]) == [(second, "delete", 2, "two"), (third, "delete", 1, "three")]
    deleted = {row.key["id"]: row.data["done"] for row in activity_rows(db)[4:]}
    assert deleted == {second: True, third: False}
    assert _live_versions(session, Todo) == {first: 0}


@pytest.mark.parametrize("form", ["list of rows", "values", "select"])
def test_an_insert_records_each_row_it_adds(db, session, models, form):
    Todo = models.Todo
    rows = [{"title": "a", "done": True}, {"title": "b", "done": False}]
    if form == "list of rows":
        session.execute(insert(Todo), rows)
    elif form == "values":
        session.execute(insert(Todo).values(rows))
    else:
        chosen = sa.values(sa.column("title"), sa.column("done"), name="chosen").data(
            [(row["title"], row["done"]) for row in rows]
        )
        session.execute(insert(Todo).from_select(["title", "done"], select(chosen)))
    session.commit()

    ids = sorted(_live_versions(session, Todo))
    assert _history(db) == [(ids[0], "insert", 0, "a"), (ids[1], "insert", 0, "b")]
    assert [row.data["done"] for row in activity_rows(db)] == [True, False]
    assert _live_versions(session, Todo) == {ids[0]: 0, ids[1]: 0}


def test_query_update_and_delete_return_their_row_counts(db, session, models, three):
    Todo = models.Todo
    first, second, third = three

    assert session.query(Todo).filter(Todo.id != third).update({"title": "x"}) == 2
    assert session.query(Todo).filter(Todo.id == first).delete() == 1
    session.commit()

    assert sorted(_history(db)[3:5]) == [(first, "update", 1, "x"), (second, "update", 1, "x")]
    assert _history(db)[5] == (first, "delete", 2, "x")


def test_subqueries_of_other_tables_are_recorded(db, session, models, three):
    Todo, Note = models.Todo, models.Note
    session.add(Note(body="two"))
    session.execute(update(Todo).where(Todo.title.in_(select(Note.body))).values(done=True))
    session.execute(
        update(Todo).values(text=select(Note.body).where(Note.body == Todo.title).scalar_subquery())
    )
    session.execute(delete(Todo).where(sa.exists().where(Note.body == Todo.title)))
    session.commit()

    by_key = {}
    for row in activity_rows(db):
        by_key.setdefault(row.key["id"], []).append((row.operation, row.version, row.data["text"]))
    first, second, third = three
    assert by_key == {
        first: [("insert", 0, None), ("update", 1, None)],
        second: [
            ("insert", 0, None),
            ("update", 1, None),
            ("update", 2, "two"),
            ("delete", 3, "two"),
        ],
        third: [("insert", 0, None), ("update", 1, None)],
    }


def test_a_statement_that_matches_no_row_records_nothing(db, session, models, three):
    Todo = models.Todo
    result = session.execute(update(Todo).where(Todo.id == -1).values(title="x"))
    session.execute(delete(Todo).where(Todo.id == -1))
    session.commit()

    assert result.rowcount == 0
    assert len(activity_rows(db)) == 3


def test_hidden_columns_set_by_a_statement_are_listed_never_stored(db, session, models):
    User = models.User
    secret = "s3cr3t-bulk"
    session.execute(insert(User), [{"name": "a", "password": secret}, {"name": "b"}])
    session.execute(update(User).where(User.name == "a").values(password=secret + "2"))
    session.execute(update(User).where(User.name == "b").values(name="c", login_count=3))
    session.commit()

    rows = activity_rows(db)
    assert [(row.operation, row.version, row.extra_info) for row in rows] == [
        ("insert", 0, {"hidden_cols_changed": ["password"]}),
        ("insert", 0, {}),
        ("update", 1, {"hidden_cols_changed": ["password"]}),
        ("update", 1, {}),
    ]
    stored = session.execute(text("SELECT chrononaut_activity::text FROM chrononaut_activity"))
    assert all(secret not in row and "login_count" not in row for row in stored.scalars())
    assert all("password" not in row.data for row in rows)


def test_an_update_of_untracked_columns_only_makes_no_version(db, session, models, three):
    Todo = models.Todo
    session.execute(update(Todo).values(starred=True))
    session.commit()

    assert len(activity_rows(db)) == 3
    assert set(_live_versions(session, Todo).values()) == {0}
    assert session.execute(select(Todo.starred)).scalars().all() == [True, True, True]

    # With a tracked column beside it, each row gets a version.
    session.execute(update(Todo).values(starred=False, done=True))
    session.commit()
    assert [row.version for row in activity_rows(db)[3:]] == [1, 1, 1]


def test_strict_mode_needs_change_info_before_the_statement_runs(app, db, session, models, three):
    Todo = models.Todo
    app.config["CHRONONAUT_REQUIRE_EXTRA_CHANGE_INFO"] = True

    with pytest.raises(ChrononautException, match="extra_change_info"):
        session.execute(update(Todo).values(title="x"))
    with pytest.raises(ChrononautException, match="extra_change_info"):
        session.execute(insert(Todo), [{"title": "y"}])
    session.rollback()
    assert _todos(session, models) == ["one", "two", "three"]
    # Untracked columns need no reason, as in a flush.
    session.execute(update(Todo).values(starred=True))

    with rationale("cleanup"):
        session.execute(delete(Todo).where(Todo.title == "one"))
    session.commit()

    assert [row.extra_info for row in activity_rows(db)[3:]] == [{"rationale": "cleanup"}]


def test_change_info_is_recorded_as_in_a_flush(app, db, session, models, three):
    Todo = models.Todo
    app.config["CHRONONAUT_EXTRA_CHANGE_INFO_FUNC"] = lambda: {"job": 7}

    with acting_as("importer", reason="nightly"), extra_change_info(batch="b1"):
        session.execute(update(Todo).values(title="x", secret="hidden"))
        session.commit()

    rows = activity_rows(db)[3:]
    assert len(rows) == 3
    assert {row.user_info["user_id"] for row in rows} == {"importer"}
    assert [row.extra_info for row in rows] == 3 * [
        {"job": 7, "reason": "nightly", "batch": "b1", "hidden_cols_changed": ["secret"]}
    ]
    # Every row of one statement shares its time and transaction.
    assert len({(row.changed, row.transaction_id) for row in rows}) == 1


def test_change_info_json_cannot_hold_fails_before_the_statement_runs(db, session, models, three):
    Todo = models.Todo
    with extra_change_info(when=object()), pytest.raises(TypeError):
        session.execute(update(Todo).values(title="x"))
    session.commit()

    assert _todos(session, models) == ["one", "two", "three"]
    assert len(activity_rows(db)) == 3


def test_a_rollback_leaves_neither_data_nor_history(db, session, models, three):
    Todo = models.Todo
    session.execute(update(Todo).values(title="x"))
    session.execute(delete(Todo).where(Todo.id == three[0]))
    session.execute(insert(Todo), [{"title": "new"}])
    session.rollback()

    assert _todos(session, models) == ["one", "two", "three"]
    assert len(activity_rows(db)) == 3
    assert set(_live_versions(session, Todo).values()) == {0}


def test_a_statement_suppressed_bumps_no_version(db, session, models, three):
    Todo = models.Todo
    with suppress_versioning():
        session.execute(update(Todo).values(title="quiet"))
        session.commit()
    session.execute(update(Todo).where(Todo.id == three[0]).values(title="loud"))
    session.commit()

    assert _history(db)[3:] == [(three[0], "update", 1, "loud")]


@pytest.mark.parametrize("synchronize", ["auto", "evaluate", "fetch", False])
def test_loaded_objects_get_the_version_the_statement_wrote(
    db, session, models, three, synchronize
):
    Todo = models.Todo
    first, second, _ = three
    loaded = session.get(Todo, first)
    assert loaded.version == 0
    session.execute(
        update(Todo)
        .where(Todo.id.in_([first, second]))
        .values(title="bulk")
        .execution_options(synchronize_session=synchronize)
    )

    assert (loaded.version, loaded.title) == (1, "bulk")
    loaded.done = True
    session.commit()

    assert sorted(_history(db)[3:5]) == [
        (first, "update", 1, "bulk"),
        (second, "update", 1, "bulk"),
    ]
    assert _history(db)[5] == (first, "update", 2, "bulk")
    assert activity_rows(db)[-1].data["done"] is True
    assert _live_versions(session, Todo)[first] == 2


@pytest.mark.parametrize("synchronize", ["auto", "evaluate", "fetch", False])
def test_a_pending_change_is_flushed_before_the_statement(db, session, models, three, synchronize):
    Todo = models.Todo
    first = three[0]
    loaded = session.get(Todo, first)
    loaded.text = "flushed first"
    session.execute(
        update(Todo)
        .where(Todo.id == first)
        .values(done=True)
        .execution_options(synchronize_session=synchronize)
    )
    session.commit()

    rows = activity_rows(db)[3:]
    assert [(row.version, row.data["text"], row.data["done"]) for row in rows] == [
        (1, "flushed first", False),
        (2, "flushed first", True),
    ]
    assert rows[0].changed <= rows[1].changed


def test_a_single_table_subclass_is_recorded(db, session, models):
    Cat, Dog = models.Cat, models.Dog
    session.add_all([Cat(name="tom"), Dog(name="rex")])
    session.commit()

    session.execute(update(Cat).values(indoor=True))
    session.execute(delete(Cat))
    session.commit()

    cat_rows = [row for row in activity_rows(db) if row.data.get("kind") == "cat"]
    assert [(row.table_name, row.operation, row.version) for row in cat_rows] == [
        ("animal", "insert", 0),
        ("animal", "update", 1),
        ("animal", "delete", 2),
    ]
    assert cat_rows[1].data["indoor"] is True
    assert session.execute(select(models.Animal.name)).scalars().all() == ["rex"]


@pytest.mark.parametrize("model_name", ["Dog", "Animal"])
def test_a_joined_table_hierarchy_is_refused(db, session, models, model_name):
    model = getattr(models, model_name)
    session.add(model(name="a"))
    session.commit()

    with pytest.raises(UnrecordedWriteError, match="joined-table inheritance"):
        session.execute(update(model).values(name="b"))
    with pytest.raises(UnrecordedWriteError, match="joined-table inheritance"):
        session.query(model).delete()
    with pytest.raises(UnrecordedWriteError, match="joined-table inheritance"):
        session.execute(insert(model), [{"name": "c"}])


def test_other_key_and_column_names_are_recorded(db, session, models):
    Translation, Gadget = models.Translation, models.Gadget
    session.execute(insert(Translation), [{"locale": "en", "slug": "hi", "text": "Hi"}])
    session.execute(insert(Gadget), [{"display_name": "g"}])
    session.execute(update(Translation).values(text="Hello"))
    session.execute(update(Gadget).values({Gadget.display_name: "h"}))
    session.commit()

    rows = activity_rows(db)
    assert [(row.table_name, row.key, row.version) for row in rows] == [
        ("translation", {"locale": "en", "slug": "hi"}, 0),
        ("gadget", {"gadget_id": rows[1].key["gadget_id"]}, 0),
        ("translation", {"locale": "en", "slug": "hi"}, 1),
        ("gadget", {"gadget_id": rows[1].key["gadget_id"]}, 1),
    ]
    assert rows[2].data["text"] == "Hello"
    assert rows[3].data["display_name"] == "h"


def _unrecordable(models, todo_id):
    """ORM statements on a versioned model that its history cannot record, with the
    reason the refusal gives."""
    Todo, Note = models.Todo, models.Note
    return {
        "returning": (
            update(Todo).values(title="b").returning(Todo.id),
            "asks for RETURNING",
        ),
        "return_defaults": (
            delete(Todo).return_defaults(),
            "asks for RETURNING",
        ),
        "update from another table": (
            update(Todo).where(Todo.id == Note.id).values(title="b"),
            "UPDATE ... FROM",
        ),
        "delete using another table": (
            delete(Todo).where(Todo.title == Note.body),
            "DELETE ... USING",
        ),
        "update of the primary key": (
            update(Todo).where(Todo.id == todo_id).values(id=todo_id + 100),
            "primary key",
        ),
        "update of the version": (update(Todo).values(version=5), "`version`"),
        "ordered values": (
            update(Todo).ordered_values((Todo.title, "b")),
            "ordered_values",
        ),
        "upsert": (
            pg_insert(Todo)
            .values(id=todo_id, title="b")
            .on_conflict_do_update(index_elements=["id"], set_={"title": "b"}),
            "ON CONFLICT DO UPDATE",
        ),
    }


UNRECORDABLE = [
    "returning",
    "return_defaults",
    "update from another table",
    "delete using another table",
    "update of the primary key",
    "update of the version",
    "ordered values",
    "upsert",
]


def test_every_unrecordable_statement_is_listed(models):
    assert sorted(_unrecordable(models, 1)) == sorted(UNRECORDABLE)


@pytest.mark.parametrize("shape", UNRECORDABLE)
def test_an_orm_statement_history_cannot_record_is_refused(db, session, models, todo, shape):
    statement, reason = _unrecordable(models, todo.id)[shape]
    with pytest.raises(UnrecordedWriteError, match=re.escape(reason)):
        session.execute(statement)
    session.rollback()

    assert _todos(session, models) == ["a"]
    assert len(activity_rows(db)) == 1


def test_a_bulk_update_by_primary_key_is_refused(db, session, models, todo):
    with pytest.raises(UnrecordedWriteError, match="list of parameter sets"):
        session.execute(update(models.Todo), [{"id": todo.id, "title": "b"}])


# -- concurrency with flushes of other sessions -------------------------------------------


@pytest.fixture
def other(db, models):
    """A second session: another writer, with a transaction of its own."""
    session = VersionedSession(db)
    yield session
    session.rollback()
    session.close()


def _backend_pid(session):
    return session.execute(text("SELECT pg_backend_pid()")).scalar()


def _wait_until_blocked(db, pid):
    """Return once the backend ``pid`` waits for a lock another one holds."""
    query = text("SELECT cardinality(pg_blocking_pids(:pid)) > 0")
    deadline = time.monotonic() + 60
    with db.engine.connect() as connection:
        while not connection.execute(query, {"pid": pid}).scalar():
            connection.rollback()
            assert time.monotonic() < deadline, "the other session never waited for a lock"


def _in_a_thread(app, work):
    """Run ``work`` in another thread, inside an application context; return its future."""

    def run():
        with app.app_context():
            return work()

    executor = ThreadPoolExecutor(1)
    future = executor.submit(run)
    executor.shutdown(wait=False)
    return future


def test_a_statement_waits_for_a_flush_and_bumps_its_version(app, db, models, other, three):
    Todo = models.Todo
    first = three[0]
    mine = VersionedSession(db)
    theirs = other.get(Todo, first)
    theirs.title = "theirs"
    other.flush()  # locks the row and writes version 1, not committed yet
    pid = _backend_pid(mine)

    def bulk():
        mine.execute(update(Todo).where(Todo.id == first).values(done=True))
        mine.commit()

    statement = _in_a_thread(app, bulk)
    _wait_until_blocked(db, pid)
    other.commit()
    statement.result(timeout=60)
    mine.close()

    assert _history(db)[3:] == [(first, "update", 1, "theirs"), (first, "update", 2, "theirs")]
    assert activity_rows(db)[-1].data["done"] is True
    assert _live_versions(other, Todo)[first] == 2


def test_a_flush_that_read_an_older_version_fails(app, db, models, other, three):
    Todo = models.Todo
    first = three[0]
    session = VersionedSession(db)
    mine = session.get(Todo, first)
    assert mine.version == 0
    other.execute(update(Todo).where(Todo.id == first).values(title="bulk"))
    pid = _backend_pid(session)

    def flush():
        mine.title = "mine"
        session.commit()

    flushing = _in_a_thread(app, flush)
    _wait_until_blocked(db, pid)
    other.commit()
    with pytest.raises(ConcurrentChangeError):
        flushing.result(timeout=60)
    session.rollback()

    assert _history(db)[3:] == [(first, "update", 1, "bulk")]
    # Loaded again, the change goes through as the next version.
    mine = session.get(Todo, first)
    mine.title = "mine"
    session.commit()
    session.close()
    assert _history(db)[3:] == [(first, "update", 1, "bulk"), (first, "update", 2, "mine")]


def test_concurrent_statements_on_the_same_rows_keep_versions_without_gaps(
    app, db, models, other, three
):
    Todo = models.Todo
    mine = VersionedSession(db)
    other.execute(update(Todo).values(title=Todo.title + "1"))
    pid = _backend_pid(mine)

    def bulk():
        mine.execute(update(Todo).values(title=Todo.title + "2"))
        mine.commit()

    statement = _in_a_thread(app, bulk)
    _wait_until_blocked(db, pid)
    other.commit()
    statement.result(timeout=60)
    mine.close()

    for todo_id, title in zip(three, ["one", "two", "three"], strict=True):
        assert [
            (version, stored) for key, _, version, stored in _history(db) if key == todo_id
        ] == [
            (0, title),
            (1, title + "1"),
            (2, title + "12"),
        ]


@pytest.mark.parametrize(
    ("write", "reason"),
    [
        ("core update", "Only statements on the model class itself are recorded"),
        ("alias update", "Only statements on the model class itself are recorded"),
        ("upsert", "Only statements on the model class itself are recorded"),
        ("update in a cte of a select", "Writes inside a CTE"),
        ("update of another table with a cte that deletes", "Writes inside a CTE"),
        ("bulk_update_mappings", "Session.bulk_update_mappings() on the versioned table"),
    ],
)
def test_a_refusal_says_why(db, session, models, todo, write, reason):
    statement, _ = _statements(models, todo)[write]
    with pytest.raises(UnrecordedWriteError, match=re.escape(reason)):
        statement(session)


def test_each_row_of_a_single_table_hierarchy_is_recorded_as_its_class(db, session, models):
    class Vehicle(db.Model, Versioned):
        __tablename__ = "vehicle"
        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str] = mapped_column(String(10))
        name: Mapped[str | None] = mapped_column(String(40))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "vehicle"}

    class Car(Vehicle):
        # A car's name is its owner's business: hidden for cars, tracked for the others.
        __chrononaut_hidden__ = ["name"]
        doors: Mapped[int | None] = mapped_column(nullable=True)
        __mapper_args__ = {"polymorphic_identity": "car"}

    db.create_all()
    session.add_all([Vehicle(name="cart"), Car(name="mini", doors=3)])
    session.commit()

    session.execute(update(Vehicle).values(name=Vehicle.name + "!"))
    session.commit()

    newest = {row.data["kind"]: row for row in activity_rows(db)[2:]}
    assert {kind: row.data for kind, row in newest.items()} == {
        "vehicle": {"id": 1, "kind": "vehicle", "name": "cart!", "version": 1},
        "car": {"id": 2, "kind": "car", "doors": 3, "version": 1},
    }
    assert newest["car"].extra_info == {"hidden_cols_changed": ["name"]}
    assert newest["vehicle"].extra_info == {}
