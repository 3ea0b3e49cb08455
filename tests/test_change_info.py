"""Who changed a row and why: ``user_info``, ``extra_info``, the change-info helpers,
strict mode and the ``RecordChanges`` mixin."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from flask_login import AnonymousUserMixin, LoginManager, UserMixin, login_user
from sqlalchemy import exc, func, insert, select

from chrononaut import (
    ChrononautException,
    Versioned,
    VersionedSQLAlchemy,
    acting_as,
    append_change_info,
    extra_change_info,
    rationale,
)
from chrononaut.exceptions import InvalidArgumentError
from chrononaut.views import history_blueprint
from tests.activity import activity_rows, rows_of

NO_USER = {"user_id": None, "remote_addr": None}
STRICT = "CHRONONAUT_REQUIRE_EXTRA_CHANGE_INFO"
CHANGE_INFO_FUNC = "CHRONONAUT_EXTRA_CHANGE_INFO_FUNC"
USER_ID_ATTRIBUTE = "CHRONONAUT_USER_ID_ATTRIBUTE"


def add(session: Any, obj: Any) -> Any:
    session.add(obj)
    session.commit()
    return obj


class LoginUser(UserMixin):
    """A Flask-Login user whose id is not its email, so the two cannot be confused."""

    def __init__(self, user_id: str, email: str) -> None:
        self.id = user_id
        self.email = email


class AnonymousWithEmail(AnonymousUserMixin):
    """An anonymous user that still has an email: it must not be recorded."""

    email = "anonymous@example.com"


def install_login_manager(app: Flask) -> dict[str, LoginUser]:
    users = {"7": LoginUser("7", "ada@example.com"), "8": LoginUser("8", "bob@example.com")}
    login_manager = LoginManager(app)
    login_manager.user_loader(users.get)
    return users


# -- user_info ---------------------------------------------------------------------------


def test_user_info_is_empty_outside_a_request(db, session, models):
    todo = add(session, models.Todo(title="a"))
    todo.title = "b"
    session.commit()
    session.delete(todo)
    session.commit()

    rows = activity_rows(db)
    assert [row.version for row in rows] == [0, 1, 2]
    assert [row.user_info for row in rows] == [NO_USER] * 3


def test_user_info_records_the_remote_address_of_the_request(app, db, session, models):
    with app.test_request_context(environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        todo = add(session, models.Todo(title="a"))
    todo.title = "b"
    session.commit()

    snapshots = todo.versions()
    assert snapshots[0].chrononaut_meta["user_info"] == {
        "user_id": None,
        "remote_addr": "10.1.2.3",
    }
    # Captured at each flush: the next change, made outside the request, has none.
    assert snapshots[1].chrononaut_meta["user_info"] == NO_USER


def test_user_info_records_the_email_of_the_logged_in_user(app, db, session, models):
    users = install_login_manager(app)
    with app.test_request_context(environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        assert login_user(users["7"])
        todo = add(session, models.Todo(title="a"))

    assert todo.versions()[0].chrononaut_meta["user_info"] == {
        "user_id": "ada@example.com",
        "remote_addr": "10.1.2.3",
    }


def test_user_info_through_real_requests_uses_login_and_user_loader(app, db, session, models):
    users = install_login_manager(app)

    @app.post("/login/<user_id>")
    def log_in_and_create(user_id: str) -> dict[str, Any]:
        login_user(users[user_id])
        todo = models.Todo(title="made while logging in")
        db.session.add(todo)
        db.session.commit()
        return {"id": todo.id}

    @app.post("/todos/<int:todo_id>/done")
    def finish(todo_id: int) -> dict[str, Any]:
        todo = db.session.get(models.Todo, todo_id)
        todo.done = True
        db.session.commit()
        return {"version": todo.version}

    client = app.test_client()

    def make_requests() -> int:
        # Run in an empty context so that each request pushes (and pops) an app context
        # of its own: the second request must find its user through the session cookie
        # and the user_loader, not through the first request's `g`.
        created = client.post("/login/8", environ_base={"REMOTE_ADDR": "198.51.100.7"})
        assert created.status_code == 200
        todo_id = created.json["id"]
        finished = client.post(f"/todos/{todo_id}/done", environ_base={"REMOTE_ADDR": "::1"})
        assert finished.status_code == 200
        assert finished.json == {"version": 1}
        return todo_id

    todo_id = contextvars.Context().run(make_requests)

    rows = rows_of(db, "todo", id=todo_id)
    assert [row.version for row in rows] == [0, 1]
    assert rows[0].user_info == {"user_id": "bob@example.com", "remote_addr": "198.51.100.7"}
    assert rows[1].user_info == {"user_id": "bob@example.com", "remote_addr": "::1"}
    assert rows[1].data["done"] is True


def test_user_info_of_an_anonymous_user_has_no_user_id(app, db, session, models):
    install_login_manager(app)
    app.login_manager.anonymous_user = AnonymousWithEmail
    with app.test_request_context(environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        todo = add(session, models.Todo(title="a"))

    assert todo.versions()[0].chrononaut_meta["user_info"] == {
        "user_id": None,
        "remote_addr": "10.1.2.3",
    }


def test_user_info_without_a_login_manager_has_no_user_id(app, db, session, models):
    assert not hasattr(app, "login_manager")
    with app.test_request_context(environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        todo = add(session, models.Todo(title="a"))

    assert todo.versions()[0].chrononaut_meta["user_info"] == {
        "user_id": None,
        "remote_addr": "10.1.2.3",
    }


class BadgeUser(UserMixin):
    """A Flask-Login user with no email: it is known by its id and its badge."""

    def __init__(self, user_id: str, badge: Any) -> None:
        self.id = user_id
        self.badge = badge


def _log_in_and_add(app: Flask, session: Any, user: Any, obj: Any) -> Any:
    with app.test_request_context(environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        assert login_user(user)
        return add(session, obj)


def _user_ids(todo: Any) -> list[Any]:
    return [snapshot.chrononaut_user_info["user_id"] for snapshot in todo.versions()]


@pytest.mark.parametrize(
    "attribute, expected",
    [("email", "ada@example.com"), ("id", "7")],
)
def test_user_id_attribute_names_what_identifies_the_user(
    app, db, session, models, attribute, expected
):
    users = install_login_manager(app)
    app.config[USER_ID_ATTRIBUTE] = attribute
    todo = _log_in_and_add(app, session, users["7"], models.Todo(title="a"))

    assert todo.versions()[0].chrononaut_user_info == {
        "user_id": expected,
        "remote_addr": "10.1.2.3",
    }


def test_a_user_id_json_cannot_hold_is_stored_as_text(app, db, session, models):
    badge = uuid.UUID("12345678-1234-5678-1234-567812345678")
    user = BadgeUser("7", badge)
    LoginManager(app).user_loader({"7": user}.get)
    app.config[USER_ID_ATTRIBUTE] = "badge"
    todo = _log_in_and_add(app, session, user, models.Todo(title="a"))

    assert _user_ids(todo) == [str(badge)]


def _missing_attribute_warnings(caplog: Any) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "chrononaut.capture.change_info" and record.levelno == logging.WARNING
    ]


def test_a_user_without_the_attribute_is_recorded_without_id_and_logged_once_per_app(
    app, db, session, models, caplog, database_url
):
    caplog.set_level(logging.WARNING, logger="chrononaut.capture.change_info")
    user = BadgeUser("7", "B-1")
    LoginManager(app).user_loader({"7": user}.get)
    todo = _log_in_and_add(app, session, user, models.Todo(title="a"))
    with app.test_request_context(), acting_as("job", rationale="r"):
        assert login_user(user)
        todo.title = "b"
        session.commit()

    # The user is known to be someone: the job's name is not put in their place.
    assert _user_ids(todo) == [None, None]
    assert _missing_attribute_warnings(caplog) == [
        "The logged-in BadgeUser has no attribute 'email', so changes are recorded with "
        "user_id None. Set CHRONONAUT_USER_ID_ATTRIBUTE to the attribute that identifies "
        "your users. (Logged once per application.)"
    ]

    other_app = Flask("other")
    other_app.config.update(
        SECRET_KEY="other",
        SQLALCHEMY_DATABASE_URI=database_url.render_as_string(hide_password=False),
    )
    db.init_app(other_app)
    LoginManager(other_app).user_loader({"7": user}.get)
    with other_app.app_context():
        try:
            todo_of_other_app = _log_in_and_add(other_app, db.session, user, models.Todo())
            assert _user_ids(todo_of_other_app) == [None]
        finally:
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()
    assert len(_missing_attribute_warnings(caplog)) == 2


@pytest.mark.parametrize("setting", [None, "", "profile.email", 5])
def test_a_bad_user_id_attribute_fails_the_flush_and_writes_nothing(
    app, db, session, models, setting
):
    users = install_login_manager(app)
    app.config[USER_ID_ATTRIBUTE] = setting
    with app.test_request_context():
        assert login_user(users["7"])
        session.add(models.Todo(title="a"))
        with pytest.raises(InvalidArgumentError, match=f"^{USER_ID_ATTRIBUTE} must name"):
            session.commit()
        session.rollback()

    assert session.scalar(select(func.count()).select_from(models.Todo)) == 0
    assert activity_rows(db) == []


def test_overriding_fetch_user_id_and_remote_addr(app, db, session, models):
    class ImportedRecord(db.Model, Versioned):
        __tablename__ = "imported_record"
        id = db.Column(db.Integer, primary_key=True)
        name = db.Column(db.String(40))

        @classmethod
        def _fetch_current_user_id(cls) -> str:
            return "importer@example.com"

        @classmethod
        def _fetch_remote_addr(cls) -> str:
            return "203.0.113.9"

    db.create_all()
    with app.test_request_context(environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        todo = models.Todo(title="a")
        record = ImportedRecord(name="r")
        session.add_all([todo, record])
        session.commit()

    # Each model answers for itself, even within one flush.
    assert record.versions()[0].chrononaut_meta["user_info"] == {
        "user_id": "importer@example.com",
        "remote_addr": "203.0.113.9",
    }
    assert todo.versions()[0].chrononaut_meta["user_info"] == {
        "user_id": None,
        "remote_addr": "10.1.2.3",
    }


def test_overriding_capture_user_info(app, db, session, models):
    class ServiceRecord(db.Model, Versioned):
        __tablename__ = "service_record"
        id = db.Column(db.Integer, primary_key=True)
        name = db.Column(db.String(40))

        @classmethod
        def _capture_user_info(cls) -> dict[str, Any]:
            return {"service": "nightly-import", "host": "worker-3"}

    db.create_all()
    with app.test_request_context(environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        record = add(session, ServiceRecord(name="r"))
    record.name = "s"
    session.commit()

    assert [snap.chrononaut_meta["user_info"] for snap in record.versions()] == [
        {"service": "nightly-import", "host": "worker-3"}
    ] * 2


def test_overriding_get_custom_change_info(app, db, session, models):
    app.config[CHANGE_INFO_FUNC] = lambda: {"source": "config"}

    class ScriptedRecord(db.Model, Versioned):
        __tablename__ = "scripted_record"
        id = db.Column(db.Integer, primary_key=True)
        name = db.Column(db.String(40))

        @classmethod
        def _get_custom_change_info(cls) -> dict[str, Any]:
            return {"source": "cli", "script": "fix_names.py"}

    db.create_all()
    record = ScriptedRecord(name="r")
    todo = models.Todo(title="a")
    session.add_all([record, todo])
    session.commit()

    assert record.versions()[0].chrononaut_meta["extra_info"] == {
        "source": "cli",
        "script": "fix_names.py",
    }
    assert todo.versions()[0].chrononaut_meta["extra_info"] == {"source": "config"}


# -- extra_info and CHRONONAUT_EXTRA_CHANGE_INFO_FUNC ---------------------------------------


def test_extra_info_is_empty_when_there_is_nothing_to_record(db, session, models):
    todo = add(session, models.Todo(title="a"))
    todo.title = "b"
    session.commit()
    session.delete(todo)
    session.commit()

    rows = activity_rows(db)
    assert len(rows) == 3
    assert [row.extra_info for row in rows] == [{}, {}, {}]


def test_extra_change_info_func_is_called_at_each_flush(app, db, session, models):
    request_ids = iter(["req-1", "req-2"])
    app.config[CHANGE_INFO_FUNC] = lambda: {"request_id": next(request_ids)}

    todo = add(session, models.Todo(title="a"))
    todo.title = "b"
    session.commit()

    assert [snap.chrononaut_meta["extra_info"] for snap in todo.versions()] == [
        {"request_id": "req-1"},
        {"request_id": "req-2"},
    ]


def test_extra_info_sources_override_each_other_in_order(app, db, session, models):
    app.config[CHANGE_INFO_FUNC] = lambda: {"source": "func", "ticket": "func", "step": "func"}
    todo = add(session, models.Todo(title="a"))
    assert todo.versions()[0].chrononaut_meta["extra_info"] == {
        "source": "func",
        "ticket": "func",
        "step": "func",
    }

    with extra_change_info(ticket="block", step="block"):
        append_change_info(todo, step="appended")
        todo.title = "b"
        todo.secret = "changed"
        session.commit()

    assert todo.versions()[1].chrononaut_meta["extra_info"] == {
        "source": "func",
        "ticket": "block",
        "step": "appended",
        "hidden_cols_changed": ["secret"],
    }


# -- hidden_cols_changed is Chrononaut's own ------------------------------------------------

RESERVED = "`hidden_cols_changed` is recorded by Chrononaut itself"


@pytest.mark.parametrize("helper", ["extra_change_info", "append_change_info"])
def test_helpers_refuse_hidden_cols_changed(db, session, models, helper):
    todo = add(session, models.Todo(title="a"))

    with pytest.raises(ChrononautException, match=f"^{re.escape(RESERVED)}") as refused:
        if helper == "extra_change_info":
            with extra_change_info(ticket="T-1", hidden_cols_changed=["title"]):
                pass
        else:
            append_change_info(todo, hidden_cols_changed=["title"])
    assert isinstance(refused.value, ValueError)

    todo.title = "b"
    session.commit()
    assert [snap.chrononaut_meta["extra_info"] for snap in todo.versions()] == [{}, {}]


def _custom_change_info_source(app, db, source):
    """A versioned model whose custom change info holds ``hidden_cols_changed``, from
    the configured function or from its own override."""
    forged = {"ticket": "T-1", "hidden_cols_changed": ["name"]}
    namespace = {
        "__tablename__": "forged",
        "id": db.Column(db.Integer, primary_key=True),
        "name": db.Column(db.Text),
    }
    if source == "config":
        app.config[CHANGE_INFO_FUNC] = lambda: forged
    else:
        namespace["_get_custom_change_info"] = classmethod(lambda cls: forged)
    model = type("Forged", (db.Model, Versioned), namespace)
    db.create_all()
    return model


@pytest.mark.parametrize("source", ["config", "override"])
def test_custom_change_info_may_not_hold_hidden_cols_changed(app, db, source):
    model = _custom_change_info_source(app, db, source)
    db.session.add(model(name="n"))

    with pytest.raises(ChrononautException, match=f"^{re.escape(RESERVED)}"):
        db.session.commit()
    db.session.rollback()

    assert db.session.scalars(select(model)).all() == []
    assert activity_rows(db) == []


FORGED = {
    "a string": ("secret", []),
    "a dict": ({"secret": True}, []),
    "a number": (5, []),
    "a list with other items": (["secret", 3, None, ["secret"]], ["secret"]),
    "a stored column": (["title"], []),
    "an unknown name": (["no_such_column"], []),
    "an untracked column": (["starred"], []),
    "the primary key": (["id"], []),
    "the version": (["version"], []),
}


@pytest.fixture
def forged_row(db, session, models, request):
    """A todo whose second, unchanged snapshot was written by another program with
    ``request.param`` under ``hidden_cols_changed``."""
    todo = add(session, models.Todo(title="a", secret="s0"))
    stored = session.execute(select(db.activity_cls.__table__)).one()._asdict()
    stored.pop("id")
    session.execute(
        insert(db.activity_cls),
        [
            {
                **stored,
                "version": 1,
                "changed": stored["changed"] + timedelta(seconds=1),
                "data": {**stored["data"], "version": 1},
                "extra_info": {"hidden_cols_changed": FORGED[request.param][0]},
            }
        ],
    )
    session.commit()
    return todo, stored["changed"], FORGED[request.param][1]


@pytest.mark.parametrize("forged_row", sorted(FORGED), indirect=True)
def test_old_rows_with_other_hidden_cols_changed_are_read_safely(app, session, forged_row):
    todo, created, hidden = forged_row
    first, second = todo.versions()

    assert todo.diff(first, second) == {}
    assert todo.diff(first, second, include_hidden=True) == {name: (None, "s0") for name in hidden}
    assert todo.has_changed_since(created) is bool(hidden)
    app.register_blueprint(history_blueprint(lambda: True), url_prefix="/history")
    client = app.test_client()
    assert client.get(f"/history/objects/Todo?key={todo.id}").status_code == 200
    assert client.get("/history/activity").status_code == 200
    result = app.test_cli_runner().invoke(args=["chrononaut", "history", "Todo", str(todo.id)])
    assert result.exit_code == 0, result.output


# -- extra_change_info and rationale --------------------------------------------------------


def test_extra_change_info_records_commits_inside_the_block_only(db, session, models):
    todo = add(session, models.Todo(title="a"))
    with extra_change_info(reason="cleanup", ticket=42):
        todo.title = "b"
        session.commit()
        other = add(session, models.Todo(title="other"))
    todo.title = "c"
    session.commit()

    assert [snap.chrononaut_meta["extra_info"] for snap in todo.versions()] == [
        {},
        {"reason": "cleanup", "ticket": 42},
        {},
    ]
    assert other.versions()[0].chrononaut_meta["extra_info"] == {
        "reason": "cleanup",
        "ticket": 42,
    }


def test_extra_change_info_blocks_nest_and_restore(db, session, models):
    todo = add(session, models.Todo(title="v0"))

    def change(title: str) -> None:
        todo.title = title
        session.commit()

    with extra_change_info(reason="outer", ticket=1):
        change("v1")
        with extra_change_info(ticket=2, step="inner"):
            change("v2")
            with rationale("innermost"):
                change("v3")
            change("v4")
        change("v5")
    change("v6")

    assert [snap.chrononaut_meta["extra_info"] for snap in todo.versions()] == [
        {},
        {"reason": "outer", "ticket": 1},
        {"reason": "outer", "ticket": 2, "step": "inner"},
        {"reason": "outer", "ticket": 2, "step": "inner", "rationale": "innermost"},
        {"reason": "outer", "ticket": 2, "step": "inner"},
        {"reason": "outer", "ticket": 1},
        {},
    ]


def test_extra_change_info_is_cleared_when_the_block_raises(db, session, models):
    todo = add(session, models.Todo(title="a"))
    with pytest.raises(RuntimeError, match="boom"), extra_change_info(reason="doomed"):
        raise RuntimeError("boom")
    todo.title = "b"
    session.commit()

    assert todo.versions()[1].chrononaut_meta["extra_info"] == {}


def test_extra_change_info_needs_an_app_context(app):
    def enter_block() -> None:
        with extra_change_info(reason="x"):
            pass  # pragma: no cover - never reached

    # A fresh contextvars context has no Flask application context.
    with pytest.raises(ChrononautException, match="application context"):
        contextvars.Context().run(enter_block)


def test_rationale_needs_an_app_context(app):
    def enter_block() -> None:
        with rationale("x"):
            pass  # pragma: no cover - never reached

    with pytest.raises(ChrononautException, match="application context"):
        contextvars.Context().run(enter_block)


def test_rationale_records_its_text(db, session, models):
    with rationale("Customer asked for a new title"):
        todo = add(session, models.Todo(title="a"))
        todo.title = "b"
        session.commit()
        session.delete(todo)
        session.commit()

    rows = activity_rows(db)
    assert [row.version for row in rows] == [0, 1, 2]
    assert [row.extra_info for row in rows] == [{"rationale": "Customer asked for a new title"}] * 3


# -- append_change_info ---------------------------------------------------------------------


def test_append_change_info_attaches_to_one_object_only(db, session, models):
    first = models.Todo(title="first")
    second = models.Todo(title="second")
    session.add_all([first, second])
    session.commit()

    with append_change_info(first, reviewed_by="carol"):
        first.title = "first, edited"
        second.title = "second, edited"
        session.commit()

    assert first.versions()[1].chrononaut_meta["extra_info"] == {"reviewed_by": "carol"}
    assert second.versions()[1].chrononaut_meta["extra_info"] == {}


def test_append_change_info_commit_may_come_after_the_block(db, session, models):
    todo = add(session, models.Todo(title="a"))
    with append_change_info(todo, source="form"):
        todo.title = "b"
    session.commit()

    assert todo.versions()[1].chrononaut_meta["extra_info"] == {"source": "form"}


def test_append_change_info_works_without_with(db, session, models):
    todo = models.Todo(title="a")
    append_change_info(todo, source="import", row=17)
    session.add(todo)
    session.commit()

    assert todo.versions()[0].chrononaut_meta["extra_info"] == {"source": "import", "row": 17}


def test_append_change_info_is_forgotten_after_the_commit_that_recorded_it(db, session, models):
    todo = add(session, models.Todo(title="a"))
    append_change_info(todo, source="form")
    todo.title = "b"
    session.commit()
    todo.title = "c"
    session.commit()

    assert [snap.chrononaut_meta["extra_info"] for snap in todo.versions()] == [
        {},
        {"source": "form"},
        {},
    ]


def _extra_infos(todo: Any) -> list[dict[str, Any]]:
    return [dict(snapshot.chrononaut_extra_info) for snapshot in todo.versions()]


def test_append_change_info_recorded_before_a_rolled_back_savepoint_is_dropped_once(
    db, session, models
):
    todo = add(session, models.Todo(title="a"))
    append_change_info(todo, reason="once")
    todo.title = "b"
    session.flush()  # records the info, in the outer transaction
    savepoint = session.begin_nested()
    session.add(models.Todo(title="rolled back"))
    session.flush()
    savepoint.rollback()
    session.commit()
    todo.title = "c"
    session.commit()

    assert _extra_infos(todo) == [{}, {"reason": "once"}, {}]
    assert len(activity_rows(db)) == 3


def test_append_change_info_recorded_in_a_rolled_back_savepoint_is_kept(db, session, models):
    todo = add(session, models.Todo(title="a"))
    append_change_info(todo, reason="retried")
    savepoint = session.begin_nested()
    todo.title = "b"
    session.flush()  # records the info, then loses it with the savepoint
    savepoint.rollback()
    todo.title = "b2"
    session.commit()
    todo.title = "c"
    session.commit()

    assert _extra_infos(todo) == [{}, {"reason": "retried"}, {}]
    assert [snapshot.title for snapshot in todo.versions()] == ["a", "b2", "c"]


def test_append_change_info_recorded_in_a_released_savepoint_is_dropped_at_commit(
    db, session, models
):
    todo = add(session, models.Todo(title="a"))
    append_change_info(todo, reason="nested")
    with session.begin_nested():
        todo.title = "b"
    with session.begin_nested() as savepoint:
        session.add(models.Todo(title="rolled back"))
        session.flush()
        savepoint.rollback()
    session.commit()
    todo.title = "c"
    session.commit()

    assert _extra_infos(todo) == [{}, {"reason": "nested"}, {}]


def test_append_change_info_rejects_non_versioned_objects(db, session, models):
    note = add(session, models.Note(body="not versioned"))
    with pytest.raises(ChrononautException, match="Versioned"):
        append_change_info(note, reason="x")
    with pytest.raises(ChrononautException, match="Versioned"):
        append_change_info(object(), reason="x")


def test_append_change_info_survives_a_failed_flush(db, session, models):
    add(session, models.User(name="taken", email="taken@example.com"))
    user = add(session, models.User(name="u", email="u@example.com"))

    append_change_info(user, reason="retry me")
    user.email = "taken@example.com"
    with pytest.raises(exc.IntegrityError):
        session.commit()
    session.rollback()

    user.email = "free@example.com"
    session.commit()

    snapshots = user.versions()
    assert [snap.version for snap in snapshots] == [0, 1]
    assert snapshots[1].email == "free@example.com"
    assert snapshots[1].chrononaut_meta["extra_info"] == {"reason": "retry me"}


def test_append_change_info_survives_a_rollback_after_it_was_flushed(db, session, models):
    add(session, models.User(name="taken", email="taken@example.com"))
    todo = add(session, models.Todo(title="a"))

    append_change_info(todo, reason="retry me")
    todo.title = "b"
    session.flush()  # the snapshot carrying the info is written here ...
    session.add(models.User(name="dup", email="taken@example.com"))
    with pytest.raises(exc.IntegrityError):
        session.commit()  # ... and rolled back with the failing commit
    session.rollback()
    assert len(rows_of(db, "todo", id=todo.id)) == 1

    todo.title = "b"
    session.commit()

    snapshots = todo.versions()
    assert [snap.version for snap in snapshots] == [0, 1]
    assert snapshots[1].chrononaut_meta["extra_info"] == {"reason": "retry me"}


def test_append_change_info_survives_a_commit_that_fails_in_the_database(db, session, models):
    class Attachment(db.Model):
        __tablename__ = "attachment"
        id = db.Column(db.Integer, primary_key=True)
        todo_id = db.Column(
            db.Integer, db.ForeignKey("todo.id", deferrable=True, initially="DEFERRED")
        )

    db.create_all()
    todo = add(session, models.Todo(title="a"))

    append_change_info(todo, reason="retry me")
    todo.title = "b"
    session.add(Attachment(todo_id=todo.id + 1000))
    # The flush succeeds; the deferred foreign key fails only at COMMIT.
    with pytest.raises(exc.IntegrityError):
        session.commit()
    session.rollback()
    assert len(rows_of(db, "todo", id=todo.id)) == 1

    todo.title = "b"
    session.commit()

    snapshots = todo.versions()
    assert [snap.version for snap in snapshots] == [0, 1]
    assert snapshots[1].chrononaut_meta["extra_info"] == {"reason": "retry me"}


# -- strict mode ----------------------------------------------------------------------------


def test_config_defaults_are_set(app, db):
    assert app.config[STRICT] is False
    assert app.config[CHANGE_INFO_FUNC] is None
    assert app.config[USER_ID_ATTRIBUTE] == "email"


def test_init_app_sets_config_defaults_without_overriding_them(database_url):
    uri = database_url.render_as_string(hide_password=False)
    defaults_app = Flask("defaults")
    defaults_app.config["SQLALCHEMY_DATABASE_URI"] = uri
    configured_app = Flask("configured")
    configured_app.config["SQLALCHEMY_DATABASE_URI"] = uri
    configured_app.config[STRICT] = True
    configured_app.config[CHANGE_INFO_FUNC] = dict
    configured_app.config[USER_ID_ATTRIBUTE] = "id"

    extension = VersionedSQLAlchemy()
    extension.init_app(defaults_app)
    extension.init_app(configured_app)
    try:
        assert defaults_app.config[STRICT] is False
        assert defaults_app.config[CHANGE_INFO_FUNC] is None
        assert configured_app.config[STRICT] is True
        assert configured_app.config[CHANGE_INFO_FUNC] is dict
        assert defaults_app.config[USER_ID_ATTRIBUTE] == "email"
        assert configured_app.config[USER_ID_ATTRIBUTE] == "id"
    finally:
        for flask_app in (defaults_app, configured_app):
            with flask_app.app_context():
                for engine in extension.engines.values():
                    engine.dispose()


def _strict_failure(session: Any) -> None:
    with pytest.raises(ChrononautException, match=r"extra_change_info"):
        session.commit()
    session.rollback()


def test_strict_mode_refuses_an_insert_outside_extra_change_info(app, db, session, models):
    app.config[STRICT] = True
    session.add(models.Todo(title="a"))
    _strict_failure(session)

    assert session.scalar(select(func.count()).select_from(models.Todo)) == 0
    assert activity_rows(db) == []


def test_strict_mode_refuses_an_update_outside_extra_change_info(app, db, session, models):
    todo = add(session, models.Todo(title="a"))
    app.config[STRICT] = True
    before = activity_rows(db)

    todo.title = "b"
    _strict_failure(session)

    assert session.scalar(select(models.Todo.title)) == "a"
    assert todo.version == 0
    assert activity_rows(db) == before


def test_strict_mode_refuses_a_delete_outside_extra_change_info(app, db, session, models):
    todo = add(session, models.Todo(title="a"))
    app.config[STRICT] = True
    before = activity_rows(db)

    session.delete(todo)
    _strict_failure(session)

    assert session.scalar(select(func.count()).select_from(models.Todo)) == 1
    assert activity_rows(db) == before


@pytest.mark.parametrize(
    "block",
    [lambda: extra_change_info(ticket=7), lambda: rationale("approved")],
    ids=["extra_change_info", "rationale"],
)
def test_strict_mode_allows_changes_inside_a_block(app, db, session, models, block):
    app.config[STRICT] = True
    with block():
        todo = add(session, models.Todo(title="a"))
        todo.title = "b"
        session.commit()
        session.delete(todo)
        session.commit()

    rows = activity_rows(db)
    assert [row.version for row in rows] == [0, 1, 2]
    assert all(row.extra_info in ({"ticket": 7}, {"rationale": "approved"}) for row in rows)


def test_strict_mode_needs_nothing_for_untracked_changes(app, db, session, models):
    todo = add(session, models.Todo(title="a", starred=False))
    app.config[STRICT] = True

    todo.starred = True
    session.commit()

    assert session.scalar(select(models.Todo.starred)) is True
    assert todo.version == 0
    assert len(activity_rows(db)) == 1


# -- RecordChanges --------------------------------------------------------------------------


def test_record_changes_stamps_an_insert(db, session, models):
    before = datetime.now(timezone.utc)
    note = add(session, models.Note(body="hello"))
    after = datetime.now(timezone.utc)

    assert note.change_info == NO_USER
    assert before <= note.changed <= after
    assert note.changed.utcoffset() is not None


def test_record_changes_stamps_each_update(app, db, session, models):
    note = add(session, models.Note(body="v0"))
    first_changed = note.changed

    with (
        app.test_request_context(environ_base={"REMOTE_ADDR": "10.1.2.3"}),
        extra_change_info(reason="typo"),
    ):
        note.body = "v1"
        session.commit()
    assert note.change_info == {
        "user_id": None,
        "remote_addr": "10.1.2.3",
        "extra": {"reason": "typo"},
    }
    second_changed = note.changed
    assert second_changed > first_changed

    note.body = "v2"
    session.commit()
    assert note.change_info == NO_USER
    assert "extra" not in note.change_info
    assert note.changed > second_changed

    # What was stamped is what the database holds.
    stored = session.execute(select(models.Note.change_info, models.Note.changed)).one()
    assert stored == (NO_USER, note.changed)


def test_record_changes_does_not_restamp_without_a_net_change(db, session, models):
    note = add(session, models.Note(body="same"))
    stamped = (note.change_info, note.changed)

    with extra_change_info(reason="no-op"):
        note.body = "different"
        note.body = "same"
        session.commit()

    assert (note.change_info, note.changed) == stamped
