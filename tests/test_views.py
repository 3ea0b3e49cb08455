"""The history viewer blueprint, through Flask's test client."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, insert, select, text, update

from chrononaut import extra_change_info, rationale
from chrononaut.history.serialization import UTC
from chrononaut.interfaces.timeline import (
    CHANGED,
    CREATED,
    DELETED,
    FILTERABLE_KINDS,
    activity_feed,
    has_been_deleted,
    kind_of,
    object_timeline,
)
from chrononaut.unsafe import suppress_versioning
from chrononaut.views import history_blueprint
from tests.models import Priority
from tests.viewer_data import (
    OPERATIONS,
    acting_as,
    forget_operations,
    todo_history,
    two_lives,
    viewer_client,
)

PAGES = ["/", "/activity", "/objects/Todo?key=1"]
MISSING_HTML = (
    '<span class="none"><span aria-hidden="true">—</span><span class="sr-only">none</span></span>'
)


@pytest.fixture
def client(app, db, models):
    return viewer_client(app)


@pytest.fixture
def feed(app, db, models):
    """A function that returns the rows of the first page of the feed (25 changes) for a
    query string, each as the texts of its cells that the eye sees."""
    app.register_blueprint(
        history_blueprint(lambda: True, name="long", per_page=25), url_prefix="/long"
    )
    client = app.test_client()

    def rows(query=""):
        response = client.get(f"/long/activity?{query}")
        assert response.status_code == 200
        return feed_rows(response.get_data(as_text=True))

    return rows


def timeline_url(model, key):
    return f"/history/objects/{model}?key={key}"


def text_of(response):
    """The page's text without tags and with runs of white space collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)).split())


def seen(html):
    """The text of ``html`` as the eye sees it: without tags and without the words for
    screen readers only, white space collapsed."""
    html = re.sub(r'<span class="sr-only">[^<]*</span>', "", html)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def heading(html):
    """The text of the page's heading."""
    return seen(re.search(r"<h1>(.*?)</h1>", html, re.DOTALL).group(1))


