"""The history viewer blueprint, through Flask's test client."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select, update

from chrononaut import extra_change_info, rationale
from chrononaut.history.serialization import UTC
from chrononaut.unsafe import suppress_versioning
from chrononaut.views import history_blueprint
from tests.viewer_data import acting_as, todo_history, viewer_client


@pytest.fixture
def client(app, db, models):
    return viewer_client(app)


def timeline_url(model, key):
    return f"/history/objects/{model}?key={key}"


def text_of(response):
    """The page's text without tags and with runs of white space collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)).split())


@pytest.mark.parametrize("path", ["/", "/activity", "/objects/Todo?key=1", "/static/viewer.css"])
def test_every_page_is_forbidden_without_a_permission_callback(app, db, models, path):
    app.register_blueprint(history_blueprint(), url_prefix="/history")
    assert app.test_client().get("/history" + path).status_code == 403


def test_the_permission_callback_decides_each_request(app, db, session, models):
    allowed = []
    app.register_blueprint(history_blueprint(lambda: bool(allowed)), url_prefix="/history")
    session.add(models.Todo(title="x"))
    session.commit()
    client = app.test_client()
    assert client.get("/history/activity").status_code == 403
    allowed.append(True)
    assert client.get("/history/activity").status_code == 200
    assert client.get("/history/static/viewer.css").status_code == 200


def test_a_page_size_below_one_is_refused():
    with pytest.raises(ValueError, match="per_page must be at least 1, not 0"):
        history_blueprint(lambda: True, per_page=0)


def test_index_lists_the_versioned_models(client):
    page = text_of(client.get("/history/"))
    assert "Todo table todo" in page
    assert "Translation table translation" in page
    assert "Note" not in page  # RecordChanges only, not versioned


def test_timeline_shows_each_version_with_who_why_and_a_diff(app, client, session, models):
    todo = todo_history(app, session, models)
    response = client.get(timeline_url("Todo", todo.id))
    assert response.status_code == 200
    page = text_of(response)
    # Newest first; each version with its user, address, change info and diff.
    assert page.index("Version 3") < page.index("Version 2") < page.index("Version 0")
    assert "4 versions" in page
    assert "Version 3 Changed" in page
    assert "User grace@example.org Address 10.0.0.2 ticket T-7 Column Before After done" in page
    assert "done false true" in page
    assert "rationale clearer title Column Before After title Draft Final" in page
    assert "Version 0 created" in page
    assert "title null Draft" in page
    assert "deleted" not in page


def test_timeline_marks_hidden_columns_and_never_shows_their_values(app, client, session, models):
    todo = todo_history(app, session, models)
    html = client.get(timeline_url("todo", todo.id)).get_data(as_text=True)
    page = text_of(client.get(timeline_url("todo", todo.id)))
    assert "User ada@example.org Address 10.0.0.1 Column Before After secret changed (hidden)" in (
        page
    )
    assert '<tr class="hidden"><th>secret</th><td colspan="2">changed (hidden)</td></tr>' in html
    assert "hunter2" not in html
    assert "correct horse" not in html


def test_stored_markup_is_rendered_inert(app, client, session, models):
    attack = '<script>alert("owned")</script>'
    todo = models.Todo(title=attack, text="<img src=x onerror=alert(1)>")
    session.add(todo)
    session.commit()
    with acting_as(app, attack, "10.0.0.9"), rationale(attack):
        todo.title = "safe"
        session.commit()
    for url in (timeline_url("Todo", todo.id), "/history/activity"):
        html = client.get(url).get_data(as_text=True)
        assert "<script>" not in html
        assert "<img" not in html
        assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in html


def test_timeline_of_a_composite_key(client, session, models):
    translation = models.Translation(locale="en", slug="intro", text="Hello")
    session.add(translation)
    session.commit()
    translation.text = "Hi"
    session.commit()
    key = json.dumps({"slug": "intro", "locale": "en"})
    page = text_of(client.get(timeline_url("Translation", key)))
    assert "Translation locale=en slug=intro" in page
    assert "text Hello Hi" in page
    response = client.get(timeline_url("Translation", "en"))
    assert response.status_code == 404
    assert "composite key" in response.get_data(as_text=True)


def test_timeline_of_a_deleted_object(client, session, models):
    todo = models.Todo(title="Gone soon")
    session.add(todo)
    session.commit()
    todo_id = todo.id
    session.delete(todo)
    session.commit()
    page = text_of(client.get(timeline_url("Todo", todo_id)))
    assert f"Todo id={todo_id} deleted" in page
    assert "Version 1 deleted Changed" in page
    assert "No tracked column changed." in page


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/history/objects/Nope?key=1", "no versioned model named"),
        ("/history/objects/Todo?key=abc", "is not a valid id of Todo"),
        ("/history/objects/Todo?key=%7B%22nope%22%3A1%7D", "a JSON object with the names id"),
        ("/history/objects/Todo?key=12345", "Todo 12345 has no recorded history."),
    ],
)
def test_unknown_objects_are_not_found(client, url, message):
    response = client.get(url)
    assert response.status_code == 404
    assert message in response.get_data(as_text=True).replace("&#39;", "'")


