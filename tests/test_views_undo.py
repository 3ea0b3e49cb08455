"""Undo from the history viewer: the revert and restore buttons of a timeline, their
confirmation pages and the POSTs that undo, through Flask's test client."""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chrononaut.unsafe import suppress_versioning
from chrononaut.views import history_blueprint
from tests.viewer_data import todo_history, two_lives

REVERT = "/history/objects/Todo/revert?key=1&version=1"
RESTORE = "/history/objects/Todo/restore?key=1"


@pytest.fixture
def writer(app, db, models):
    """A client of the viewer under ``/history`` that may read and write, and under
    ``/read`` one that may only read."""
    app.register_blueprint(
        history_blueprint(lambda: True, write_permission=lambda: True), url_prefix="/history"
    )
    app.register_blueprint(history_blueprint(lambda: True, name="read"), url_prefix="/read")
    return app.test_client()


@pytest.fixture
def todo(app, session, models):
    """The todo of :func:`todo_history`: versions 0 to 3, its secret set in version 2."""
    return todo_history(app, session, models)


def message_of(response):
    text = re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))
    return " ".join(html.unescape(text).split())


def token_of(response):
    match = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
    assert match is not None
    return match.group(1)


def confirm(client, url, **fields):
    """Load the confirmation page at ``url``, then post its form with ``fields`` over
    the page's own."""
    page = client.get(url)
    assert page.status_code == 200
    current = re.search(r'name="current" value="(\d+)"', page.get_data(as_text=True))
    form = {"csrf_token": token_of(page), "current": current.group(1), **fields}
    return client.post(url, data=form)


def newest_id(session, obj):
    """The activity row id of ``obj``'s newest version: what a form sends as ``current``."""
    session.expire_all()
    return str(obj.versions()[-1].chrononaut_activity_id)


def versions_of(session, todo):
    session.expire_all()
    return [(v.chrononaut_version, v.chrononaut_extra_info) for v in todo.versions()]


def test_without_write_permission_the_timeline_has_no_buttons(writer, todo):
    page = writer.get("/read/objects/Todo?key=1").get_data(as_text=True)
    assert "revert" not in page.lower()
    assert "/restore" not in page


def test_with_write_permission_every_earlier_version_has_a_revert_button(writer, todo):
    page = writer.get("/history/objects/Todo?key=1").get_data(as_text=True)
    links = re.findall(r'href="(/history/objects/Todo/revert\?[^"]+)"', page)
    assert [html.unescape(link) for link in links] == [
        f"/history/objects/Todo/revert?key=1&version={number}" for number in (2, 1, 0)
    ]
    assert "/restore" not in page


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize(
    "url", ["/objects/Todo/revert?key=1&version=1", "/objects/Todo/restore?key=1"]
)
def test_write_routes_answer_403_without_write_permission(writer, session, todo, method, url):
    before = versions_of(session, todo)
    response = getattr(writer, method)(f"/read{url}", data={"rationale": "x"})
    assert response.status_code == 403
    assert versions_of(session, todo) == before


def test_a_write_permission_that_says_no_answers_403(app, db, session, models):
    todo = todo_history(app, session, models)
    app.register_blueprint(
        history_blueprint(lambda: True, write_permission=lambda: False), url_prefix="/history"
    )
    client = app.test_client()
    assert "revert" not in client.get("/history/objects/Todo?key=1").get_data(as_text=True)
    assert client.get(REVERT).status_code == 403
    assert versions_of(session, todo)[-1][0] == 3


def test_the_read_permission_is_asked_before_the_write_permission(app, db, session, models):
    todo_history(app, session, models)
    app.register_blueprint(
        history_blueprint(lambda: False, write_permission=lambda: True), url_prefix="/history"
    )
    assert app.test_client().get(REVERT).status_code == 403


