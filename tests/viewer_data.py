"""History for the viewer and CLI tests, made by named users from known addresses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient
from flask_login import LoginManager, UserMixin, login_user
from sqlalchemy import text

from chrononaut import extra_change_info, rationale
from chrononaut.unsafe import suppress_versioning
from chrononaut.views import history_blueprint
from tests.models import Models


@dataclass
class Editor(UserMixin):
    id: int
    email: str


@contextmanager
def acting_as(app: Flask, email: str, remote_addr: str) -> Iterator[None]:
    """Run the block in a request from ``remote_addr`` by a Flask-Login user ``email``."""
    if not hasattr(app, "login_manager"):
        LoginManager(app)
    with app.test_request_context(environ_base={"REMOTE_ADDR": remote_addr}):
        login_user(Editor(id=1, email=email))
        yield


def todo_history(app: Flask, session: Any, models: Models) -> Any:
    """A todo with four versions: created by ada, retitled by grace with a rationale,
    its hidden secret changed by ada, then marked done with extra change info.
    """
    with acting_as(app, "ada@example.org", "10.0.0.1"):
        todo = models.Todo(title="Draft", text="first", secret="hunter2")
        session.add(todo)
        session.commit()
    with acting_as(app, "grace@example.org", "10.0.0.2"), rationale("clearer title"):
        todo.title = "Final"
        session.commit()
    with acting_as(app, "ada@example.org", "10.0.0.1"):
        todo.secret = "correct horse"
        session.commit()
    with acting_as(app, "grace@example.org", "10.0.0.2"), extra_change_info(ticket="T-7"):
        todo.done = True
        session.commit()
    return todo


#: How the activity rows of :func:`two_lives` are stored: as this release records them,
#: or without operations, as a release before 1.0 wrote them.
OPERATIONS = ["recorded", "not recorded"]


def two_lives(session: Any, models: Models, operations: str = "recorded") -> None:
    """Country NO lived twice: created as Norway, renamed Norge, deleted, then created
    again as Noreg, which it still is.

    :param operations: one of :data:`OPERATIONS`.
    """
    session.add(models.Country(code="NO", name="Norway"))
    session.commit()
    session.get(models.Country, "NO").name = "Norge"
    session.commit()
    session.delete(session.get(models.Country, "NO"))
    session.commit()
    session.add(models.Country(code="NO", name="Noreg"))
    session.commit()
    if operations == "not recorded":
        forget_operations(session)


def forget_operations(session: Any) -> None:
    """Make every activity row look written before operations were recorded."""
    with suppress_versioning(allow_deleting_history=True):
        session.execute(text("UPDATE chrononaut_activity SET operation = NULL"))
        session.commit()


def viewer_client(app: Flask) -> FlaskClient:
    """A test client of ``app`` with the viewer under ``/history``, open to everyone and
    two changes to a page of the feed."""
    app.register_blueprint(history_blueprint(lambda: True, per_page=2), url_prefix="/history")
    return app.test_client()


def cli_runner(app: Flask, columns: int = 200) -> Callable[..., Result]:
    """A function that runs ``flask chrononaut ARGS...`` on ``app`` and returns the result.

    ``COLUMNS`` says the terminal is ``columns`` wide; the output goes to the runner's
    buffer, not to a terminal, so the commands wrap nothing whatever it says.
    """
    runner = app.test_cli_runner()

    def run(*args: str) -> Result:
        return runner.invoke(args=["chrononaut", *args], env={"COLUMNS": str(columns)})

    return run