def feed_rows(html):
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    return [
        [seen(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.DOTALL)
    ]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_forbidden_without_a_permission_callback(app, db, models, path):
    app.register_blueprint(history_blueprint(), url_prefix="/history")
    response = app.test_client().get("/history" + path)
    assert response.status_code == 403
    html = response.get_data(as_text=True)
    assert '<link rel="stylesheet" href="/history/static/viewer.css">' in html
    assert "<title>403 Forbidden · Chrononaut</title>" in html
    assert '<a href="/">back to the application</a>' in html


@pytest.mark.parametrize("permission", [None, lambda: False])
def test_the_stylesheet_is_public_while_every_page_stays_forbidden(app, db, models, permission):
    app.register_blueprint(history_blueprint(permission), url_prefix="/history")
    client = app.test_client()
    stylesheet = client.get("/history/static/viewer.css")
    assert stylesheet.status_code == 200
    assert stylesheet.mimetype == "text/css"
    assert b".bar" in stylesheet.get_data()
    assert [client.get("/history" + path).status_code for path in PAGES] == [403, 403, 403]


def test_error_pages_lead_back_and_show_no_stored_data(app, db, session, models):
    allowed = []
    app.register_blueprint(history_blueprint(lambda: bool(allowed)), url_prefix="/history")
    todo = models.Todo(title="Confidential plan")
    session.add(todo)
    session.commit()
    client = app.test_client()
    # An application mounted below /shop: its root is /shop/.
    mounted = {"base_url": "http://localhost/shop"}
    forbidden = client.get(f"/history/objects/Todo?key={todo.id}", **mounted)
    assert forbidden.status_code == 403
    assert "Confidential" not in forbidden.get_data(as_text=True)
    assert '<a href="/shop/">back to the application</a>' in forbidden.get_data(as_text=True)

    allowed.append(True)
    missing = client.get("/history/objects/Todo?key=12345", **mounted)
    assert missing.status_code == 404
    html = missing.get_data(as_text=True)
    assert "<title>404 Not Found · Chrononaut</title>" in html
    assert "Todo 12345 has no recorded history." in html
    assert '<a href="/shop/history/">versioned models</a>' in html
    assert '<a href="/shop/history/activity">activity feed</a>' in html
    assert "Confidential" not in html


def test_the_permission_callback_decides_each_request(app, db, session, models):
    allowed = []
    app.register_blueprint(history_blueprint(lambda: bool(allowed)), url_prefix="/history")
    session.add(models.Todo(title="x"))
    session.commit()
    client = app.test_client()
    assert client.get("/history/activity").status_code == 403
    allowed.append(True)
    assert client.get("/history/activity").status_code == 200


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
    # Newest first; each version with its kind, user, address, change info and diff.
    assert page.index("Version 3") < page.index("Version 2") < page.index("Version 0")
    assert "4 versions" in page
    assert "Version 3 changed Changed" in page
    assert "User grace@example.org Address 10.0.0.2 ticket T-7" in page
    assert "Column Before After done false true" in page
    assert (
        "rationale clearer title What changed in version 1 Column Before After title Draft Final"
        in page
    )
    assert "Version 0 created" in page
    assert "title — none Draft" in page
    assert "deleted" not in page


def test_timeline_marks_hidden_columns_and_never_shows_their_values(app, client, session, models):
    todo = todo_history(app, session, models)
    html = client.get(timeline_url("todo", todo.id)).get_data(as_text=True)
    page = text_of(client.get(timeline_url("todo", todo.id)))
    assert (
        "User ada@example.org Address 10.0.0.1 What changed in version 2 Column Before After "
        "secret changed (hidden)"
    ) in page
    assert (
        '<tr class="hidden"><th scope="row">secret</th><td colspan="2">changed (hidden)</td></tr>'
        in html
    )
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
        seen.append(re.findall(r"key=(\d+)#change-", html))
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
    assert re.findall(r"objects/(\w+)\?", html) == ["Country"]

    html = client.get("/history/activity?user=grace@example.org&model=todo").get_data(as_text=True)
    assert re.findall(r"objects/(\w+)\?", html) == ["Todo", "Todo"]
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
        ("kind=deleted%00", "kind: 'deleted\\x00' is not one of created, changed, deleted"),
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
    html = client.get("/history/activity").get_data(as_text=True)
    assert "leaked" not in html
    assert [row[5] for row in feed_rows(html)] == [
        "secret (hidden)",
        "done id title secret (hidden)",
    ]


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
    assert "Country \\u202e\\x1b 0" in text_of(client.get("/history/activity"))
    assert "Country code=\\u202e\\x1b" in text_of(
        client.get("/history/objects/country?key=%E2%80%AE%1B")
    )


def test_the_feed_says_what_happened_to_which_object(app, session, models, feed):
    todo = todo_history(app, session, models)
    with acting_as(app, "grace@example.org", "10.0.0.2"):
        session.add(models.Country(code="NO", name="Norway"))
        session.commit()
    # Changed, kind, model, key, version, columns, user, address, change info; the
    # hidden column by name only.
    assert [row[1:] for row in feed()] == [
        ["created", "Country", "NO", "0", "code name", "grace@example.org", "10.0.0.2", ""],
        ["changed", "Todo", str(todo.id), "3", "done", "grace@example.org", "10.0.0.2",
         "ticket: T-7"],
        ["changed", "Todo", str(todo.id), "2", "secret (hidden)", "ada@example.org",
         "10.0.0.1", ""],
        ["changed", "Todo", str(todo.id), "1", "title", "grace@example.org", "10.0.0.2",
         "rationale: clearer title"],
        ["created", "Todo", str(todo.id), "0", "done id text title secret (hidden)",
         "ada@example.org", "10.0.0.1", ""],
    ]  # fmt: skip


def test_each_feed_row_links_to_its_version_in_the_timeline(app, client, session, models):
    todo = todo_history(app, session, models)
    html = client.get("/history/activity").get_data(as_text=True)
    ids = [snapshot.chrononaut_activity_id for snapshot in todo.versions()]
    assert re.findall(
        r'<a href="([^"]+)"><span class="sr-only">Timeline of Todo </span>', html
    ) == [
        f"/history/objects/Todo?key={todo.id}#change-{ids[3]}",
        f"/history/objects/Todo?key={todo.id}#change-{ids[2]}",
    ]
    timeline = client.get(timeline_url("Todo", todo.id)).get_data(as_text=True)
    # Each version's heading has the id the feed links to; its section, the version's.
    assert f'<section class="version" id="v3">\n  <h2 id="change-{ids[3]}">Version 3' in timeline


def test_the_feed_filters_by_kind_of_change(app, client, session, models, feed):
    todo_history(app, session, models)
    session.add(models.Country(code="NO", name="Norway"))
    session.commit()
    assert [(row[1], row[2], row[4]) for row in feed("kind=created")] == [
        ("created", "Country", "0"),
        ("created", "Todo", "0"),
    ]
    assert [(row[1], row[4]) for row in feed("kind=changed&model=Todo")] == [
        ("changed", "3"),
        ("changed", "2"),
        ("changed", "1"),
    ]
    html = client.get("/history/activity?kind=changed").get_data(as_text=True)
    assert 'rel="next" href="/history/activity?page=2&amp;kind=changed"' in html
    assert '<option value="changed" selected>changed</option>' in html


def test_changed_columns_compare_each_change_with_its_own_object(app, client, session, models):
    # Two objects changed in turn, two changes to a page: the snapshot each change is
    # compared with is often on another page.
    first, second = models.Todo(title="a", text="x"), models.Todo(title="b", text="y")
    session.add_all([first, second])
    session.commit()
    for step in range(3):
        first.title = f"a{step}"
        session.commit()
        second.text = f"y{step}"
        session.commit()
    columns = []
    for page in (1, 2, 3, 4):
        html = client.get(f"/history/activity?page={page}").get_data(as_text=True)
        columns += [(row[3], row[5]) for row in feed_rows(html)]
    assert columns == [
        (str(second.id), "text"),
        (str(first.id), "title"),
    ] * 3 + [(str(second.id), "done id text title"), (str(first.id), "done id text title")]


@pytest.mark.parametrize("operations", OPERATIONS)
def test_a_key_deleted_and_used_again_shows_both_lives(client, session, models, feed, operations):
    two_lives(session, models, operations)

    rows = feed()
    # Newest first: created again, the delete (which touched no column), the rename,
    # the first creation.
    assert [(row[1], row[4], row[5]) for row in rows] == [
        ("created", "0", "code name"),
        ("deleted", "2", ""),
        ("changed", "1", "name"),
        ("created", "0", "code name"),
    ]
    assert [row[4] for row in feed("kind=deleted")] == ["2"]
    assert [row[4] for row in feed("kind=created")] == ["0", "0"]
    assert [row[4] for row in feed("kind=changed")] == ["1"]

    html = client.get(timeline_url("Country", "NO")).get_data(as_text=True)
    page = seen(html)
    # The key lives on: the object is not marked deleted, and its version 0 is new.
    assert heading(html) == "Country code=NO"
    versions = re.findall(r"Version (\d) (created|changed|deleted)", page)
    assert versions == [("0", "created"), ("2", "deleted"), ("1", "changed"), ("0", "created")]
    assert "Column Before After code — NO name — Noreg" in page
    assert "Column Before After name Norway Norge" in page
    # Each change's heading has an id of its own, which the feed links to; the version
    # numbers, which repeat, name only the sections of the object that has the key now.
    headings = re.findall(r'<h2 id="(change-\d+)">', html)
    assert len(set(headings)) == 4
    feed_html = client.get("/history/activity").get_data(as_text=True)
    feed_html += client.get("/history/activity?page=2").get_data(as_text=True)
    assert re.findall(r"key=NO#([^\"]+)", feed_html) == headings
    assert re.findall(r'<section class="version" id="([^"]+)">', html) == ["v0"]


# One key's history after its creation: each step changes the object, deletes it, or
# creates it again once deleted (steps that do not fit are skipped).
LIFE_STEPS = st.lists(st.sampled_from(["change", "delete", "create"]), max_size=8)


@pytest.mark.parametrize("models", ["classic"], indirect=True)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=LIFE_STEPS)
def test_any_lives_of_a_key_read_the_same_without_recorded_operations(db, models, steps):
    db.session.remove()
    with db.engine.begin() as connection:
        connection.exec_driver_sql("TRUNCATE tag, chrononaut_activity CASCADE")
    session = db.session
    session.add(models.Tag(id=1, name="0"))
    session.commit()
    expected, alive = [CREATED], True
    for number, step in enumerate(steps, 1):
        if alive and step == "change":
            session.get(models.Tag, 1).name = str(number)
            expected.append(CHANGED)
        elif alive and step == "delete":
            session.delete(session.get(models.Tag, 1))
            expected.append(DELETED)
            alive = False
        elif not alive and step == "create":
            session.add(models.Tag(id=1, name=str(number)))
            expected.append(CREATED)
            alive = True
        else:
            continue
        session.commit()

    def read():
        timeline = object_timeline(session, models.Tag, {"id": 1})
        feed = activity_feed(session, db.activity_cls, limit=100)
        counts = {
            kind: len(activity_feed(session, db.activity_cls, kind=kind, limit=100))
            for kind in FILTERABLE_KINDS
        }
        snapshots = models.Tag(id=1).versions()
        live = session.get(models.Tag, 1) is not None
        kinds = [
            kind_of(snapshot, following, live)
            for snapshot, following in zip(snapshots, [*snapshots[1:], None], strict=True)
        ]
        return timeline, [entry.kind for entry in reversed(feed)], counts, kinds

    timeline, feed, counts, kinds = read()
    assert [entry.kind for entry in timeline] == feed == kinds == expected
    assert counts == {kind: expected.count(kind) for kind in FILTERABLE_KINDS}
    assert has_been_deleted(timeline) == (not alive)
    for entry in timeline:
        if entry.kind == CREATED:  # a new life: every value is new
            assert entry.changes == {"id": (None, 1), "name": (None, entry.state["name"])}
    forget_operations(session)
    assert read() == (timeline, feed, counts, kinds)


