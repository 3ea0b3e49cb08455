"""The recipes of ``docs/recipes.rst``: each snippet imported and run as documented."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from flask_login import LoginManager, UserMixin

from chrononaut import rationale
from chrononaut.history.serialization import UTC
from tests.viewer_data import acting_as, todo_history

SNIPPETS = Path(__file__).parent.parent / "docs" / "snippets"


def recipe(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SNIPPETS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Staff(UserMixin):
    id: str
    is_admin: bool


STAFF = {"1": Staff("1", is_admin=True), "2": Staff("2", is_admin=False)}


def get_as(app, user_id, url):
    """GET ``url`` as the staff member ``user_id`` (``None``: signed out)."""
    client = app.test_client()
    if user_id is not None:
        with client.session_transaction() as flask_session:
            flask_session["_user_id"] = user_id
    # A request of its own app context, whose ``g`` has no user of an earlier request.
    with app.app_context():
        return client.get(url)


@pytest.fixture
def logins(app):
    manager = LoginManager(app)
    manager.user_loader(STAFF.get)
    return app


def test_the_audit_page_opens_for_administrators_only(logins, session, models):
    todo = models.Todo(title="Audited")
    session.add(todo)
    session.commit()
    recipe("recipe_audit_page").add_audit_page(logins)
    url = f"/admin/history/objects/Todo?key={todo.id}"
    assert get_as(logins, None, url).status_code == 403
    assert get_as(logins, "2", url).status_code == 403
    page = get_as(logins, "1", url)
    assert page.status_code == 200
    assert "Audited" in page.get_data(as_text=True)


def test_the_history_api_answers_with_the_timeline_as_json(app, db, session, models):
    todo = todo_history(app, session, models)
    allowed = []
    recipe("recipe_history_api").add_history_api(app, db, lambda: bool(allowed))
    client = app.test_client()
    assert client.get(f"/api/history/Todo?key={todo.id}").status_code == 403
    allowed.append(True)
    response = client.get(f"/api/history/Todo?key={todo.id}")
    assert response.status_code == 200
    document = response.get_json()
    assert (document["model"], document["key"], document["deleted"]) == (
        "Todo",
        {"id": todo.id},
        False,
    )
    assert [version["kind"] for version in document["versions"]] == ["created"] + ["changed"] * 3
    assert document["versions"][1]["changes"] == {"title": {"before": "Draft", "after": "Final"}}
    assert document["versions"][2]["hidden_changed"] == ["secret"]
    assert "hunter2" not in response.get_data(as_text=True)
    assert client.get("/api/history/Todo?key=12345").status_code == 404
    assert client.get("/api/history/Todo?key=x").status_code == 404
    assert client.get("/api/history/Nope?key=1").status_code == 404


def test_who_did_what_counts_changes_in_a_date_range(app, db, session, models):
    who_did_what = recipe("recipe_who_did_what").who_did_what
    start = datetime.now(UTC)
    todo_history(app, session, models)
    with acting_as(app, "grace@example.org", "10.0.0.2"):
        session.add(models.Country(code="NO", name="Norway"))
        session.commit()
    end = datetime.now(UTC)
    session.add(models.Country(code="SE", name="Sweden"))  # after the range, by no one
    session.commit()
    in_range = [
        {"user": "ada@example.org", "model": "Todo", "created": 1, "changed": 1, "deleted": 0},
        {"user": "grace@example.org", "model": "Country", "created": 1, "changed": 0, "deleted": 0},
        {"user": "grace@example.org", "model": "Todo", "created": 0, "changed": 2, "deleted": 0},
    ]
    assert who_did_what(db, start, end) == in_range
    later = end + timedelta(hours=1)
    assert who_did_what(db, start, later) == [
        *in_range,
        {"user": None, "model": "Country", "created": 1, "changed": 0, "deleted": 0},
    ]
    assert who_did_what(db, later, later + timedelta(days=1)) == []


def test_a_data_subject_export_holds_their_record_and_what_they_did(app, db, session, models):
    with acting_as(app, "ada@example.org", "10.0.0.1"), rationale("signed up"):
        ada = models.User(name="Ada", email="ada@example.org", password="s3cret")
        session.add(ada)
        session.commit()
    with acting_as(app, "ada@example.org", "10.0.0.1"):
        ada.email, ada.password = "ada@example.net", "n3w"
        session.add(models.Todo(title="Ada's todo"))
        session.commit()
    with acting_as(app, "grace@example.org", "10.0.0.2"):
        session.add(models.Todo(title="Grace's todo"))
        session.commit()
    export = recipe("recipe_subject_export")
    export.PAGE = 2  # so that her three changes take two pages
    text = export.export_person(db, models.User, {"id": ada.id}, "ada@example.org")
    document = json.loads(text)
    record = document["record"]
    assert [version["state"]["email"] for version in record["versions"]] == [
        "ada@example.org",
        "ada@example.net",
    ]
    assert record["versions"][1]["hidden_changed"] == ["password"]
    made = [(change["model"], change["version"]) for change in document["changes_made"]]
    # Newest first; the todo and the e-mail change were made in one flush.
    assert sorted(made[:2]) == [("Todo", 0), ("User", 1)] and made[2] == ("User", 0)
    assert "s3cret" not in text and "n3w" not in text
    assert "Grace" not in text
