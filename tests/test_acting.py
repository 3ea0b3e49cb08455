"""``acting_as``: who acts and why, outside a request, in threads, asyncio tasks,
``flask`` commands and task-queue workers; ``current_change_context`` and
``resume_change_context``, which carry it elsewhere."""

from __future__ import annotations

import asyncio
import contextvars
import importlib.util
import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
import pytest
from flask import has_app_context
from flask_login import LoginManager, UserMixin, login_user
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import exc, func, select

from chrononaut import (
    ChrononautException,
    Versioned,
    acting_as,
    current_change_context,
    extra_change_info,
    rationale,
    resume_change_context,
)
from chrononaut.exceptions import InvalidArgumentError
from tests.activity import activity_rows, rows_of

NO_USER = {"user_id": None, "remote_addr": None}
STRICT = "CHRONONAUT_REQUIRE_EXTRA_CHANGE_INFO"


def add(session: Any, obj: Any) -> Any:
    session.add(obj)
    session.commit()
    return obj


def recorded(db: Any, table: str = "todo", **key: Any) -> list[tuple[Any, Any]]:
    """``(user_info, extra_info)`` of each activity row of ``table``, oldest first."""
    return [(row.user_info, row.extra_info) for row in rows_of(db, table, **key)]


def by(actor: Any, remote_addr: str | None = None) -> dict[str, Any]:
    return {"user_id": actor, "remote_addr": remote_addr}


# -- recording --------------------------------------------------------------------------------


def test_acting_as_records_the_actor_and_the_reason(db, session, models):
    with acting_as("billing-job", rationale="monthly invoices", ticket="OPS-12"):
        todo = add(session, models.Todo(title="a"))
        todo.title = "b"
        session.commit()
        session.delete(todo)
        session.commit()
    add(session, models.Todo(title="after"))

    why = {"rationale": "monthly invoices", "ticket": "OPS-12"}
    assert [(row.version, row.user_info, row.extra_info) for row in activity_rows(db)] == [
        (0, by("billing-job"), why),
        (1, by("billing-job"), why),
        (2, by("billing-job"), why),
        (0, NO_USER, {}),
    ]


def test_an_integer_actor_is_recorded_as_an_integer(db, session, models):
    with acting_as(42, rationale="on behalf of user 42"):
        add(session, models.Todo(title="a"))

    assert recorded(db) == [(by(42), {"rationale": "on behalf of user 42"})]


def test_blocks_nest_with_each_other_and_with_extra_change_info(db, session, models):
    todo = add(session, models.Todo(title="v0"))

    def change(title: str) -> None:
        todo.title = title
        session.commit()

    with acting_as("importer", rationale="nightly import", batch=1):
        change("v1")
        with acting_as(step="prices"):  # no actor: keeps the importer
            change("v2")
            with acting_as("price-fixer", batch=2):
                change("v3")
                with extra_change_info(batch=3), rationale("rounding"):
                    change("v4")
                change("v5")
            change("v6")
        with extra_change_info(step="outer ecI"), acting_as("reviewer", step="inner"):
            change("v7")
        change("v8")
    change("v9")

    assert recorded(db)[1:] == [
        (by("importer"), {"rationale": "nightly import", "batch": 1}),
        (by("importer"), {"rationale": "nightly import", "batch": 1, "step": "prices"}),
        (by("price-fixer"), {"rationale": "nightly import", "batch": 2, "step": "prices"}),
        (by("price-fixer"), {"rationale": "rounding", "batch": 3, "step": "prices"}),
        (by("price-fixer"), {"rationale": "nightly import", "batch": 2, "step": "prices"}),
        (by("importer"), {"rationale": "nightly import", "batch": 1, "step": "prices"}),
        (by("reviewer"), {"rationale": "nightly import", "batch": 1, "step": "inner"}),
        (by("importer"), {"rationale": "nightly import", "batch": 1}),
        (NO_USER, {}),
    ]