@pytest.mark.parametrize("operations", OPERATIONS)
def test_deletes_of_inherited_models_are_read_from_their_own_tables(
    session, models, feed, operations
):
    # A joined subclass's live rows are in its own table, keyed by its own column.
    kept, gone = models.Dog(name="Rex", breed="collie"), models.Dog(name="Fido")
    animal = models.Animal(name="Generic")
    session.add_all([kept, gone, animal])
    session.commit()
    kept.breed = "border collie"
    session.delete(gone)
    session.delete(animal)
    session.commit()
    if operations == "not recorded":
        forget_operations(session)
    deleted = feed("kind=deleted")
    assert sorted((row[2], row[3]) for row in deleted) == [
        ("Animal", str(animal.id)),
        ("Dog", str(gone.id)),
    ]
    assert [(row[2], row[3], row[4]) for row in feed("kind=changed")] == [
        ("Dog", str(kept.id), "1")
    ]


@pytest.mark.parametrize("operations", OPERATIONS)
def test_an_object_reads_as_deleted_when_its_history_ends_with_a_delete(
    client, session, models, operations
):
    two_lives(session, models)
    session.delete(session.get(models.Country, "NO"))
    session.commit()
    if operations == "not recorded":
        forget_operations(session)
    html = client.get(timeline_url("Country", "NO")).get_data(as_text=True)
    assert heading(html) == "Country code=NO deleted"
    page = seen(html)
    versions = re.findall(r"Version (\d) (created|changed|deleted)", page)
    assert [kind for _, kind in versions] == ["deleted", "created", "deleted", "changed", "created"]


