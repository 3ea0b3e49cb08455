"""Bad input to the viewer and to ``flask chrononaut history`` and ``activity``.

The viewer answers 400 to a filter it cannot read and 404 to a model or key that names
nothing; the commands exit with 2 and one ``Error:`` line for an argument they cannot
read, and with 1 for an object without history. Never a 500, never a traceback,
whatever is typed: the property tests at the end throw arbitrary text at every query
parameter and every option.
"""

from __future__ import annotations

import html
import json
import re
from urllib.parse import quote, quote_from_bytes, unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chrononaut import extra_change_info
from tests.viewer_data import acting_as, cli_runner, todo_history, viewer_client

DEEP_KEY = '{"id": ' + "[" * 3000 + "1" + "]" * 3000 + "}"
HUGE = "99999999999999999999"


@pytest.fixture
def client(app, db, models):
    return viewer_client(app)


@pytest.fixture
def run(app, db):
    return cli_runner(app)


@pytest.fixture
def history(app, session, models):
    """A todo with four versions, a country and a translation."""
    todo = todo_history(app, session, models)
    with acting_as(app, "grace@example.org", "10.0.0.2"), extra_change_info(ticket="T-9"):
        session.add(models.Country(code="NO", name="Norway"))
        session.add(models.Translation(locale="en", slug="intro", text="Hello"))
        session.commit()
    return todo


def message_of(response):
    """The text of the page, tags and entities undone, white space collapsed."""
    text = re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))
    return " ".join(html.unescape(text).split())


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page=%C2%B2", "page: '²' is not a page number"),
        (f"page={HUGE}", f"page: '{HUGE}' is not a page number"),
        ("page=-1", "page: '-1' is not a page number"),
        ("user=%00", r"user: '\x00' holds '\x00', which PostgreSQL cannot store"),
        ("user=grace%00", r"user: 'grace\x00' holds '\x00', which PostgreSQL cannot store"),
        ("since=2024%00", r"since: '2024\x00' is not an ISO 8601 date or time"),
        (
            "until=9999-12-31T23:59:59-01:00",
            "until: '9999-12-31T23:59:59-01:00' is out of range: in UTC it falls outside "
            "the years 1 to 9999",
        ),
        (
            "since=0001-01-01T00:00:00%2B01:00",
            "since: '0001-01-01T00:00:00+01:00' is out of range: in UTC it falls outside",
        ),
        ("model=%00", r"no versioned model named '\x00'"),
    ],
)
def test_the_feed_answers_400_to_filters_it_cannot_read(client, history, query, message):
    response = client.get(f"/history/activity?{query}")
    assert response.status_code == 400
    assert message in message_of(response)
    assert "No changes match." in message_of(response)


def test_the_last_page_the_database_can_skip_to_is_empty_not_an_error(client, history):
    # per_page is 2: page p skips 2 * (p - 1) rows, and OFFSET takes a BIGINT.
    last = (2**63 - 1) // 2 + 1
    response = client.get(f"/history/activity?page={last}")
    assert response.status_code == 200
    assert "No changes match." in message_of(response)
    response = client.get(f"/history/activity?page={last + 1}")
    assert response.status_code == 400
    assert f"page: '{last + 1}' is not a page number" in message_of(response)


@pytest.mark.parametrize("name", ["endpoint", "_external", "_scheme", "_anchor", "_method"])
def test_unknown_parameters_are_ignored_and_left_out_of_the_page_links(client, history, name):
    response = client.get(f"/history/activity?{name}=javascript&user=grace@example.org")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'rel="next" href="/history/activity?page=2&amp;user=grace@example.org"' in page


@pytest.mark.parametrize(
    ("model", "key", "message"),
    [
        ("Todo", "%00", r"'\x00' is not a valid id of Todo"),
        ("Todo", HUGE, f"'{HUGE}' is not a valid id of Todo"),
        ("Todo", "2147483648", "'2147483648' is not a valid id of Todo"),  # INTEGER + 1
        ("Todo", "-2147483649", "'-2147483649' is not a valid id of Todo"),
        ("Todo", "%C2%B2", "'²' is not a valid id of Todo"),
        ("Todo", "%D9%A1", "'\u0661' is not a valid id of Todo"),  # Arabic-Indic one
        ("Todo", quote(f'{{"id": {HUGE}}}'), f"{HUGE} is not a valid id of Todo"),
        ("Todo", quote('{"id": 1.0}'), "1.0 is not a valid id of Todo"),
        ("Todo", quote('{"id": true}'), "true is not a valid id of Todo"),
        ("Todo", quote('{"id": null}'), "null is not a valid id of Todo"),
        ("Todo", quote('{"id": "\\u0000"}'), r"'\x00' is not a valid id of Todo"),
        (
            "Todo",
            quote('{"id": ' + "1" * 5000 + "}"),
            "is not valid JSON",
        ),
        ("Todo", quote('{"id": NaN}'), "is not valid JSON: NaN is not a JSON number"),
        (
            "Todo",
            quote(DEEP_KEY),
            "the key of Todo is a JSON object of single values (text or numbers), "
            "with no list or object inside",
        ),
        (
            "Translation",
            quote('{"locale": ["en"], "slug": "intro"}'),
            "the key of Translation is a JSON object of single values",
        ),
        (
            "Country",
            "%00",
            r"'\x00' is not a valid code of Country: it holds '\x00', "
            "which PostgreSQL cannot store",
        ),
        (
            "Country",
            quote('{"code": "N\\u0000"}'),
            r"'N\x00' is not a valid code of Country: it holds '\x00'",
        ),
        (
            "Country",
            quote('{"code": "\\ud800"}'),
            r"'\ud800' is not a valid code of Country: it holds '\ud800'",
        ),
        ("Country", quote('{"code": 12}'), "12 is not a valid code of Country"),
        ("Country", "x" * 10001, "a key of 10,001 characters is too long: keys are at most 10,000"),
        ("Country", "ZZ", "Country ZZ has no recorded history."),
        ("Translation", quote('{"locale": "en", "slug": "outro"}'), "has no recorded history."),
    ],
)
def test_a_key_that_names_no_object_answers_404(client, history, model, key, message):
    response = client.get(f"/history/objects/{model}?key={key}")
    assert response.status_code == 404
    assert message in message_of(response)


