"""``python -m chrononaut.demo``: started, used and stopped as a separate process."""

from __future__ import annotations

import signal
from http.cookiejar import CookieJar
from urllib.error import HTTPError
from urllib.request import HTTPCookieProcessor, Request, build_opener

import pytest
from sqlalchemy import create_engine, text

from tests.demo_process import servers_under, start_demo, stop_demo

# Real browsers and real processes: left out of the quick loop, `pytest -m "not slow"`.
pytestmark = pytest.mark.slow


def test_demo_on_an_embedded_server_serves_and_stops_cleanly_on_ctrl_c(tmp_path):
    process, url, _ = start_demo(tmp_path)
    try:
        assert servers_under(tmp_path), "the embedded server should run under TMPDIR"
        browser = build_opener(HTTPCookieProcessor(CookieJar()))
        landing = browser.open(url).read().decode()
        assert "What this demo shows" in landing
        stylesheet = browser.open(url + "history/static/viewer.css")
        assert stylesheet.headers.get_content_type() == "text/css"
        with pytest.raises(HTTPError) as forbidden:
            browser.open(url + "history/activity")
        assert forbidden.value.code == 403
        assert "back to the application" in forbidden.value.read().decode()

        browser.open(Request(url + "sign-in", data=b"", method="POST"))
        person = browser.open(url + "history/objects/Person?key=1").read().decode()
        assert "yearly password rotation" in person
        assert "changed (hidden)" in person
        assert "pbkdf2:rotated" not in person
        feed = browser.open(url + "history/activity").read().decode()
        assert feed.count('<td data-label="Version" class="version">') == 10
        assert 'rel="next"' in feed
    finally:
        output = stop_demo(process, signal.SIGINT)
    assert process.returncode == 0, output
    assert "Stopped." in output
    assert servers_under(tmp_path) == []
    assert list(tmp_path.glob("chrononaut-*")) == []  # its data directory is gone too


def test_demo_on_a_given_database_seeds_it_once_and_stops_on_signals(tmp_path, database_url):
    given = database_url.render_as_string(hide_password=False)
    # The second start is a shell's background job, which inherits SIGINT ignored.
    for run, signum in enumerate((signal.SIGTERM, signal.SIGINT)):
        process, _, started = start_demo(
            tmp_path, "--database-url", given, ignore_sigint=signum == signal.SIGINT
        )
        output = stop_demo(process, signum)
        assert process.returncode == 0, output
        assert ("demo data already" in started) == (run == 1)
    assert servers_under(tmp_path) == []

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            count = connection.execute(
                text("SELECT table_name, count(*) FROM chrononaut_activity GROUP BY table_name")
            )
            assert dict(count.all()) == {"demo_person": 6, "demo_document": 13, "demo_order": 4}
            hidden = connection.execute(
                text("SELECT count(*) FROM chrononaut_activity WHERE data ? 'password_hash'")
            )
            assert hidden.scalar() == 0
            # People added before anyone signed in, and after, are recorded without a user.
            users = connection.execute(
                text(
                    "SELECT data->>'email', user_info->>'user_id' FROM chrononaut_activity "
                    "WHERE table_name = 'demo_person' AND version = 0"
                )
            )
            assert {email: user for email, user in users} == {
                "ada@example.org": None,
                "grace@example.org": None,
                "linus@example.org": None,
                "audit@example.org": None,
                "clerk@shop.example": None,
            }
            statuses = connection.execute(
                text(
                    "SELECT data->>'status' FROM chrononaut_activity "
                    "WHERE table_name = 'demo_order' ORDER BY version"
                )
            )
            assert statuses.scalars().all() == [
                "OrderStatus.NEW",
                "OrderStatus.PAID",
                "OrderStatus.PAID",
                "OrderStatus.SHIPPED",
            ]
    finally:
        engine.dispose()