def test_deleted_or_not_is_read_from_history_not_from_the_live_table(client, session, models):
    # Rows changed without versioning leave history as it was: history says the first
    # country was deleted and the second lives, whatever their tables hold now.
    session.add_all([models.Country(code="NO", name="Norway"), models.Country(code="SE")])
    session.commit()
    session.delete(session.get(models.Country, "NO"))
    session.commit()
    with suppress_versioning():
        session.add(models.Country(code="NO", name="Norway, unrecorded"))
        session.delete(session.get(models.Country, "SE"))
        session.commit()
    assert heading(client.get(timeline_url("Country", "NO")).get_data(as_text=True)) == (
        "Country code=NO deleted"
    )
    assert heading(client.get(timeline_url("Country", "SE")).get_data(as_text=True)) == (
        "Country code=SE"
    )


def test_the_feed_of_a_table_made_before_operations_were_recorded(
    client, db, session, models, feed
):
    two_lives(session, models)
    gone = models.Country(code="SE", name="Sweden")
    session.add(gone)
    session.commit()
    session.delete(gone)
    session.commit()
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN operation"))
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN transaction_id"))
    session.commit()
    db.engine.dispose()

    assert [(row[1], row[3], row[4]) for row in feed()] == [
        ("deleted", "SE", "1"),
        ("created", "SE", "0"),
        ("created", "NO", "0"),
        ("deleted", "NO", "2"),
        ("changed", "NO", "1"),
        ("created", "NO", "0"),
    ]
    assert [(row[3], row[4]) for row in feed("kind=deleted")] == [("SE", "1"), ("NO", "2")]
    html = client.get(timeline_url("Country", "SE")).get_data(as_text=True)
    assert heading(html) == "Country code=SE deleted"
    assert re.findall(r"Version (\d) (created|deleted)", seen(html)) == [
        ("1", "deleted"),
        ("0", "created"),
    ]