def test_activity_feed_pages_newest_first(client, session, models):
    todos = [models.Todo(title=f"todo {number}") for number in range(5)]
    for todo in todos:  # one commit each, so the order of `changed` is the order here
        session.add(todo)
        session.commit()
    seen = []
    url = "/history/activity"
    while url:
        html = client.get(url).get_data(as_text=True)
        seen.append(re.findall(r"key=(\d+)\"", html))
        next_link = re.search(r'rel="next" href="([^"]+)"', html)
        url = next_link and next_link.group(1).replace("&amp;", "&")
    assert seen == [
        [str(todos[4].id), str(todos[3].id)],
        [str(todos[2].id), str(todos[1].id)],
        [str(todos[0].id)],
    ]
    assert 'rel="prev" href="/history/activity?page=2"' in html


def test_activity_feed_filters_by_model_user_and_time(app, client, session, models):
    todo_history(app, session, models)
    with acting_as(app, "grace@example.org", "10.0.0.2"):
        session.add(models.Country(code="NO", name="Norway"))
        session.commit()
    html = client.get("/history/activity?model=Country").get_data(as_text=True)
    assert re.findall(r"objects/(\w+)\?", html) == ["country"]

    html = client.get("/history/activity?user=grace@example.org&model=todo").get_data(as_text=True)
    assert re.findall(r"objects/(\w+)\?", html) == ["todo", "todo"]
    assert 'rel="next"' not in html

    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    page = text_of(client.get(f"/history/activity?since={soon.replace('+', '%2B')}"))
    assert "No changes match." in page
    page = text_of(client.get(f"/history/activity?until={soon.replace('+', '%2B')}"))
    assert "No changes match." not in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("since=yesterday", "since: 'yesterday' is not an ISO 8601 date or time"),
        ("model=Nope", "no versioned model named 'Nope'"),
        ("page=0", "page: '0' is not a page number"),
    ],
)
def test_activity_feed_explains_bad_filters(client, query, message):
    response = client.get(f"/history/activity?{query}")
    assert response.status_code == 400
    assert message in text_of(response).replace("&#39;", "'")


def test_a_value_stored_under_a_column_hidden_later_is_not_shown(client, db, session, models):
    todo = models.Todo(title="Old", secret="now hidden")
    session.add(todo)
    session.commit()
    # History written before `secret` became hidden may hold its values; such rows come
    # from the database as they are, so they are written here with plain SQL.
    table = db.activity_cls.__table__
    row = session.execute(select(table)).one()
    with suppress_versioning(allow_deleting_history=True):
        session.execute(update(table).values(data={**row.data, "secret": "leaked-1"}))
        session.execute(
            insert(table).values(
                table_name="todo",
                changed=row.changed,
                version=1,
                key=row.key,
                data={**row.data, "secret": "leaked-2", "version": 1},
            )
        )
        session.commit()
    html = client.get(timeline_url("Todo", todo.id)).get_data(as_text=True)
    assert "leaked" not in html
    assert html.count("changed (hidden)") == 2  # at creation, and in version 1


def test_stored_control_characters_are_shown_as_escapes_and_line_breaks_kept(
    app, client, session, models
):
    tricks = "\x1b[31mred\x07\u202eevil\u2066x\u2028\r\nnext line"
    shown = "\\x1b[31mred\\x07\\u202eevil\\u2066x\\u2028\\r\nnext line"
    with acting_as(app, tricks, tricks), extra_change_info(**{"\u202ename": tricks}):
        todo = models.Todo(title=tricks)
        session.add(todo)
        session.add(models.Country(code="\u202e\x1b", name="Tricky"))
        session.commit()
    # Each page shows the user, the address and the change info of each change; the
    # todo's timeline its title twice more, in the diff and in the full state.
    pages = {
        timeline_url("Todo", todo.id): 5,
        "/history/objects/Country?key=%E2%80%AE%1B": 3,
        "/history/activity": 6,
    }
    for url, times in pages.items():
        response = client.get(url)
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert not re.findall(
            "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]", html
        )
        assert html.count(shown) == times
        assert "\\u202ename" in html
    assert "country \\u202e\\x1b 0" in text_of(client.get("/history/activity"))
    assert "Country code=\\u202e\\x1b" in text_of(
        client.get("/history/objects/country?key=%E2%80%AE%1B")
    )