def test_blocks_are_closed_when_an_exception_leaves_them(db, session, models):
    with (
        pytest.raises(RuntimeError, match="boom"),
        acting_as("outer-job", rationale="outer"),
        acting_as("inner-job", ticket="T-1"),
        extra_change_info(step="last"),
    ):
        raise RuntimeError("boom")

    assert current_change_context() is None
    add(session, models.Todo(title="a"))
    assert recorded(db) == [(NO_USER, {})]


def test_a_block_whose_commit_fails_is_closed_and_its_retry_is_recorded_once(db, session, models):
    add(session, models.User(name="taken", email="taken@example.com"))
    user = add(session, models.User(name="u", email="u@example.com"))

    with pytest.raises(exc.IntegrityError), acting_as("sync-job", rationale="directory sync"):
        user.email = "taken@example.com"
        session.commit()
    session.rollback()
    assert current_change_context() is None

    with acting_as("sync-job", rationale="retry"):
        user.email = "free@example.com"
        session.commit()

    assert [
        (row.version, row.user_info, row.extra_info) for row in rows_of(db, "appuser", id=user.id)
    ] == [
        (0, NO_USER, {}),
        (1, by("sync-job"), {"rationale": "retry"}),
    ]


def test_acting_as_decorates_a_function(db, session, models):
    @acting_as("cleanup-job", rationale="close stale todos")
    def close(todo_id: int) -> int:
        """Close one todo."""
        todo = session.get(models.Todo, todo_id)
        todo.done = True
        session.commit()
        return todo.version

    first = add(session, models.Todo(title="first"))
    second = add(session, models.Todo(title="second"))

    assert close(first.id) == 1
    assert current_change_context() is None
    assert close(second.id) == 1
    assert close.__name__ == "close"
    assert close.__doc__ == "Close one todo."
    with pytest.raises(AttributeError):
        close(-1)  # no such todo: the exception leaves the block
    assert current_change_context() is None

    why = {"rationale": "close stale todos"}
    assert recorded(db, id=first.id) == [(NO_USER, {}), (by("cleanup-job"), why)]
    assert recorded(db, id=second.id) == [(NO_USER, {}), (by("cleanup-job"), why)]


def test_acting_as_decorates_a_coroutine_function(db, session, models):
    @acting_as("async-job", rationale="from a coroutine")
    async def create(title: str) -> dict[str, Any] | None:
        await asyncio.sleep(0)  # the block stays open across awaits
        add(session, models.Todo(title=title))
        return current_change_context()

    async def main() -> dict[str, Any] | None:
        coroutine = create("a")
        # Making the coroutine opens nothing; running it does.
        assert current_change_context() is None
        return await coroutine

    assert asyncio.run(main()) == {
        "actor": "async-job",
        "override_request_user": False,
        "extra_info": {"rationale": "from a coroutine"},
    }
    assert recorded(db) == [(by("async-job"), {"rationale": "from a coroutine"})]


def test_acting_as_refuses_to_decorate_generator_functions():
    def rows():
        yield 1  # pragma: no cover - never run

    async def async_rows():
        yield 1  # pragma: no cover - never run

    for function in (rows, async_rows):
        with pytest.raises(InvalidArgumentError, match="generator function"):
            acting_as("job", rationale="r")(function)


def test_records_changes_stamps_the_actor(db, session, models):
    with acting_as("notes-job", rationale="import notes"):
        note = add(session, models.Note(body="hello"))

    assert note.change_info == {
        "user_id": "notes-job",
        "remote_addr": None,
        "extra": {"rationale": "import notes"},
    }


