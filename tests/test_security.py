"""Hidden values stay out of history, logs and errors; history cannot be rewritten."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import MetaData, Table, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
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
        session.execute(update(models.Todo.__table__).values(secret=SECRET))
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


_ACTIVITY_COLUMN_TYPES = {
    "id": sa.BigInteger,
    "table_name": sa.Text,
    "changed": sa.DateTime(timezone=True),
    "version": sa.Integer,
}


def _activity_lightweight(*columns):
    """The activity table built from its name only, as a script that never imported
    the model could."""
    return sa.table(
        "chrononaut_activity",
        *(sa.column(column, _ACTIVITY_COLUMN_TYPES.get(column, JSONB)) for column in columns),
    )


def _reflected_activity(session):
    return Table("chrononaut_activity", MetaData(), autoload_with=session.connection())


def _in_a_cte(dml):
    cte = dml.cte("written")
    return select(cte.c.id)


def _upsert(table, session, **values):
    """An INSERT of the stored row's own id that turns into an UPDATE of it."""
    row = session.execute(select(table)).one()._asdict()
    return (
        pg_insert(table)
        .values(row)
        .on_conflict_do_update(index_elements=_primary_key(table), set_={"version": 7, **values})
    )


def _primary_key(table):
    """The names of the activity table's key columns: ``id``, and ``changed`` too in
    the partitioned layout, which must have its partition key in every unique index."""
    return [column.name for column in table.primary_key]


def _history_writes(activity):
    """Each way to change or delete stored activity rows: the write, and the versions
    left when it is allowed to run (one row of version 0 is stored before)."""
    table = activity.__table__
    lightweight = _activity_lightweight("id", "table_name", "changed", "version")
    changed, deleted = [7], []
    return {
        "orm object": (lambda session: _change_loaded_row(session, activity), changed),
        "orm update": (
            lambda session: session.execute(update(activity).values(version=7)),
            changed,
        ),
        "orm delete": (lambda session: session.execute(delete(activity)), deleted),
        "core update": (lambda session: session.execute(update(table).values(version=7)), changed),
        "core delete": (lambda session: session.execute(delete(table)), deleted),
        "query update": (lambda session: session.query(activity).update({"version": 7}), changed),
        "query delete": (lambda session: session.query(activity).delete(), deleted),
        "bulk_update_mappings": (
            lambda session: session.bulk_update_mappings(
                activity, [{"id": session.scalar(select(activity.id)), "version": 7}]
            ),
            changed,
        ),
        "bulk_save_objects": (
            lambda session: session.bulk_save_objects(
                [_changed(session.scalars(select(activity)).one())]
            ),
            changed,
        ),
        "lightweight table update": (
            lambda session: session.execute(update(lightweight).values(version=7)),
            changed,
        ),
        "lightweight table delete": (
            lambda session: session.execute(delete(lightweight)),
            deleted,
        ),
        "reflected table update": (
            lambda session: session.execute(update(_reflected_activity(session)).values(version=7)),
            changed,
        ),
        "alias delete": (lambda session: session.execute(delete(table.alias())), deleted),
        "delete in a cte of a select": (
            lambda session: session.execute(_in_a_cte(delete(table).returning(table.c.id))),
            deleted,
        ),
        "lightweight update in a cte added to a select": (
            lambda session: session.execute(
                select(sa.literal(1)).add_cte(update(lightweight).values(version=7).cte())
            ),
            changed,
        ),
        "delete in a cte of an append": (
            lambda session: session.execute(
                insert(table)
                .from_select(
                    ["table_name", "changed", "version"],
                    select(table.c.table_name, table.c.changed, sa.literal(9)).where(sa.false()),
                )
                .add_cte(delete(lightweight).returning(lightweight.c.id).cte())
            ),
            deleted,
        ),
        "upsert of a stored id": (
            lambda session: session.execute(_upsert(table, session)),
            changed,
        ),
        "upsert of a stored id into the lightweight table": (
            lambda session: session.execute(
                pg_insert(lightweight)
                .values(
                    id=session.scalar(select(table.c.id)),
                    table_name="todo",
                    changed=session.scalar(select(table.c.changed)),
                    version=1,
                )
                .on_conflict_do_update(index_elements=_primary_key(table), set_={"version": 7})
            ),
            changed,
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
    "lightweight table update",
    "lightweight table delete",
    "reflected table update",
    "alias delete",
    "delete in a cte of a select",
    "lightweight update in a cte added to a select",
    "delete in a cte of an append",
    "upsert of a stored id",
    "upsert of a stored id into the lightweight table",
]


def test_every_history_write_is_listed(db):
    assert sorted(_history_writes(db.activity_cls)) == sorted(HISTORY_WRITES)


@pytest.mark.parametrize("write", HISTORY_WRITES)
@pytest.mark.parametrize("block", [None, "suppress_versioning"])
def test_history_cannot_be_rewritten(db, session, activity, write, block):
    statement, _ = _history_writes(activity)[write]
    with pytest.raises(ProtectedHistoryError, match="allow_deleting_history=True"):
        if block is None:
            statement(session)
        else:
            with suppress_versioning():
                statement(session)
    session.rollback()

    assert [row.version for row in activity_rows(db)] == [0]


@pytest.mark.parametrize("write", HISTORY_WRITES)
def test_history_can_be_rewritten_on_purpose(db, session, activity, write):
    statement, versions = _history_writes(activity)[write]
    with suppress_versioning(allow_deleting_history=True):
        statement(session)
        session.commit()

    assert [row.version for row in activity_rows(db)] == versions


def _stored_row(session, activity):
    row = session.execute(select(activity.__table__)).one()._asdict()
    row.pop("id")
    return row


APPENDS = {
    "orm insert": lambda session, activity: session.execute(
        insert(activity), [{**_stored_row(session, activity), "version": 1}]
    ),
    "core insert": lambda session, activity: session.execute(
        insert(activity.__table__).values({**_stored_row(session, activity), "version": 1})
    ),
    "lightweight table insert": lambda session, activity: session.execute(
        insert(_activity_lightweight("table_name", "changed", "version", "key", "data")).values(
            table_name="todo",
            changed=sa.func.now(),
            version=1,
            key={"id": 1},
            data={"title": "a", "version": 1},
        )
    ),
    "insert from a select": lambda session, activity: session.execute(
        insert(activity.__table__).from_select(
            ["table_name", "changed", "version", "key", "data"],
            select(
                activity.table_name,
                activity.changed,
                activity.version + 1,
                activity.key,
                activity.data,
            ),
        )
    ),
    "insert that does nothing on a conflict": lambda session, activity: session.execute(
        pg_insert(activity.__table__)
        .values({**_stored_row(session, activity), "version": 1})
        .on_conflict_do_nothing()
    ),
    "orm add": lambda session, activity: session.add(
        activity(**{**_stored_row(session, activity), "version": 1})
    ),
}


@pytest.mark.parametrize("append", sorted(APPENDS))
def test_history_can_be_appended(db, session, activity, append):
    APPENDS[append](session, activity)
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