@pytest.mark.parametrize(
    "model", ["%00", "Nope", "chrononaut_activity", "Note", "%E2%80%AE", "x" * 5000]
)
def test_a_model_that_is_not_versioned_answers_404(client, history, model):
    response = client.get(f"/history/objects/{model}?key=1")
    assert response.status_code == 404
    assert "no versioned model named" in message_of(response)


def assert_clean_error(result, exit_code, message):
    """The command ended with ``exit_code`` and one ``Error:`` line holding ``message``."""
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    last_line = result.output.rstrip("\n").splitlines()[-1]
    assert last_line.startswith("Error: ")
    assert message in last_line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Todo", DEEP_KEY], "the key of Todo is a JSON object of single values"),
        (["Todo", "\x00"], r"'\x00' is not a valid id of Todo"),
        (["Todo", '{"id": "\\u0000"}'], r"'\x00' is not a valid id of Todo"),
        (["Todo", HUGE], f"'{HUGE}' is not a valid id of Todo"),
        (["Todo", f'{{"id": {HUGE}}}'], f"{HUGE} is not a valid id of Todo"),
        (["Country", "\x00"], r"it holds '\x00', which PostgreSQL cannot store"),
        (["Country", '{"code": "\\u0000"}'], r"it holds '\x00', which PostgreSQL cannot store"),
        # A command line that is not UTF-8 reaches Python as lone surrogates.
        (["Country", "\udcff"], r"it holds '\udcff', which PostgreSQL cannot store"),
        (["Nope", "1"], "no versioned model named 'Nope'"),
        (["\x00", "1"], r"no versioned model named '\x00'"),
    ],
)
def test_history_refuses_a_key_that_cannot_exist(run, history, args, message):
    assert_clean_error(run("history", *args), 2, message)


def test_history_of_a_key_without_history_exits_1(run, history):
    assert_clean_error(
        run("history", "Country", "\x1b[2J"), 1, r"Country \x1b[2J has no recorded history."
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "\x00"], r"'\x00' holds '\x00', which PostgreSQL cannot store"),
        (["--user", "ada\udcff"], r"'ada\udcff' holds '\udcff', which PostgreSQL cannot store"),
        (["--limit", HUGE], f"{HUGE} is not in the range 1<=x<=9223372036854775807"),
        (["--limit", "²"], "'²' is not a valid integer"),
        (["--limit", "0"], "0 is not in the range 1<=x<=9223372036854775807"),
        (["--since", "\x00"], r"'\x00' is not an ISO 8601 date or time"),
        (["--until", "9999-12-31T23:59:59-01:00"], "is out of range: in UTC it falls outside"),
        (["--model", "\x00"], r"no versioned model named '\x00'"),
        (["--kind", "deleted\x00"], r"'deleted\x00' is not one of 'created', 'changed'"),
        (["--format", "\x1b[2J"], r"'\x1b[2J' is not one of 'table', 'json', 'csv'"),
    ],
)
def test_activity_refuses_options_it_cannot_use(run, history, args, message):
    assert_clean_error(run("activity", *args), 2, message)


@pytest.mark.parametrize(
    "query", ["since=0001-01-01T00:00:00-23:59", "until=9999-12-31T23:59:59%2B23:59"]
)
def test_the_feed_takes_any_offset_python_does(client, history, query):
    # PostgreSQL's own offsets stop at 15:59 hours: the times are given in UTC.
    response = client.get(f"/history/activity?{query}")
    assert response.status_code == 200
    assert "No changes match." not in message_of(response)


def test_activity_takes_any_offset_and_the_largest_limit_postgresql_does(run, history):
    result = run(
        "activity",
        *("--since", "0001-01-01T00:00:00-23:59", "--until", "9999-12-31T23:59:59+23:59"),
        *("--limit", str(2**63 - 1)),
    )
    assert result.exit_code == 0, result.output
    assert "6 changes shown." in result.output


