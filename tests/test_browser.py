"""The demo's history viewer in a real headless Chromium.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``) and selenium, and ``npm`` to fetch axe-core, the accessibility
checker, from the npm registry; no browser is downloaded. Without them the tests skip,
unless ``CHRONONAUT_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes that a failure.
Every page is looked at 1280 and 400 pixels wide. Screenshots go to
``$CHRONONAUT_SCREENSHOT_DIR``, else to a temporary directory.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from chrononaut.views import history_blueprint
from tests.demo_process import servers_under, start_demo, stop_demo
from tests.viewer_data import todo_history

# Real browsers and real processes: left out of the quick loop, `pytest -m "not slow"`.
pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
AXE_CORE = "axe-core@4.10.3"

WIDE, NARROW = 1280, 400

# Words the viewer once broke across lines ("custom/er", "Versio/n", "clerk@shop.exa/mple").
WHOLE_WORDS = ("customer", "Version", "clerk@shop.example")


def _missing() -> str | None:
    for program in (CHROMIUM, CHROMEDRIVER):
        if not program.exists():
            return f"{program} is not installed (apt-get install chromium chromium-driver)"
    if shutil.which("npm") is None:
        return "npm is not installed (it fetches axe-core from the npm registry)"
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
        "--hide-scrollbars",
        f"--window-size={WIDE},1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(120)
    set_width(driver, WIDE)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def axe_source(tmp_path_factory, browser):
    """The source of axe-core's ``axe.min.js``, packed by npm from the registry."""
    directory = tmp_path_factory.mktemp("axe")
    packed = subprocess.run(
        ["npm", "pack", AXE_CORE, "--silent", "--pack-destination", str(directory)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    with tarfile.open(directory / packed.stdout.strip().splitlines()[-1]) as archive:
        member = archive.extractfile("package/axe.min.js")
        assert member is not None
        return member.read().decode()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    configured = os.environ.get("CHRONONAUT_SCREENSHOT_DIR")
    directory = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def set_width(driver, width):
    """Lay pages out ``width`` CSS pixels wide (a window cannot be made that narrow)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
    )


def css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def seen(driver, element):
    """The text of ``element`` as the eye sees it: without the words for screen readers
    only, white space collapsed."""
    return driver.execute_script(
        "const copy = arguments[0].cloneNode(true);"
        "copy.querySelectorAll('.sr-only').forEach((node) => node.remove());"
        "return copy.textContent.replace(/\\s+/g, ' ').trim();",
        element,
    )


def open_link(driver, demo, link_id):
    driver.get(demo)
    driver.get(css(driver, f"#{link_id}")[0].get_attribute("href"))


_BROKEN_WORDS = """
const words = arguments[0];
const found = Object.fromEntries(words.map((word) => [word, 0]));
const broken = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const node = walker.currentNode;
  for (const word of words) {
    for (let at = node.data.indexOf(word); at >= 0; at = node.data.indexOf(word, at + 1)) {
      const range = document.createRange();
      range.setStart(node, at);
      range.setEnd(node, at + word.length);
      const boxes = [...range.getClientRects()].filter((box) => box.width > 1);
      if (!boxes.length) continue;
      found[word] += 1;
      if (new Set(boxes.map((box) => Math.round(box.top))).size > 1) {
        broken.push(word + " in " + node.parentElement.outerHTML.slice(0, 80));
      }
    }
  }
}
return {found, broken};
"""


def assert_laid_out(driver, words=()):
    """The page needs no sideways scrolling, and each of ``words`` shows on one line."""
    overflow = driver.execute_script(
        "const page = document.documentElement; return page.scrollWidth - page.clientWidth;"
    )
    assert overflow == 0, f"{driver.current_url} is {overflow}px too wide"
    if words:
        result = driver.execute_script(_BROKEN_WORDS, list(words))
        assert result["broken"] == []
        assert all(result["found"].values()), result["found"]


def in_both_widths(driver, screenshots, name, words=(), keep_narrow=False):
    """Check the current page at both widths; keep a screenshot of the wide layout as
    ``name``.png, and of the narrow one as ``name``-narrow.png if ``keep_narrow``."""
    for width, suffix in ((WIDE, ""), (NARROW, "-narrow")):
        set_width(driver, width)
        driver.refresh()
        assert_laid_out(driver, words)
        if width == WIDE or keep_narrow:
            driver.save_screenshot(str(screenshots / f"{name}{suffix}.png"))
    set_width(driver, WIDE)
    driver.refresh()


def serious_violations(driver, axe_source):
    """Run axe-core on the current page; return its serious and critical violations."""
    driver.execute_script(axe_source)
    violations = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then((results) => done(results.violations.map((v) => ("
        "{id: v.id, impact: v.impact, targets: v.nodes.map((node) => node.target)}))))"
        ".catch((error) => done("
        "[{id: 'axe failed', impact: 'critical', targets: [String(error)]}]));"
    )
    return [v for v in violations if v["impact"] in ("serious", "critical")]


def assert_accessible(driver, axe_source):
    for width in (WIDE, NARROW):
        set_width(driver, width)
        driver.refresh()
        assert serious_violations(driver, axe_source) == [], driver.current_url
    set_width(driver, WIDE)
    driver.refresh()


# The tests run in file order and share one browser session: first signed out, then in.


def test_before_signing_in_the_landing_page_is_styled(browser, demo, screenshots, axe_source):
    browser.get(demo)
    bar = css(browser, "header.bar")[0]
    assert bar.value_of_css_property("background-color") == "rgba(29, 35, 42, 1)"
    brand = css(browser, ".bar .brand")[0]
    assert brand.value_of_css_property("color") == "rgba(255, 255, 255, 1)"
    in_both_widths(browser, screenshots, "demo-landing", keep_narrow=True)
    assert_accessible(browser, axe_source)


def test_the_viewer_is_forbidden_before_signing_in_with_a_way_back(
    browser, demo, screenshots, axe_source
):
    open_link(browser, demo, "try-forbidden")
    assert "403 Forbidden" in browser.title
    assert css(browser, "table.feed") == []
    assert css(browser, "header.bar")[0].value_of_css_property("background-color") == (
        "rgba(29, 35, 42, 1)"
    )
    back = [link.get_attribute("href") for link in css(browser, "main a")]
    assert back == [demo]
    in_both_widths(browser, screenshots, "viewer-forbidden")
    assert_accessible(browser, axe_source)


def test_signing_in_opens_the_paged_activity_feed(browser, demo, screenshots, axe_source):
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    browser.get(demo)
    css(browser, "#sign-in")[0].click()
    WebDriverWait(browser, 30).until(expected_conditions.title_contains("Activity"))
    rows = css(browser, "table.feed tbody tr")
    assert len(rows) == 10
    cells = [
        [seen(browser, cell) for cell in row.find_elements("css selector", "td")]
        for row in rows[:5]
    ]
    assert [row[1:6] for row in cells] == [
        ["changed", "Order", "1", "3", "status"],
        ["changed", "Order", "1", "2", "customer"],
        ["changed", "Order", "1", "1", "status"],
        ["created", "Order", "1", "0", "customer id status total"],
        ["created", "Person", "5", "0", "email id name role password_hash (hidden)"],
    ]
    assert cells[4][6:] == ["—", "192.0.2.1", "rationale: shop opened"]
    link = rows[1].find_elements("css selector", "td a")[0]
    assert re.search(r"/history/objects/Order\?key=1#change-\d+$", link.get_attribute("href"))
    in_both_widths(browser, screenshots, "viewer-activity", WHOLE_WORDS, keep_narrow=True)
    assert_accessible(browser, axe_source)

    pages = [[row.text for row in css(browser, "table.feed tbody tr")]]
    while css(browser, 'a[rel="next"]'):
        css(browser, 'a[rel="next"]')[0].click()
        WebDriverWait(browser, 30).until(expected_conditions.url_contains(f"page={len(pages) + 1}"))
        pages.append([row.text for row in css(browser, "table.feed tbody tr")])
    assert [len(page) for page in pages] == [10, 10, 3]  # 23 changes in all
    assert "initial accounts" in pages[-1][-1]
    assert css(browser, 'a[rel="prev"]')


def test_after_signing_in_the_landing_page_keeps_its_brand_readable(browser, demo, axe_source):
    browser.get(demo)
    assert "Signed in as audit@example.org" in css(browser, "main")[0].text
    brand = css(browser, ".bar .brand")[0]
    assert brand.text == "Chrononaut demo"
    assert brand.value_of_css_property("color") == "rgba(255, 255, 255, 1)"
    assert_laid_out(browser)
    assert_accessible(browser, axe_source)


def test_the_feed_filters_by_user_and_by_kind(browser, demo):
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    browser.get(demo + "history/activity")
    css(browser, 'input[name="user"]')[0].send_keys("grace@example.org")
    Select(css(browser, 'select[name="kind"]')[0]).select_by_visible_text("changed")
    css(browser, ".filters button")[0].click()
    WebDriverWait(browser, 30).until(expected_conditions.url_contains("user=grace"))
    rows = [row.find_elements("css selector", "td") for row in css(browser, "tbody tr")]
    assert [(row[1].text, row[6].text) for row in rows] == [("changed", "grace@example.org")] * 3
    assert [seen(browser, row[3]) for row in rows] == ["2", "2", "1"]


def test_the_timeline_highlights_what_changed_in_a_text(browser, demo, screenshots, axe_source):
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
    body_row = version_1.find_elements("css selector", "table.diff tbody tr")[0]
    assert [cell.text for cell in body_row.find_elements("css selector", "th, td")] == [
        "body",
        "Revenue grew 4%.",
        "Revenue grew 6%, driven by the new plans.",
    ]
    assert [mark.text for mark in body_row.find_elements("css selector", "del, ins")] == [
        "4%.",
        "6%, driven by the new plans.",
    ]
    assert "ticket\nDOC-7" in css(browser, "#v2")[0].text
    in_both_widths(browser, screenshots, "viewer-timeline", ["Version"], keep_narrow=True)
    assert_accessible(browser, axe_source)


def test_enum_values_show_their_member_names(browser, demo, screenshots):
    open_link(browser, demo, "order")
    rows = css(browser, "#v1 table.diff tbody tr")
    assert [
        [cell.text for cell in row.find_elements("css selector", "th, td")] for row in rows
    ] == [["status", "NEW", "PAID"]]
    assert "OrderStatus." not in browser.page_source
    in_both_widths(browser, screenshots, "viewer-order", ["customer", "clerk@shop.example"])


def test_hidden_columns_are_marked_but_never_shown(browser, demo, screenshots):
    open_link(browser, demo, "ada")
    hidden_rows = [row.text for row in css(browser, "#v1 tr.hidden")]
    assert hidden_rows == ["password_hash changed (hidden)"]
    assert "pbkdf2" not in browser.page_source
    # Version 0 was recorded without a signed-in user.
    user = css(browser, "#v0 dl.meta dd")[1]
    assert seen(browser, user) == "—"
    assert user.find_elements("css selector", ".sr-only")[0].get_attribute("textContent") == "none"
    browser.save_screenshot(str(screenshots / "viewer-hidden.png"))


def test_a_deleted_document_keeps_its_history(browser, demo):
    open_link(browser, demo, "scratch")
    assert "deleted" in css(browser, "h1")[0].text
    assert "duplicate of the handbook" in css(browser, "#v1")[0].text


def test_a_page_that_is_not_found_offers_a_way_back(browser, demo, screenshots, axe_source):
    browser.get(demo + "history/objects/Nope?key=1")
    assert "404 Not Found" in browser.title
    assert "no versioned model named 'Nope'" in css(browser, "main")[0].text
    links = [link.get_attribute("href") for link in css(browser, "main a")]
    assert links == [demo + "history/", demo + "history/activity"]
    in_both_widths(browser, screenshots, "viewer-not-found")
    assert_accessible(browser, axe_source)


def test_the_index_is_accessible(browser, demo, axe_source):
    browser.get(demo + "history/")
    assert_laid_out(browser)
    assert_accessible(browser, axe_source)


def test_reverting_from_a_timeline_asks_for_a_rationale_then_shows_the_new_version(
    app, session, models, browser, screenshots, axe_source
):
    """The demo's viewer may not write; this test serves one that may, from an app of
    its own in a thread, and reverts the todo of ``todo_history`` to its version 1."""
    todo = todo_history(app, session, models)
    # todo_history signs its users in with Flask-Login; the pages served have none.
    app.login_manager.user_loader(lambda user_id: None)
    app.register_blueprint(
        history_blueprint(lambda: True, write_permission=lambda: True), url_prefix="/history"
    )
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        from selenium.webdriver.support.ui import WebDriverWait

        # A click returns before the next page is loaded: wait for a part only it has.
        def wait_for(selector):
            return WebDriverWait(browser, 60).until(lambda driver: css(driver, selector))

        browser.get(f"http://127.0.0.1:{server.port}/history/objects/Todo?key=1")
        css(browser, "#v1 a.button")[0].click()
        wait_for("form.undo")
        assert "Revert to version 1?" in css(browser, "h1")[0].text
        rows = css(browser, "table.diff tbody tr")
        assert [
            [cell.text for cell in row.find_elements("css selector", "th, td")] for row in rows
        ] == [["done", "true", "false"]]
        in_both_widths(browser, screenshots, "viewer-revert")
        assert_accessible(browser, axe_source)
        css(browser, "#rationale")[0].send_keys("marked done by mistake")
        css(browser, "form.undo button")[0].click()
        newest = wait_for("section.version")[0]
        assert newest.get_attribute("id") == "v4"
        assert "reverted" in newest.find_element("css selector", "h2").text
        assert "marked done by mistake" in newest.text
        assert browser.current_url.endswith(
            f"#{newest.find_element('css selector', 'h2').get_attribute('id')}"
        )
        # The timeline with its buttons passes the checks too.
        assert_laid_out(browser, ["Version"])
        assert_accessible(browser, axe_source)
    finally:
        server.shutdown()
        thread.join()
    session.expire_all()
    assert (todo.done, todo.versions()[-1].chrononaut_extra_info) == (
        False,
        {"rationale": "marked done by mistake", "reverted_to": 1},
    )