def test_models_that_override_the_user_hooks_record_their_own_user(app, db, session, models):
    class ImportedRecord(db.Model, Versioned):
        __tablename__ = "imported_record"
        id = db.Column(db.Integer, primary_key=True)

        @classmethod
        def _fetch_current_user_id(cls) -> str:
            return "importer@example.com"

    class ServiceRecord(db.Model, Versioned):
        __tablename__ = "service_record"
        id = db.Column(db.Integer, primary_key=True)

        @classmethod
        def _capture_user_info(cls) -> dict[str, Any]:
            return {"service": "nightly"}

    db.create_all()
    with acting_as("job", override_request_user=True, rationale="r"):
        session.add_all([ImportedRecord(), ServiceRecord(), models.Todo(title="a")])
        session.commit()

    assert recorded(db, "imported_record") == [(by("importer@example.com"), {"rationale": "r"})]
    assert recorded(db, "service_record") == [({"service": "nightly"}, {"rationale": "r"})]
    assert recorded(db, "todo") == [(by("job"), {"rationale": "r"})]


# -- where a block is seen: app contexts, threads, asyncio tasks, commands ----------------------


def test_acting_as_needs_no_app_context_to_open(app, db, session, models):
    def job() -> None:
        # A worker that opens the block first and the app context inside it.
        assert not has_app_context()
        with acting_as("worker", rationale="queued job"), app.app_context():
            add(db.session, models.Todo(title="from the worker"))
            db.session.remove()

    contextvars.Context().run(job)

    assert recorded(db) == [(by("worker"), {"rationale": "queued job"})]


def _commit_in_a_thread(app: Any, db: Any, models: Any, title: str) -> None:
    with app.app_context():
        add(db.session, models.Todo(title=title))
        db.session.remove()


def test_a_new_thread_starts_without_the_callers_blocks(app, db, session, models):
    with acting_as("caller", rationale="batch"):
        plain = threading.Thread(target=_commit_in_a_thread, args=(app, db, models, "plain"))
        plain.start()
        plain.join()
        context = contextvars.copy_context()
        copied = threading.Thread(
            target=context.run, args=(_commit_in_a_thread, app, db, models, "copied")
        )
        copied.start()
        copied.join()

    titles = dict(session.execute(select(models.Todo.title, models.Todo.id)).all())
    assert recorded(db, id=titles["plain"]) == [(NO_USER, {})]
    assert recorded(db, id=titles["copied"]) == [(by("caller"), {"rationale": "batch"})]