@pytest.mark.parametrize("deleted", [False, True])
def test_without_a_secret_key_pages_read_and_undo_is_refused_with_a_reason(
    app, db, session, models, deleted
):
    todo = todo_history(app, session, models)
    if deleted:
        session.delete(todo)
        session.commit()
    app.secret_key = None
    app.register_blueprint(
        history_blueprint(lambda: True, write_permission=lambda: True), url_prefix="/history"
    )
    client = app.test_client()
    timeline = client.get("/history/objects/Todo?key=1")
    assert timeline.status_code == 200
    assert "/revert" not in timeline.get_data(as_text=True)
    assert "/restore" not in timeline.get_data(as_text=True)
    for url in (REVERT, RESTORE):
        for method in (client.get, client.post):
            refused = method(url, data={"rationale": "x"})
            assert refused.status_code == 403
            assert "Undo is turned off: the app has no SECRET_KEY" in message_of(refused)
    assert versions_of(session, todo)[-1][0] == (4 if deleted else 3)


def test_the_confirmation_page_shows_the_diff_and_never_a_hidden_value(writer, todo):
    response = writer.get(REVERT)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    text = message_of(response)
    # From version 3 (done, title Final) back to version 1 (not done, title Final).
    rows = re.findall(r"<tr>\s*<th scope=\"row\">([^<]+)</th>", page)
    assert rows == ["done"]
    assert "from version 3 (now) to version 1" in text
    assert "hunter2" not in page
    assert "correct horse" not in page
    assert "Hidden columns keep their current values, as theirs were never recorded: secret" in text
    assert re.search(r"<textarea[^>]*name=\"rationale\"[^>]*required", page)


def test_a_revert_records_a_new_version_with_the_rationale_and_redirects(writer, session, todo):
    response = confirm(writer, REVERT, rationale="  done by mistake \n")
    assert response.status_code == 303
    version, extra_info = versions_of(session, todo)[-1]
    assert version == 4
    assert extra_info == {"rationale": "done by mistake", "reverted_to": 1}
    anchor = f"change-{todo.versions()[-1].chrononaut_activity_id}"
    assert response.headers["Location"] == f"/history/objects/Todo?key=1#{anchor}"
    assert todo.done is False
    assert todo.secret == "correct horse"
    timeline = writer.get("/history/objects/Todo?key=1").get_data(as_text=True)
    assert f'id="{anchor}">Version 4' in timeline


def test_a_deleted_object_is_restored(writer, session, todo):
    session.delete(todo)
    session.commit()
    timeline = writer.get("/history/objects/Todo?key=1").get_data(as_text=True)
    assert f'href="{RESTORE}"' in timeline
    assert "/revert" not in timeline
    page = writer.get(RESTORE)
    assert page.status_code == 200
    assert "correct horse" not in page.get_data(as_text=True)
    assert "they come back with their column's default, or empty: secret" in message_of(page)
    response = confirm(writer, RESTORE, rationale="deleted the wrong one")
    assert response.status_code == 303
    restored = session.get(type(todo), 1)
    assert (restored.title, restored.done) == ("Final", True)
    version, extra_info = versions_of(session, restored)[-1]
    assert version == 5
    assert extra_info == {"rationale": "deleted the wrong one", "undeleted": True}


def test_restore_of_a_live_object_answers_409(writer, session, todo):
    assert writer.get(RESTORE).status_code == 409


def test_a_key_used_again_offers_only_the_versions_of_its_current_object(writer, models, session):
    two_lives(session, models)
    session.get(models.Country, "NO").name = "Noreg!"
    session.commit()
    page = writer.get("/history/objects/Country?key=NO").get_data(as_text=True)
    links = re.findall(r'href="(/history/objects/Country/revert\?[^"]+)"', page)
    assert [html.unescape(link) for link in links] == [
        "/history/objects/Country/revert?key=NO&version=0"
    ]
    # Version 1 of the earlier Norway is not one of this object's.
    assert writer.get("/history/objects/Country/revert?key=NO&version=1").status_code == 404