def test_the_feed_reads_a_page_and_what_came_before_each_change_in_one_query(
    app, db, session, models
):
    for number in range(30):
        todo = models.Todo(title=f"todo {number}")
        session.add(todo)
        session.commit()
        todo.title = f"todo {number}, changed"
        session.commit()
    statements = []
    engine = db.engine

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    for name, per_page in (("small", 2), ("large", 24)):
        app.register_blueprint(
            history_blueprint(lambda: True, name=name, per_page=per_page), url_prefix=f"/{name}"
        )
    client = app.test_client()
    event.listen(engine, "before_cursor_execute", count)
    try:
        for name, per_page in (("small", 2), ("large", 24)):
            statements.clear()
            html = client.get(f"/{name}/activity?page=2").get_data(as_text=True)
            assert len(statements) == 1, statements
            rows = feed_rows(html)
            assert len(rows) == per_page
            assert [row[5] for row in rows] == ["title", "done id title"] * (per_page // 2)
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_a_missing_value_is_one_mark_with_a_label_everywhere(app, client, session, models):
    todo = models.Todo(title="No request, no user")
    session.add(todo)
    session.commit()
    with extra_change_info(reviewer=None):
        todo.text = "set"
        session.commit()
    timeline = client.get(timeline_url("Todo", todo.id)).get_data(as_text=True)
    # Version 1: its user and address, the reviewer, the text before it was set, and
    # the priority and due date in its full state. Version 0: its user and address,
    # every value before it, its text, priority and due date after, and in its state.
    assert timeline.count(MISSING_HTML) == (2 + 1 + 1 + 2) + (2 + 6 + 3 + 3)
    feed_html = client.get("/history/activity").get_data(as_text=True)
    assert [row[6:] for row in feed_rows(feed_html)] == [
        ["—", "—", "reviewer: —"],
        ["—", "—", ""],
    ]
    assert feed_html.count(MISSING_HTML) == 5
    for html in (timeline, feed_html):
        assert "null" not in seen(html)


def test_enum_values_show_the_member_name(app, db, client, session, models):
    todo = models.Todo(title="Urgent", priority=Priority.HIGH)
    session.add(todo)
    session.commit()
    todo.priority = Priority.LOW
    session.commit()
    # What an older writer, or a member since removed, left behind is shown as stored.
    table = db.activity_cls.__table__
    row = session.execute(select(table).where(table.c.version == 1)).one()
    with suppress_versioning(allow_deleting_history=True):
        session.execute(
            insert(table).values(
                table_name="todo",
                changed=row.changed,
                version=2,
                key=row.key,
                data={**row.data, "version": 2, "priority": "Priority.MEDIUM"},
            )
        )
        session.commit()
    page = seen(client.get(timeline_url("Todo", todo.id)).get_data(as_text=True))
    assert "What changed in version 1 Column Before After priority HIGH LOW" in page
    assert "What changed in version 2 Column Before After priority LOW Priority.MEDIUM" in page
    assert "priority — HIGH" in page
    assert "Priority.HIGH" not in page and "Priority.LOW" not in page


def test_a_long_text_change_highlights_the_changed_part_and_stays_escaped(client, session, models):
    before = "Terms\nPay within <b>30</b> days.\nNo refunds.\nSigned: shop"
    after = "Terms\nPay within <b>14</b> days.\nNo refunds.\nReturns within a week.\nSigned: shop"
    todo = models.Todo(title="Short", text=before)
    session.add(todo)
    session.commit()
    todo.title, todo.text = "Brief", after
    session.commit()
    html = client.get(timeline_url("Todo", todo.id)).get_data(as_text=True)
    old = re.search(r'<td class="old" data-label="Before">(.*?)</td>', html, re.DOTALL).group(1)
    new = re.search(r'<td class="new" data-label="After">(.*?)</td>', html, re.DOTALL).group(1)
    assert old == (
        '<span class="text">Terms\nPay within &lt;b&gt;<del>30</del>&lt;/b&gt; days.\n'
        "No refunds.\nSigned: shop</span>"
    )
    assert new == (
        '<span class="text">Terms\nPay within &lt;b&gt;<ins>14</ins>&lt;/b&gt; days.\n'
        "No refunds.\n<ins>Returns within a week.\n</ins>Signed: shop</span>"
    )
    # A value replaced as a whole is shown as it is.
    assert '<td class="old" data-label="Before"><span class="text">Short</span></td>' in html