def test_threads_acting_at_the_same_time_record_their_own_actor(app, db, session, models):
    both_open = threading.Barrier(2, timeout=30)
    both_committed = threading.Barrier(2, timeout=30)
    failures: list[BaseException] = []

    def work(name: str) -> None:
        try:
            with app.app_context():
                with acting_as(name, rationale=f"{name} run"):
                    both_open.wait()
                    add(db.session, models.Todo(title=name))
                    both_committed.wait()
                    assert current_change_context()["actor"] == name
                assert current_change_context() is None
                db.session.remove()
        except BaseException as error:  # reported by the main thread
            failures.append(error)
            both_open.abort()
            both_committed.abort()

    threads = [threading.Thread(target=work, args=(name,)) for name in ("alpha", "beta")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    titles = dict(session.execute(select(models.Todo.title, models.Todo.id)).all())
    for name in ("alpha", "beta"):
        assert recorded(db, id=titles[name]) == [(by(name), {"rationale": f"{name} run"})]


def test_one_block_shared_by_threads_closes_each_entry_in_its_own_thread(app, db):
    shared = acting_as("shared-job", rationale="shared")
    inside = threading.Barrier(2, timeout=30)
    left = threading.Barrier(2, timeout=30)
    seen: dict[str, list[Any]] = {}

    def work(name: str) -> None:
        with shared:
            inside.wait()
            actor = current_change_context()["actor"]
        # Both threads are inside the block at once, then both leave it.
        left.wait()
        seen[name] = [actor, current_change_context()]

    threads = [threading.Thread(target=work, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert seen == {"one": ["shared-job", None], "two": ["shared-job", None]}


def test_asyncio_tasks_acting_at_the_same_time_record_their_own_actor(db, session, models):
    async def work(name: str, opened: asyncio.Event, go: asyncio.Event) -> Any:
        with acting_as(name, rationale=f"{name} run"):
            opened.set()
            await go.wait()  # the other task's block is open meanwhile
            add(session, models.Todo(title=name))
            inside = current_change_context()
        return inside, current_change_context()

    async def main() -> Any:
        opened = {"alpha": asyncio.Event(), "beta": asyncio.Event()}
        go = asyncio.Event()
        tasks = [asyncio.create_task(work(name, opened[name], go)) for name in opened]
        for event in opened.values():
            await event.wait()
        assert current_change_context() is None  # the tasks' blocks are their own
        go.set()
        return await asyncio.gather(*tasks)

    results = asyncio.run(main())

    assert [(inside["actor"], after) for inside, after in results] == [
        ("alpha", None),
        ("beta", None),
    ]
    titles = dict(session.execute(select(models.Todo.title, models.Todo.id)).all())
    for name in ("alpha", "beta"):
        assert recorded(db, id=titles[name]) == [(by(name), {"rationale": f"{name} run"})]


def test_extra_change_info_blocks_stay_in_their_asyncio_task(db, session, models):
    async def explained(opened: asyncio.Event, done: asyncio.Event) -> None:
        with extra_change_info(reason="task a"):
            opened.set()
            await done.wait()

    async def plain(opened: asyncio.Event, done: asyncio.Event) -> None:
        await opened.wait()  # the other task's block is open now
        add(session, models.Todo(title="b"))
        done.set()

    async def main() -> None:
        opened, done = asyncio.Event(), asyncio.Event()
        await asyncio.gather(explained(opened, done), plain(opened, done))

    asyncio.run(main())

    assert recorded(db) == [(NO_USER, {})]


def test_an_asyncio_task_starts_with_the_blocks_open_where_it_was_created(db, session, models):
    async def child(started: asyncio.Event) -> None:
        started.set()
        with acting_as(step="child"):  # adds to the inherited block, in the task only
            add(session, models.Todo(title="child"))

    async def main() -> dict[str, Any] | None:
        started = asyncio.Event()
        with acting_as("parent-job", rationale="fan out"):
            task = asyncio.create_task(child(started))
        # The block closed before the task ran; the task still has it.
        await task
        assert started.is_set()
        return current_change_context()

    assert asyncio.run(main()) is None
    assert recorded(db) == [(by("parent-job"), {"rationale": "fan out", "step": "child"})]


def test_acting_as_in_a_flask_command(app, db, session, models):
    @app.cli.command("close-todos")
    @click.option("--reason", required=True)
    def close_todos(reason: str) -> None:
        with acting_as("ops-cli", rationale=reason):
            for todo in db.session.scalars(select(models.Todo)):
                todo.done = True
            db.session.commit()
        click.echo("closed")

    @app.cli.command("purge-done")
    @acting_as("ops-cli", rationale="purge closed todos")
    def purge_done() -> None:
        for todo in db.session.scalars(select(models.Todo).where(models.Todo.done)):
            db.session.delete(todo)
        db.session.commit()

    todo = add(session, models.Todo(title="a"))
    runner = app.test_cli_runner()

    closed = runner.invoke(args=["close-todos", "--reason", "end of sprint"])
    assert (closed.exit_code, closed.output) == (0, "closed\n")
    purged = runner.invoke(args=["purge-done"])
    assert purged.exit_code == 0, purged.output

    assert recorded(db, id=todo.id) == [
        (NO_USER, {}),
        (by("ops-cli"), {"rationale": "end of sprint"}),
        (by("ops-cli"), {"rationale": "purge closed todos"}),
    ]
    assert current_change_context() is None


# -- requests ---------------------------------------------------------------------------------


class LoginUser(UserMixin):
    def __init__(self, user_id: str, email: str) -> None:
        self.id = user_id
        self.email = email


@pytest.fixture
def ada(app: Any) -> LoginUser:
    """A Flask-Login user the app can load."""
    user = LoginUser("7", "ada@example.com")
    LoginManager(app).user_loader({"7": user}.get)
    return user


def test_the_request_user_wins_over_the_actor(app, db, session, models, ada):
    with app.test_request_context(environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        assert login_user(ada)
        with acting_as("billing-job", rationale="invoice run"):
            add(session, models.Todo(title="a"))

    assert recorded(db) == [(by("ada@example.com", "10.1.2.3"), {"rationale": "invoice run"})]


def test_override_request_user_records_the_actor_in_a_request(app, db, session, models, ada):
    with app.test_request_context(environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        assert login_user(ada)
        with acting_as("support-bot", override_request_user=True, rationale="auto-reply"):
            add(session, models.Todo(title="overridden"))
            with acting_as(step="inner"):  # names no actor: the override stays
                add(session, models.Todo(title="still overridden"))
            with acting_as("helper", step="inner"):  # its own actor, not overriding
                add(session, models.Todo(title="request user again"))

    assert recorded(db) == [
        (by("support-bot", "10.1.2.3"), {"rationale": "auto-reply"}),
        (by("support-bot", "10.1.2.3"), {"rationale": "auto-reply", "step": "inner"}),
        (by("ada@example.com", "10.1.2.3"), {"rationale": "auto-reply", "step": "inner"}),
    ]


def test_the_actor_is_recorded_in_a_request_without_an_authenticated_user(
    app, db, session, models, ada
):
    with (
        app.test_request_context(environ_base={"REMOTE_ADDR": "10.1.2.3"}),
        acting_as("webhook", rationale="payment callback"),
    ):
        add(session, models.Todo(title="a"))

    assert recorded(db) == [(by("webhook", "10.1.2.3"), {"rationale": "payment callback"})]


# -- strict mode ------------------------------------------------------------------------------

STRICT_BLOCKS = {
    "rationale": lambda: acting_as("job", rationale="approved"),
    "details": lambda: acting_as("job", ticket="OPS-12"),
    "no actor": lambda: acting_as(rationale="approved"),
    "actor in extra_change_info": lambda: _nested(acting_as("job"), extra_change_info()),
    "reason from the outer block": lambda: _nested(
        acting_as("job", rationale="approved"), acting_as("sub-job")
    ),
    "resumed": lambda: resume_change_context(
        {"actor": "job", "override_request_user": False, "extra_info": {"ticket": "OPS-12"}}
    ),
}


def _nested(outer: Any, inner: Any) -> ExitStack:
    stack = ExitStack()
    stack.enter_context(outer)
    stack.enter_context(inner)
    return stack


@pytest.mark.parametrize("block", list(STRICT_BLOCKS.values()), ids=list(STRICT_BLOCKS))
def test_strict_mode_accepts_a_block_that_says_why(app, db, session, models, block):
    app.config[STRICT] = True
    with block():
        todo = add(session, models.Todo(title="a"))
        todo.title = "b"
        session.commit()
        session.delete(todo)
        session.commit()

    assert [row.version for row in activity_rows(db)] == [0, 1, 2]


@pytest.mark.parametrize(
    "block",
    [lambda: acting_as("job"), lambda: resume_change_context({"actor": "job"})],
    ids=["acting_as", "resumed"],
)
def test_strict_mode_refuses_an_actor_without_a_reason(app, db, session, models, block):
    app.config[STRICT] = True
    with block():
        session.add(models.Todo(title="a"))
        with pytest.raises(ChrononautException, match="Strict tracking is enabled"):
            session.commit()
        session.rollback()

    assert session.scalar(select(func.count()).select_from(models.Todo)) == 0
    assert activity_rows(db) == []


# -- hidden_cols_changed and hidden values ---------------------------------------------------

RESERVED = "`hidden_cols_changed` is recorded by Chrononaut itself"


def test_the_context_cannot_claim_hidden_changes(db, session, models):
    todo = add(session, models.Todo(title="a", secret="s0"))
    with pytest.raises(InvalidArgumentError, match=f"^{re.escape(RESERVED)}"):
        acting_as("job", hidden_cols_changed=["title"])
    with pytest.raises(InvalidArgumentError, match=f"^{re.escape(RESERVED)}"):
        resume_change_context({"actor": "job", "extra_info": {"hidden_cols_changed": ["title"]}})
    assert current_change_context() is None

    with acting_as("rotation-job", rationale="rotate secrets"):
        todo.secret = "s1-very-secret"
        session.commit()
        todo.title = "b"
        session.commit()

    assert recorded(db)[1:] == [
        (by("rotation-job"), {"rationale": "rotate secrets", "hidden_cols_changed": ["secret"]}),
        (by("rotation-job"), {"rationale": "rotate secrets"}),
    ]
    stored = json.dumps([row._asdict() for row in activity_rows(db)], default=str)
    assert "s0" not in stored
    assert "very-secret" not in stored


# -- bad arguments ---------------------------------------------------------------------------

BAD_ARGUMENTS = {
    "bool actor": (lambda: acting_as(True, rationale="r"), "string or an integer"),
    "float actor": (lambda: acting_as(1.5, rationale="r"), "string or an integer"),
    "object actor": (lambda: acting_as(object(), rationale="r"), "string or an integer"),
    "empty actor": (lambda: acting_as("", rationale="r"), "empty string"),
    "blank actor": (lambda: acting_as("  ", rationale="r"), "empty string"),
    "number rationale": (lambda: acting_as("job", rationale=5), "non-empty string"),
    "blank rationale": (lambda: acting_as("job", rationale=" "), "non-empty string"),
    "override as text": (
        lambda: acting_as("job", override_request_user="yes"),
        "True or False",
    ),
    "override without actor": (
        lambda: acting_as(override_request_user=True, rationale="r"),
        "needs an actor",
    ),
    "context not a dict": (lambda: resume_change_context(["job"]), "must be a dict"),
    "unknown context key": (
        lambda: resume_change_context({"actor": "job", "user_id": "x"}),
        "not user_id",
    ),
    "extra_info not a dict": (
        lambda: resume_change_context({"extra_info": ["a"]}),
        "dict with string keys",
    ),
    "extra_info key not a string": (
        lambda: resume_change_context({"extra_info": {1: "a"}}),
        "dict with string keys",
    ),
    "context actor a list": (
        lambda: resume_change_context({"actor": ["job"]}),
        "string or an integer",
    ),
    "context override as text": (
        lambda: resume_change_context({"actor": "job", "override_request_user": "true"}),
        "True or False",
    ),
}


@pytest.mark.parametrize("call, message", list(BAD_ARGUMENTS.values()), ids=list(BAD_ARGUMENTS))
def test_bad_arguments_are_refused_and_open_nothing(call, message):
    with pytest.raises(InvalidArgumentError, match=message) as refused:
        call()
    assert isinstance(refused.value, ChrononautException)
    assert current_change_context() is None


def test_blocks_left_out_of_order_are_refused():
    outer, inner = acting_as("outer", rationale="r"), acting_as("inner", rationale="r")
    outer.__enter__()
    inner.__enter__()
    with pytest.raises(ChrononautException, match="reverse order they were entered"):
        outer.__exit__(None, None, None)
    inner.__exit__(None, None, None)
    outer.__exit__(None, None, None)
    assert current_change_context() is None
    with pytest.raises(ChrononautException, match="and only once"):
        outer.__exit__(None, None, None)


# -- carrying the context elsewhere -------------------------------------------------------------


def test_current_change_context_is_none_without_a_block():
    assert current_change_context() is None
    with resume_change_context(None):
        assert current_change_context() == {
            "actor": None,
            "override_request_user": False,
            "extra_info": {},
        }


def test_a_context_carried_through_json_records_the_same(app, db, session, models):
    def publish() -> str:
        with (
            acting_as("alice-batch", rationale="bulk close", override_request_user=True),
            extra_change_info(ticket="OPS-12", rows=[1, 2]),
        ):
            add(session, models.Todo(title="publisher"))
            return json.dumps(current_change_context())

    def consume(message: str) -> None:
        with resume_change_context(json.loads(message)), app.app_context():
            add(db.session, models.Todo(title="worker"))
            db.session.remove()

    message = publish()
    # The worker runs where nothing of the publisher's context is left.
    contextvars.Context().run(consume, message)

    publisher, worker = recorded(db)
    assert (
        publisher
        == worker
        == (
            by("alice-batch"),
            {"rationale": "bulk close", "ticket": "OPS-12", "rows": [1, 2]},
        )
    )


def _json_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    _json_containers,
    max_leaves=10,
)
DETAIL_NAMES = st.text(min_size=1).filter(
    lambda name: name not in {"rationale", "override_request_user", "hidden_cols_changed"}
)


@settings(max_examples=200, deadline=None)
@given(
    actor=st.none() | st.integers() | st.text().filter(str.strip),
    details=st.dictionaries(DETAIL_NAMES, JSON_VALUES, max_size=4),
)
def test_a_context_survives_json_exactly(actor, details):
    with acting_as(actor, **details):
        context = current_change_context()
    with resume_change_context(json.loads(json.dumps(context))):
        assert (
            current_change_context()
            == context
            == {
                "actor": actor,
                "override_request_user": False,
                "extra_info": details,
            }
        )
    assert current_change_context() is None


# -- the Celery recipe (docs/snippets/celery_change_context.py) -----------------------------

RECIPE = Path(__file__).parent.parent / "docs" / "snippets" / "celery_change_context.py"


@pytest.fixture
def celery_recipe() -> Iterator[Any]:
    """The recipe, imported as its own module; its signal handler is disconnected after,
    and the root logger, which Celery's worker configures, restored."""
    from celery.signals import before_task_publish

    spec = importlib.util.spec_from_file_location("celery_change_context", RECIPE)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    yield recipe
    before_task_publish.disconnect(recipe.send_change_context)
    root.setLevel(level)
    root.handlers[:] = handlers


def test_the_celery_recipe_runs_tasks_in_the_blocks_that_queued_them(
    app, db, session, models, celery_recipe
):
    from celery.contrib.testing.worker import start_worker

    app.config["CELERY"] = {"broker_url": "memory://", "result_backend": "cache+memory://"}
    app.config[STRICT] = True
    celery_app = celery_recipe.celery_init_app(app)

    @celery_app.task(shared=False)
    def close(todo_id: int) -> dict[str, Any] | None:
        todo = db.session.get(models.Todo, todo_id)
        todo.done = True
        db.session.commit()
        return current_change_context()

    with acting_as("alice-admin", rationale="seed"):
        first = add(session, models.Todo(title="first"))
        second = add(session, models.Todo(title="second"))

    # The worker runs the tasks in a thread of its own, which starts with no blocks.
    with start_worker(celery_app, pool="solo", perform_ping_check=False):
        with acting_as("alice-admin", rationale="bulk close", ticket="OPS-12"):
            queued = close.delay(first.id)
        carried = queued.get(timeout=30)
        with pytest.raises(ChrononautException, match="Strict tracking is enabled"):
            close.delay(second.id).get(timeout=30)  # queued outside any block

    assert carried == {
        "actor": "alice-admin",
        "override_request_user": False,
        "extra_info": {"rationale": "bulk close", "ticket": "OPS-12"},
    }
    assert recorded(db, id=first.id)[1:] == [
        (by("alice-admin"), {"rationale": "bulk close", "ticket": "OPS-12"})
    ]
    assert recorded(db, id=second.id)[1:] == []