@pytest.mark.parametrize("token", [None, "", "wrong"])
def test_a_post_without_the_right_form_token_answers_400_and_changes_nothing(
    writer, session, todo, token
):
    writer.get(REVERT)  # the session has a token
    form = {"current": newest_id(session, todo), "rationale": "forged"}
    if token is not None:
        form["csrf_token"] = token
    response = writer.post(REVERT, data=form)
    assert response.status_code == 400
    assert "did not come from this site" in message_of(response)
    assert versions_of(session, todo)[-1][0] == 3


def test_a_token_of_another_session_is_refused(app, writer, session, todo):
    other_token = token_of(app.test_client().get(REVERT))
    writer.get(REVERT)
    response = writer.post(
        REVERT,
        data={"csrf_token": other_token, "current": newest_id(session, todo), "rationale": "x"},
    )
    assert response.status_code == 400
    assert versions_of(session, todo)[-1][0] == 3


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_an_empty_rationale_answers_400_with_the_form_again(writer, session, todo, text):
    response = confirm(writer, REVERT, rationale=text)
    assert response.status_code == 400
    assert "Give a rationale" in message_of(response)
    assert 'name="rationale"' in response.get_data(as_text=True)
    assert versions_of(session, todo)[-1][0] == 3


def test_a_rationale_postgresql_cannot_store_answers_400(writer, session, todo):
    response = confirm(writer, REVERT, rationale="before\x00after")
    assert response.status_code == 400
    assert "NUL character" in message_of(response)
    assert versions_of(session, todo)[-1][0] == 3


def test_a_stale_form_answers_409_and_changes_nothing(writer, session, todo):
    page = writer.get(REVERT)
    shown = newest_id(session, todo)
    todo.title = "Changed meanwhile"
    session.commit()
    response = writer.post(
        REVERT, data={"csrf_token": token_of(page), "current": shown, "rationale": "undo"}
    )
    assert response.status_code == 409
    assert "changed since the page was shown" in message_of(response)
    assert versions_of(session, todo)[-1][0] == 4
    assert todo.title == "Changed meanwhile"


def test_a_restore_refused_because_the_key_is_taken_answers_409(writer, session, models, todo):
    session.delete(todo)
    session.commit()
    page = writer.get(RESTORE)
    with suppress_versioning():
        session.add(models.Todo(id=1, title="Squatter"))
        session.commit()
    current = re.search(r'name="current" value="(\d+)"', page.get_data(as_text=True)).group(1)
    response = writer.post(
        RESTORE, data={"csrf_token": token_of(page), "current": current, "rationale": "back"}
    )
    assert response.status_code == 409
    assert "nothing was changed" in message_of(response)
    assert session.get(models.Todo, 1).title == "Squatter"


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/history/objects/Todo/revert?key=1&version=3", 404),  # the newest: its state now
        ("/history/objects/Todo/revert?key=1&version=9", 404),
        ("/history/objects/Todo/revert?key=1&version=-1", 400),
        ("/history/objects/Todo/revert?key=1&version=%C2%B2", 400),
        ("/history/objects/Todo/revert?key=1", 400),
        ("/history/objects/Todo/revert?key=2&version=0", 404),
        ("/history/objects/Todo/revert?key=x&version=0", 404),
        ("/history/objects/Nope/revert?key=1&version=0", 404),
    ],
)
def test_bad_keys_and_versions_answer_like_the_rest_of_the_viewer(writer, todo, url, status):
    assert writer.get(url).status_code == status


@pytest.fixture
def token(writer, todo):
    """The form token of ``writer``'s session, read once: it stays the session's, and
    once an example has reverted the todo to version 1, that page has no form."""
    return token_of(writer.get(REVERT))


def or_valid(strategy):
    """``strategy``, or ``None`` (twice as often) for the value a form shown just now
    sends, so that a fair share of the examples get as far as an undo."""
    return st.one_of(st.none(), st.none(), strategy)


