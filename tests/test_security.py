"""Hidden values stay out of history, logs and errors; history cannot be rewritten."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError, ProgrammingError

from chrononaut import ChrononautException, VersionedSession
from chrononaut.exceptions import ProtectedHistoryError, UnrecordedWriteError
from chrononaut.unsafe import suppress_versioning
from tests.activity import activity_rows

SECRET = "s3cr3t-" + uuid.uuid4().hex
APPEND_ONLY_SQL = Path(__file__).parent.parent / "docs" / "append-only.sql"


def _stored_text(session):
    """Every activity row, all columns, as PostgreSQL prints it."""
    query = text("SELECT chrononaut_activity::text FROM chrononaut_activity")
    return session.execute(query).scalars().all()


def test_hidden_values_never_reach_history_or_the_logs(db, session, models, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    todo = models.Todo(title="a", secret=SECRET)
    user = models.User(name="u", email="u@example.com", password=SECRET)
    session.add_all([todo, user])
    session.commit()
    todo.secret = SECRET + "-2"
    user.password = SECRET + "-2"
    session.commit()
    todo.title = "b"
    session.commit()
    session.delete(todo)
    session.delete(user)
    session.commit()

    stored = _stored_text(session)
    assert len(stored) == 7
    assert all(SECRET not in row for row in stored)
    assert all("secret" not in row.data and "password" not in row.data for row in activity_rows(db))

    # The data statements log the values (as SQLAlchemy does for any column); the
    # activity statements, and anything else, never do.
    statement = ""
    leaked = []
    for record in caplog.records:
        message = record.getMessage()
        if message.split(" ", 1)[0] in {"INSERT", "UPDATE", "DELETE", "SELECT"}:
            statement = message
        elif SECRET in message:
            leaked.append((statement, message))
    assert leaked, "the test must see the values in the data statements' parameters"
    assert all("chrononaut_activity" not in leak for leak, _ in leaked)
    assert all(
        record.name.startswith("sqlalchemy")
        for record in caplog.records
        if SECRET in record.getMessage()
    )


def test_hidden_values_never_reach_error_messages(app, db, session, models):
    todo = models.Todo(title="a")
    session.add(todo)
    session.commit()
    messages = []

    with pytest.raises(UnrecordedWriteError) as refused:
        session.execute(update(models.Todo).values(secret=SECRET))
    messages.append(str(refused.value))
    session.rollback()

    app.config["CHRONONAUT_REQUIRE_EXTRA_CHANGE_INFO"] = True
    todo.secret = SECRET
    with pytest.raises(ChrononautException) as strict:
        session.commit()
    messages.append(str(strict.value))
    session.rollback()
    app.config["CHRONONAUT_REQUIRE_EXTRA_CHANGE_INFO"] = False

    # The activity INSERT itself fails: its parameters are in the error.
    session.execute(text("ALTER TABLE chrononaut_activity ADD CHECK (version < 0) NOT VALID"))
    session.commit()
    todo.secret = SECRET
    todo.title = "b"
    with pytest.raises(IntegrityError) as failed:
        session.commit()
    assert "chrononaut_activity" in str(failed.value)
    messages.append(str(failed.value))
    session.rollback()

    assert all(SECRET not in message for message in messages)


# -- history cannot be rewritten --------------------------------------------------------


@pytest.fixture
def activity(db, session, models):
    session.add(models.Todo(title="a"))
    session.commit()
    return db.activity_cls


def _history_writes(activity):
    table = activity.__table__
    return {
        "orm object": lambda session: _change_loaded_row(session, activity),
        "orm update": lambda session: session.execute(update(activity).values(version=7)),
        "orm delete": lambda session: session.execute(delete(activity)),
        "core update": lambda session: session.execute(update(table).values(version=7)),
        "core delete": lambda session: session.execute(delete(table)),
        "query update": lambda session: session.query(activity).update({"version": 7}),
        "query delete": lambda session: session.query(activity).delete(),
        "bulk_update_mappings": lambda session: session.bulk_update_mappings(
            activity, [{"id": session.scalar(select(activity.id)), "version": 7}]
        ),
        "bulk_save_objects": lambda session: session.bulk_save_objects(
            [_changed(session.scalars(select(activity)).one())]
        ),
    }


def _changed(row):
    row.version = 7
    return row


def _change_loaded_row(session, activity):
    _changed(session.scalars(select(activity)).one())
    session.flush()


HISTORY_WRITES = [
    "orm object",
    "orm update",
    "orm delete",
    "core update",
    "core delete",
    "query update",
    "query delete",
    "bulk_update_mappings",
    "bulk_save_objects",
]


@pytest.mark.parametrize("write", HISTORY_WRITES)
@pytest.mark.parametrize("block", [None, "suppress_versioning"])
def test_history_cannot_be_rewritten(db, session, activity, write, block):
    with pytest.raises(ProtectedHistoryError, match="allow_deleting_history=True"):
        if block is None:
            _history_writes(activity)[write](session)
        else:
            with suppress_versioning():
                _history_writes(activity)[write](session)
    session.rollback()

    assert [row.version for row in activity_rows(db)] == [0]


@pytest.mark.parametrize("write", HISTORY_WRITES)
def test_history_can_be_rewritten_on_purpose(db, session, activity, write):
    with suppress_versioning(allow_deleting_history=True):
        _history_writes(activity)[write](session)
        session.commit()

    assert [row.version for row in activity_rows(db)] in ([], [7])


def test_history_can_be_appended(db, session, activity):
    row = session.execute(select(activity.__table__)).one()._asdict()
    row.pop("id")
    session.execute(insert(activity), [{**row, "version": 1}])
    session.commit()

    assert [row.version for row in activity_rows(db)] == [0, 1]


# -- the append-only recipe in docs/append-only.sql --------------------------------------


@pytest.fixture
def app_role(db, models):
    """A database role for the application, with rights on its tables and the recipe
    applied to the activity table."""
    db.create_all()
    role = f"chrononaut_app_{uuid.uuid4().hex[:8]}"
    recipe = APPEND_ONLY_SQL.read_text().replace("chrononaut_app", role)
    with db.engine.begin() as connection:
        connection.execute(text(f"CREATE ROLE {role}"))
        connection.execute(
            text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        )
        connection.execute(text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}"))
        connection.exec_driver_sql(recipe)
    yield role
    db.session.remove()
    db.engine.dispose()  # the test's pooled connection still has the role set
    with db.engine.begin() as connection:
        connection.execute(text(f"DROP OWNED BY {role}"))
        connection.execute(text(f"DROP ROLE {role}"))


def test_append_only_recipe(db, models, app_role):
    with db.engine.connect() as connection:
        connection.execute(text(f"SET ROLE {app_role}"))
        connection.commit()
        session = VersionedSession(db, bind=connection)
        todo = models.Todo(title="a")
        session.add(todo)
        session.commit()
        todo.title = "b"
        session.commit()
        session.delete(todo)
        session.commit()
        assert session.scalar(select(text("count(*)")).select_from(db.activity_cls)) == 3

        for statement in (
            "UPDATE chrononaut_activity SET version = 7",
            "DELETE FROM chrononaut_activity",
            "TRUNCATE chrononaut_activity",
        ):
            with pytest.raises(ProgrammingError, match="permission denied"):
                connection.execute(text(statement))
            connection.rollback()
        session.close()

    assert [row.version for row in activity_rows(db)] == [0, 1, 2]
