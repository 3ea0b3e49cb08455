"""The safety net: database triggers record the writes that bypass the session, in
the session's snapshot format, each change exactly once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text

from chrononaut import acting_as
from chrononaut.capture.triggers import AFTER_TRIGGER, BEFORE_TRIGGER, send_change_context
from chrononaut.exceptions import ChrononautException, InvalidArgumentError
from chrononaut.unsafe import suppress_versioning
from tests.models import Priority

NETTED = ("Todo", "User", "Country", "Gadget")
DATABASE = {"captured_by": "database", "database_user": "postgres"}
NOBODY = {"user_id": None, "remote_addr": None}


@pytest.fixture
def net(app: Any, db: Any, models: Any) -> Any:
    """The safety net on the tables of :data:`NETTED`."""
    app.config["CHRONONAUT_SAFETY_NET"] = True
    db.install_safety_net(*(getattr(models, name) for name in NETTED))
    return models


def activity(db: Any, table: str) -> list[Any]:
    """Every activity row of ``table``, in the order written."""
    row_class = db.activity_cls
    return list(
        db.session.scalars(
            select(row_class).where(row_class.table_name == table).order_by(row_class.id)
        )
    )


def summary(rows: list[Any]) -> list[tuple[str | None, int, dict[str, Any]]]:
    return [(row.operation, row.version, row.data) for row in rows]


def test_sql_text_writes_are_recorded_with_versions_and_operations(db, net, session):
    session.execute(
        text("INSERT INTO todo (id, title, secret, starred) VALUES (7, 'a', 's', false)")
    )
    session.execute(text("UPDATE todo SET title = 'b' WHERE id = 7"))
    session.commit()
    todo = session.get(net.Todo, 7)
    assert todo.version == 1
    session.execute(text("DELETE FROM todo WHERE id = 7"))
    session.commit()

    rows = activity(db, "todo")
    empty = {"text": None, "done": None, "priority": None, "due_at": None}
    assert summary(rows) == [
        ("insert", 0, {"id": 7, "title": "a", **empty, "version": 0}),
        ("update", 1, {"id": 7, "title": "b", **empty, "version": 1}),
        ("delete", 2, {"id": 7, "title": "b", **empty, "version": 2}),
    ]
    assert [row.key for row in rows] == [{"id": 7}] * 3
    assert [row.user_info for row in rows] == [{**NOBODY, **DATABASE}] * 3
    # The secret was set by the insert: named, never stored.
    assert [row.extra_info for row in rows] == [{"hidden_cols_changed": ["secret"]}, {}, {}]
    assert len({row.transaction_id for row in rows}) == 2


def test_orm_writes_are_recorded_once_by_the_session(db, net, session):
    todo = net.Todo(title="a", secret="s")
    session.add(todo)
    session.commit()
    todo.title = "b"
    session.commit()
    session.delete(todo)
    session.commit()

    rows = activity(db, "todo")
    assert [(row.operation, row.version) for row in rows] == [
        ("insert", 0),
        ("update", 1),
        ("delete", 2),
    ]
    assert all("captured_by" not in row.user_info for row in rows)


def test_orm_flush_and_sql_text_in_one_transaction_are_recorded_once_each(db, net, session):
    todo = net.Todo(title="orm")
    session.add(todo)
    session.flush()
    session.execute(text("UPDATE todo SET title = 'sql' WHERE id = :id"), {"id": todo.id})
    session.refresh(todo)
    todo.title = "orm again"
    session.flush()
    session.connection().execute(
        text("UPDATE todo SET title = 'connection' WHERE id = :id"), {"id": todo.id}
    )
    session.commit()

    rows = activity(db, "todo")
    assert [(row.version, row.data["title"], "captured_by" in row.user_info) for row in rows] == [
        (0, "orm", False),
        (1, "sql", True),
        (2, "orm again", False),
        (3, "connection", True),
    ]
    assert session.get(net.Todo, todo.id).version == 3
    assert len({row.transaction_id for row in rows}) == 1


def test_a_rolled_back_transaction_records_nothing(db, net, session):
    session.execute(text("INSERT INTO todo (id, title) VALUES (1, 'a')"))
    session.rollback()
    assert activity(db, "todo") == []


def test_change_context_of_the_application_is_recorded(db, net, session):
    session.execute(text("INSERT INTO todo (id, title) VALUES (1, 'a')"))
    with acting_as("billing-job", rationale="fix titles", ticket="OPS-1"):
        session.execute(text("UPDATE todo SET title = 'b' WHERE id = 1"))
    session.commit()

    rows = activity(db, "todo")
    assert [row.user_info for row in rows] == [
        {**NOBODY, **DATABASE},
        {"user_id": "billing-job", "remote_addr": None, **DATABASE},
    ]
    assert [row.extra_info for row in rows] == [{}, {"rationale": "fix titles", "ticket": "OPS-1"}]


def test_a_separate_connection_is_recorded(db, net, session):
    with db.engine.begin() as connection:
        connection.execute(text("INSERT INTO todo (id, title) VALUES (1, 'a')"))
    with acting_as("psql-like", rationale="by hand"), db.engine.begin() as connection:
        send_change_context(connection)
        connection.execute(text("UPDATE todo SET title = 'b' WHERE id = 1"))

    rows = activity(db, "todo")
    assert [(row.operation, row.user_info, row.extra_info) for row in rows] == [
        ("insert", {**NOBODY, **DATABASE}, {}),
        (
            "update",
            {"user_id": "psql-like", "remote_addr": None, **DATABASE},
            {"rationale": "by hand"},
        ),
    ]


def test_hidden_and_untracked_columns_through_sql_text(db, net, session):
    session.add(net.Todo(id=1, title="a", secret="first", starred=False))
    session.commit()
    session.execute(text("UPDATE todo SET starred = true WHERE id = 1"))
    session.execute(text("UPDATE todo SET title = title WHERE id = 1"))
    session.commit()
    assert len(activity(db, "todo")) == 1
    assert session.get(net.Todo, 1).version == 0

    session.execute(text("UPDATE todo SET secret = 'second' WHERE id = 1"))
    session.commit()
    rows = activity(db, "todo")
    assert (rows[-1].version, rows[-1].extra_info) == (1, {"hidden_cols_changed": ["secret"]})
    assert "secret" not in rows[-1].data
    stored = db.session.execute(text("SELECT data::text, extra_info::text FROM chrononaut_activity"))
    assert not any("first" in part or "second" in part for row in stored for part in row)


def test_suppressed_versioning_records_nothing_through_sql_text(db, net, session):
    with suppress_versioning():
        session.execute(text("INSERT INTO todo (id, title) VALUES (1, 'a')"))
        session.add(net.Todo(id=2, title="b"))
        session.commit()
    session.execute(text("UPDATE todo SET title = 'c' WHERE id = 1"))
    session.commit()
    assert summary(activity(db, "todo"))[0][:2] == ("update", 1)
    assert len(activity(db, "todo")) == 1


def test_attribute_and_column_names_differ(db, net, session):
    session.execute(text('INSERT INTO gadget (id, "DisplayName") VALUES (3, \'lamp\')'))
    session.execute(text("INSERT INTO country (code, name) VALUES ('NL', 'Netherlands')"))
    session.commit()
    gadget = session.get(net.Gadget, 3)
    assert [snapshot.display_name for snapshot in gadget.versions()] == ["lamp"]
    assert activity(db, "gadget")[0].key == {"gadget_id": 3}
    assert activity(db, "country")[0].key == {"code": "NL"}


def test_models_not_opted_in_are_untouched(db, net, session):
    session.execute(text("INSERT INTO author (id, name) VALUES (1, 'a')"))
    session.commit()
    assert activity(db, "author") == []
    assert triggers_of(session, "author") == []
    assert triggers_of(session, "todo") == sorted([AFTER_TRIGGER, BEFORE_TRIGGER])


def triggers_of(session: Any, table: str) -> list[str]:
    return list(
        session.scalars(
            text(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(:table) "
                "AND NOT tgisinternal ORDER BY tgname"
            ),
            {"table": table},
        )
    )


def test_install_remove_and_reinstall_are_idempotent(app, db, models, session):
    app.config["CHRONONAUT_SAFETY_NET"] = True
    db.install_safety_net(models.Todo)
    db.install_safety_net(models.Todo)
    assert triggers_of(session, "todo") == sorted([AFTER_TRIGGER, BEFORE_TRIGGER])
    session.commit()
    db.remove_safety_net(models.Todo)
    db.remove_safety_net(models.Todo)
    assert triggers_of(session, "todo") == []
    session.execute(text("INSERT INTO todo (id, title) VALUES (1, 'unseen')"))
    session.commit()
    assert activity(db, "todo") == []
    db.install_safety_net(models.Todo)
    session.execute(text("UPDATE todo SET title = 'seen' WHERE id = 1"))
    session.commit()
    assert summary(activity(db, "todo"))[0][:2] == ("update", 1)


def test_install_refuses_what_it_cannot_record(app, db, models):
    with pytest.raises(ChrononautException, match="CHRONONAUT_SAFETY_NET"):
        db.install_safety_net(models.Todo)
    app.config["CHRONONAUT_SAFETY_NET"] = True
    with pytest.raises(ChrononautException, match="inheritance"):
        db.install_safety_net(models.Dog)
    with pytest.raises(InvalidArgumentError, match="Versioned models"):
        db.install_safety_net(models.Note)


def test_enum_values_are_stored_like_the_session_stores_them(db, net, session):
    session.execute(text("INSERT INTO todo (id, priority) VALUES (1, 'HIGH')"))
    session.commit()
    todo = session.get(net.Todo, 1)
    assert activity(db, "todo")[0].data["priority"] == "Priority.HIGH"
    assert todo.versions()[0].typed_data()["priority"] is Priority.HIGH