FIELD = st.one_of(st.text(max_size=30), st.sampled_from(["0", "1", "3", "-1", "", " "]))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prefix=st.sampled_from(["/history", "/read"]),
    path=st.sampled_from(["revert", "restore"]),
    key=or_valid(st.text(max_size=10)),
    version=or_valid(FIELD),
    current=or_valid(FIELD),
    rationale=or_valid(st.text(max_size=40)),
    csrf_token=or_valid(st.text(max_size=50)),
)
def test_posting_anything_answers_only_303_400_403_404_or_409(
    writer, session, todo, token, prefix, path, key, version, current, rationale, csrf_token
):
    newest = todo.versions()[-1].chrononaut_version
    form = {
        "csrf_token": token if csrf_token is None else csrf_token,
        "current": newest_id(session, todo) if current is None else current,
        "rationale": "fuzzed" if rationale is None else rationale,
    }
    query = {
        "key": "1" if key is None else key,
        # The version before the newest: one to revert to.
        "version": str(newest - 1) if version is None else version,
    }
    response = writer.post(f"{prefix}/objects/Todo/{path}", query_string=query, data=form)
    event(f"status {response.status_code}")
    expected = {403} if prefix == "/read" else {303, 400, 404, 409}
    assert response.status_code in expected


def test_a_version_with_the_values_of_now_has_nothing_to_revert(writer, session, todo):
    todo.secret = "only a hidden change"
    session.commit()
    url = "/history/objects/Todo/revert?key=1&version=3"
    page = writer.get(url)
    assert page.status_code == 200
    assert "nothing to revert" in message_of(page)
    assert "<form" not in page.get_data(as_text=True)
    token = token_of(writer.get(REVERT))
    response = writer.post(
        url, data={"csrf_token": token, "current": newest_id(session, todo), "rationale": "no-op"}
    )
    assert response.status_code == 409
    assert "nothing to revert" in message_of(response)
    assert versions_of(session, todo)[-1][0] == 4


def test_a_key_deleted_and_used_again_since_the_page_was_shown_is_a_stale_form(
    writer, session, models
):
    session.add(models.Country(code="SE", name="Sweden"))
    session.commit()
    session.get(models.Country, "SE").name = "Sverige"
    session.commit()
    url = "/history/objects/Country/revert?key=SE&version=0"
    page = writer.get(url)
    shown = newest_id(session, session.get(models.Country, "SE"))
    # Another object gets the key, and the same version numbers.
    session.delete(session.get(models.Country, "SE"))
    session.commit()
    session.add(models.Country(code="SE", name="Svezia"))
    session.commit()
    session.get(models.Country, "SE").name = "Suecia"
    session.commit()
    response = writer.post(
        url, data={"csrf_token": token_of(page), "current": shown, "rationale": "undo"}
    )
    assert response.status_code == 409
    session.expire_all()
    assert session.get(models.Country, "SE").name == "Suecia"


def test_a_restore_whose_unique_value_was_taken_answers_409(writer, session, models):
    session.add(models.User(id=1, name="Ada", email="ada@example.org", password="secret hash"))
    session.commit()
    session.delete(session.get(models.User, 1))
    session.commit()
    url = "/history/objects/User/restore?key=1"
    page = writer.get(url)
    assert "secret hash" not in page.get_data(as_text=True)
    shown = re.search(r'name="current" value="(\d+)"', page.get_data(as_text=True)).group(1)
    session.add(models.User(id=2, name="Ada again", email="ada@example.org"))
    session.commit()
    response = writer.post(
        url, data={"csrf_token": token_of(page), "current": shown, "rationale": "back"}
    )
    assert response.status_code == 409
    text = message_of(response)
    assert "The undo was refused, and nothing was changed" in text
    assert "ada@example.org" not in text, text
    session.expire_all()
    assert session.get(models.User, 1) is None
    assert [v.chrononaut_operation for v in session.get(models.User, 2).versions()] == ["insert"]
