"""The demo's history viewer in a real headless Chromium.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``) and selenium; nothing is downloaded. Without them the tests
skip, unless ``CHRONONAUT_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes that a failure.
Screenshots go to ``$CHRONONAUT_SCREENSHOT_DIR``, else to a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.demo_process import servers_under, start_demo, stop_demo

# Real browsers and real processes: left out of the quick loop, `pytest -m "not slow"`.
pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _missing() -> str | None:
    for program in (CHROMIUM, CHROMEDRIVER):
        if not program.exists():
            return f"{program} is not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    temp_dir = tmp_path_factory.mktemp("demo")
    process, url, _ = start_demo(temp_dir)
    yield url
    output = stop_demo(process, signal.SIGINT)
    assert process.returncode == 0, output
    assert servers_under(temp_dir) == []


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = _missing()
    if missing:
        if os.environ.get("CHRONONAUT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"CHRONONAUT_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # running as root in CI containers
        "--disable-gpu",
        # The machine has no outside network: keep Chromium from trying to phone home.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--window-size=1200,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    configured = os.environ.get("CHRONONAUT_SCREENSHOT_DIR")
    directory = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def open_link(driver, demo, link_id):
    driver.get(demo)
    driver.get(css(driver, f"#{link_id}")[0].get_attribute("href"))


# The tests run in file order and share one browser session: first signed out, then in.


def test_the_viewer_is_forbidden_before_signing_in(browser, demo):
    open_link(browser, demo, "try-forbidden")
    assert "403 Forbidden" in browser.title
    assert css(browser, "table.feed") == []


def test_signing_in_opens_the_paged_activity_feed(browser, demo, screenshots):
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    browser.get(demo)
    css(browser, "#sign-in")[0].click()
    WebDriverWait(browser, 30).until(expected_conditions.title_contains("Activity"))
    first_page = [row.text for row in css(browser, "table.feed tbody tr")]
    assert len(first_page) == 10
    assert "demo_document" in first_page[0] and "duplicate of the handbook" in first_page[0]
    browser.save_screenshot(str(screenshots / "viewer-activity.png"))

    css(browser, 'a[rel="next"]')[0].click()
    WebDriverWait(browser, 30).until(expected_conditions.url_contains("page=2"))
    second_page = [row.text for row in css(browser, "table.feed tbody tr")]
    assert len(second_page) == 8  # 18 changes in all
    assert not set(first_page) & set(second_page)
    assert "initial accounts" in second_page[-1]
    assert css(browser, 'a[rel="next"]') == []
    assert css(browser, 'a[rel="prev"]')


def test_the_feed_filters_by_user(browser, demo):
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    browser.get(demo + "history/activity")
    css(browser, 'input[name="user"]')[0].send_keys("grace@example.org")
    css(browser, ".filters button")[0].click()
    WebDriverWait(browser, 30).until(expected_conditions.url_contains("user=grace"))
    users = [row.find_elements("css selector", "td")[4].text for row in css(browser, "tbody tr")]
    assert users == ["grace@example.org"] * 4


def test_the_timeline_shows_each_version_with_a_side_by_side_diff(browser, demo, screenshots):
    open_link(browser, demo, "report")
    assert [section.get_attribute("id") for section in css(browser, "section.version")] == [
        "v3",
        "v2",
        "v1",
        "v0",
    ]
    version_1 = css(browser, "#v1")[0]
    assert "grace@example.org" in version_1.text and "203.0.113.20" in version_1.text
    assert "fix the revenue figure" in version_1.text
    body_row = version_1.find_elements("css selector", "table.diff tbody tr")
    assert [cell.text for cell in body_row[0].find_elements("css selector", "th, td")] == [
        "body",
        "Revenue grew 4%.",
        "Revenue grew 6%, driven by the new plans.",
    ]
    assert "ticket\nDOC-7" in css(browser, "#v2")[0].text
    browser.save_screenshot(str(screenshots / "viewer-timeline.png"))
    assert (screenshots / "viewer-timeline.png").read_bytes().startswith(b"\x89PNG")


def test_hidden_columns_are_marked_but_never_shown(browser, demo, screenshots):
    open_link(browser, demo, "ada")
    hidden_rows = [row.text for row in css(browser, "#v1 tr.hidden")]
    assert hidden_rows == ["password_hash changed (hidden)"]
    assert "pbkdf2" not in browser.page_source
    browser.save_screenshot(str(screenshots / "viewer-hidden.png"))


def test_a_deleted_document_keeps_its_history(browser, demo):
    open_link(browser, demo, "scratch")
    assert "deleted" in css(browser, "h1")[0].text
    assert "duplicate of the handbook" in css(browser, "#v1")[0].text