# Property tests: arbitrary input, only the documented answers.

MODEL_NAMES = ["Todo", "todo", "Country", "Translation", "gadget"]
KNOWN_VALUES = [
    "Todo",
    "todo",
    "Country",
    "Translation",
    "translation",
    "NO",
    "1",
    "2",
    "grace@example.org",
    "created",
    "changed",
    "json",
    "csv",
    "2024-05-01",
    "2024-05-01T12:30+02:00",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00+23:59",
    '{"locale": "en", "slug": "intro"}',
    '{"code": "NO"}',
    '{"id": 1}',
]


def arbitrary_inputs(characters):
    """Text as a person or an attacker might type it, from ``characters``."""
    scalars = st.one_of(
        st.text(characters, max_size=10),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(),
        st.booleans(),
        st.none(),
    )
    names = st.one_of(st.sampled_from(["id", "code", "locale", "slug"]), st.text(max_size=5))
    return st.one_of(
        st.text(characters),
        st.sampled_from(KNOWN_VALUES),
        st.integers(min_value=-(10**40), max_value=10**40).map(str),
        st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=5),
        st.integers(min_value=1, max_value=5000).map(lambda n: '{"id":' * n + "1" + "}" * n),
        st.integers(min_value=1, max_value=5000).map(lambda n: "{" + "[" * n),
        st.dictionaries(names, scalars, max_size=3).map(json.dumps),
        st.datetimes().map(lambda moment: moment.isoformat()),
        st.text(st.sampled_from('\x00\x1b\x9b\x07\x08\r\n\u202e\u2066[]{}"\\:0123456789')),
    )


# What a URL can carry: any text but lone surrogates (it is UTF-8), and any bytes.
URL_VALUES = st.one_of(
    arbitrary_inputs(st.characters(exclude_categories=["Cs"])),
    st.binary(max_size=20),
)
PARAMETERS = st.sampled_from(["model", "kind", "user", "since", "until", "page", "key"])
UNKNOWN_PARAMETERS = st.one_of(
    st.sampled_from(["endpoint", "_external", "_scheme", "_anchor", "_method", ""]),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
)


def encoded(value):
    return quote_from_bytes(value, safe="") if isinstance(value, bytes) else quote(value, safe="")


@settings(max_examples=400, deadline=None)
@given(
    path=st.one_of(
        st.sampled_from(["/", "/activity"]),
        URL_VALUES.map(lambda model: "/objects/" + encoded(model)),
        st.sampled_from(MODEL_NAMES).map(lambda name: "/objects/" + name),
    ),
    query=st.lists(st.tuples(st.one_of(PARAMETERS, UNKNOWN_PARAMETERS), URL_VALUES), max_size=4),
)
def viewer_answers(client, session, path, query):
    session.rollback()  # as the end of each request would; an error is seen once
    query_string = "&".join(f"{encoded(name)}={encoded(value)}" for name, value in query)
    response = client.get(f"/history{path}?{query_string}")
    if response.status_code == 308:
        # Werkzeug's routing sends a path with a doubled slash (a model name that is or
        # starts with an encoded "/") to the path with one.
        merged = re.sub("/{2,}", "/", unquote(f"/history{path}"))
        assert merged != unquote(f"/history{path}")
        assert unquote(urlsplit(response.location).path) == merged
    else:
        assert response.status_code in {200, 400, 404}, (path, query)


def test_no_viewer_input_gives_a_server_error(client, session, history):
    viewer_answers(client, session)


# A command line is any text, lone surrogates included (bytes that are not UTF-8).
CLI_VALUES = arbitrary_inputs(st.characters(exclude_categories=[]))


def assert_clean_exit(result):
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in {0, 1, 2}
    assert "Traceback" not in result.output
    if result.exit_code:
        assert result.output.rstrip("\n").splitlines()[-1].startswith("Error: ")


FORMATS = st.one_of(st.sampled_from(["table", "json", "csv"]), CLI_VALUES)


@settings(max_examples=300, deadline=None)
@given(
    model=st.one_of(st.sampled_from(MODEL_NAMES), CLI_VALUES),
    key=CLI_VALUES,
    output_format=FORMATS,
)
def history_exits(run, session, model, key, output_format):
    session.rollback()  # as the end of each command would; an error is seen once
    assert_clean_exit(run("history", "--format", output_format, "--", model, key))


@settings(max_examples=300, deadline=None)
@given(
    options=st.lists(
        st.tuples(
            st.sampled_from(
                ["--since", "--until", "--model", "--user", "--kind", "--limit", "--format"]
            ),
            CLI_VALUES,
        ),
        max_size=4,
    )
)
def activity_exits(run, session, options):
    session.rollback()  # as the end of each command would; an error is seen once
    assert_clean_exit(run("activity", *[part for option in options for part in option]))


def test_no_command_line_gives_a_traceback(run, session, history):
    history_exits(run, session)
    activity_exits(run, session)
