"""The history viewer: a blueprint with an object's timeline and the activity feed.

Register it with a permission callback; without one every page answers 403::

    from flask_login import current_user
    from chrononaut.views import history_blueprint

    app.register_blueprint(
        history_blueprint(lambda: current_user.is_authenticated and current_user.is_admin),
        url_prefix="/history",
    )

Its undo buttons (revert, restore) need a second callback, ``write_permission``.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from chrononaut.capture.context import rationale
from chrononaut.capture.session import read_history_on_primary
from chrononaut.exceptions import ChrononautException, InvalidArgumentError
from chrononaut.history.columns import VersionedColumns
from chrononaut.history.serialization import UTC
from chrononaut.interfaces.display import (
    MISSING,
    MISSING_LABEL,
    ColumnChange,
    column_changes,
    inline_diff,
    model_label,
    readable_state,
    readable_value,
)
from chrononaut.interfaces.state import state_at
from chrononaut.interfaces.text import (
    format_key,
    parse_key,
    parse_page,
    parse_time,
    parse_user,
    utc,
    visible,
)
from chrononaut.interfaces.timeline import (
    DELETED,
    FILTERABLE_KINDS,
    HIDDEN_MARKER,
    TimelineEntry,
    activity_feed,
    extension,
    has_been_deleted,
    hidden_columns,
    newest_life,
    object_timeline,
    parse_kind,
    table_name_of,
    versioned_model,
    versioned_models,
)

# The query parameters of the feed that its page links keep.
_FILTERS = ("model", "kind", "user", "since", "until")

# The endpoints that change data: only they ask ``write_permission``.
_WRITE_ENDPOINTS = ("revert", "restore")
# Where the session keeps the token that every form that writes must send back.
_CSRF_SESSION_KEY = "chrononaut_csrf_token"
# Set by an undo for the timeline page it redirects to (see docs/replica.rst).
_WROTE_SESSION_KEY = "chrononaut_wrote"
_NO_SECRET_KEY = (
    "Undo is turned off: the app has no SECRET_KEY, which its forms need against "
    "requests forged by other sites."
)


def history_blueprint(
    permission: Callable[[], bool] | None = None,
    *,
    name: str = "chrononaut",
    per_page: int = 25,
    write_permission: Callable[[], bool] | None = None,
) -> Blueprint:
    """Make the blueprint of the history viewer.

    Its pages: ``/`` lists the versioned models, ``/activity`` is the activity feed
    (filters ``model``, ``kind``, ``user``, ``since``, ``until``; paging with ``page``),
    and ``/objects/<model>?key=<key>`` is the timeline of one object, with the model
    given by class or table name and the key as
    :func:`chrononaut.interfaces.text.parse_key` reads it. Its stylesheet, under
    ``/static/``, is public: it holds no data.

    :param permission: called without arguments on every request for a page, inside the
        request context; the page is shown only when it returns true. ``None`` (the
        default) refuses every page with 403, so history is never shown by accident.
    :param name: the blueprint name, for registering more than one viewer.
    :param per_page: how many changes one page of the activity feed shows, and how
        many objects one page of a model's state at a time.
    :param write_permission: called, after ``permission`` allowed the request, on every
        request for a page that changes data (``/objects/<model>/revert`` and
        ``/objects/<model>/restore``, which undo changes) and on every timeline, which
        shows their buttons only when it returns true. ``None`` (the default) refuses
        them all with 403: ``permission`` alone never allows a change. Their forms
        need the app's ``SECRET_KEY``: they keep a token in Flask's session against
        requests forged by other sites. Without one, the timeline shows no undo
        buttons and the pages that change data answer 403, saying why.
    :return: a blueprint to pass to :meth:`flask.Flask.register_blueprint`.
    :raises ValueError: ``per_page`` is less than 1.
    """
    if per_page < 1:
        raise InvalidArgumentError(f"per_page must be at least 1, not {per_page}")
    blueprint = Blueprint(
        name,
        __name__,
        template_folder="templates",
        static_folder="static/chrononaut",
        static_url_path="/static",
    )

    @blueprint.before_request
    def check_permission() -> None:
        # The stylesheet is the same for everyone, so that the 403 page and an app's
        # own pages that link it are styled before anyone signs in.
        if request.endpoint == f"{request.blueprint}.static":
            return
        if permission is None or not permission():
            abort(403)
        writes = {f"{request.blueprint}.{name}" for name in _WRITE_ENDPOINTS}
        if request.endpoint in writes:
            if not may_write():
                abort(403)
            if not current_app.secret_key:
                abort(403, _NO_SECRET_KEY)

    def may_write() -> bool:
        return write_permission is not None and write_permission()

    @blueprint.errorhandler(400)
    @blueprint.errorhandler(403)
    @blueprint.errorhandler(404)
    @blueprint.errorhandler(409)
    def error_page(error: HTTPException) -> tuple[str, int]:
        code = error.code or 500
        # A 403 says why only when the viewer gave a reason; otherwise it tells nobody
        # more than that the history is not theirs to see.
        reason = error.description if error.description != type(error).description else None
        page = render_template("chrononaut/error.html", error=error, code=code, reason=reason)
        return page, code

    @blueprint.app_template_filter("chrononaut_time")
    def format_time(moment: datetime) -> str:
        return utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")

    @blueprint.app_template_filter("chrononaut_visible")
    def show_visibly(text: str) -> str:
        # Line breaks stay: a page shows them inside the value's own cell.
        return "\n".join(visible(line) for line in str(text).split("\n"))

    @blueprint.context_processor
    def marks() -> dict[str, Any]:
        return {
            "missing": MISSING,
            "missing_label": MISSING_LABEL,
            "hidden_marker": HIDDEN_MARKER,
            "change_anchor": change_anchor,
        }

    @blueprint.route("/")
    def index() -> str:
        return render_template("chrononaut/index.html", models=versioned_models())

    @blueprint.route("/activity")
    def activity() -> tuple[str, int]:
        return _activity_page(per_page)

    @blueprint.route("/objects/<model_name>")
    def timeline(model_name: str) -> str:
        # Without a secret key, Flask has no session to keep the forms' token in: the
        # undo buttons, whose pages would be refused, are not shown.
        return _timeline_page(model_name, may_write() and bool(current_app.secret_key))

    @blueprint.route("/objects/<model_name>/revert", methods=["GET", "POST"])
    def revert(model_name: str) -> Response | tuple[str, int]:
        return _undo_page(model_name, restore=False)

    @blueprint.route("/objects/<model_name>/restore", methods=["GET", "POST"])
    def restore(model_name: str) -> Response | tuple[str, int]:
        return _undo_page(model_name, restore=True)

    @blueprint.route("/objects/<model_name>/as-of")
    def state(model_name: str) -> tuple[str, int]:
        return _state_page(model_name, per_page)

    return blueprint


def change_anchor(entry: TimelineEntry) -> str:
    """The id of an entry's heading on the timeline page, which the feed links to:
    unlike version numbers, which start again when a key is used again, it names one
    change."""
    return f"change-{entry.snapshot.chrononaut_activity_id}"


def _object_history(model_name: str) -> tuple[type[Any], dict[str, Any], list[TimelineEntry]]:
    """Read the model and key of the request; return them with the object's timeline.
    Answers 404 for an unknown model, a key that is not one, or a key without history."""
    try:
        model = versioned_model(model_name)
    except ValueError as error:
        abort(404, str(error))
    raw_key = request.args.get("key", "")
    try:
        key = parse_key(model, raw_key)
    except ValueError as error:
        abort(404, str(error))
    entries = object_timeline(extension().session(), model, key)
    if not entries:
        abort(404, f"{model.__name__} {visible(raw_key)} has no recorded history.")
    return model, key, entries


def _revertible(entries: list[TimelineEntry]) -> list[TimelineEntry]:
    """Return the entries of a timeline that the viewer offers to revert to.

    They are the versions of the object that has the key now, numbered as
    :meth:`~chrononaut.capture.undo.HistoryUndo.revert_to` numbers them (from its
    last creation, an undelete carrying the numbers on), without its newest version,
    which is its state already, and without delete rows, whose state is the version
    before them. A deleted object has none: it is restored first. Versions of an
    earlier object that had the same key are not offered: they are another object.
    """
    if has_been_deleted(entries):
        return []
    starts = [index for index, entry in enumerate(entries) if entry.version == 0]
    current = entries[starts[-1] if starts else 0 : -1]
    return [entry for entry in current if entry.kind != DELETED]


def _timeline_page(model_name: str, may_write: bool) -> str:
    # Only an undo sets the flag, and only where the app has a secret key: without
    # one, Flask's session cannot be written, not even by a pop of a missing key.
    if session.get(_WROTE_SESSION_KEY):
        session.pop(_WROTE_SESSION_KEY)
        read_history_on_primary(extension().session())
    model, key, entries = _object_history(model_name)
    shown_key = format_key(key)
    deleted = has_been_deleted(entries)
    revert_urls = {}
    if may_write:
        revert_urls = {
            id(entry): url_for(
                ".revert", model_name=model.__name__, key=shown_key, version=entry.version
            )
            for entry in _revertible(entries)
        }
    return render_template(
        "chrononaut/timeline.html",
        model=model,
        key=key,
        entries=[
            (entry, column_changes(entry), readable_state(entry), revert_urls.get(id(entry)))
            for entry in reversed(entries)
        ],
        # The newest entries, those of the object that has the key now (or had it
        # last), are also reachable as #v<version>: in earlier lives, numbers repeat.
        newest_life=len(newest_life(entries)),
        deleted=deleted,
        restore_url=url_for(".restore", model_name=model.__name__, key=shown_key)
        if may_write and deleted
        else None,
    )


def _undo_page(model_name: str, *, restore: bool) -> Response | tuple[str, int]:
    """The confirmation page of a revert or a restore (GET), and the undo itself (POST).

    The POST is refused, changing nothing, without the session's form token (400),
    without a rationale (400, the form again), and when the object changed since the
    page was shown (409): the form carries the activity row id of the newest version
    it showed.
    """
    if request.method == "POST":
        _check_form_token()
        # The undo is checked against the newest version and made from history: both
        # read on the primary, never on a replica that may lag behind it.
        read_history_on_primary(extension().session())
    model, key, entries = _object_history(model_name)
    newest = entries[-1]
    if restore:
        if not has_been_deleted(entries):
            abort(
                409,
                f"{model.__name__} {visible(format_key(key))} is not deleted: nothing to restore.",
            )
        target = newest
    else:
        target = _target_version(entries)
    changes = _changes_to(None if restore else newest, target)
    error = None
    if request.method == "POST":
        if not changes:
            abort(
                409,
                f"Version {newest.version} has the values of version {target.version} "
                "already: there is nothing to revert.",
            )
        # The newest row's id, unlike its version number, is never used again, even
        # when the key is deleted and used again while the page is open.
        if request.form.get("current") != str(newest.snapshot.chrononaut_activity_id):
            abort(
                409,
                f"{model.__name__} {visible(format_key(key))} changed since the page was shown "
                "(its newest version is no longer the one shown): nothing was changed. "
                "Look at its history again before undoing.",
            )
        text = request.form.get("rationale", "").strip()
        if not text:
            error = "Give a rationale: it is recorded with the change."
        elif "\x00" in text:
            error = "The rationale holds a NUL character, which PostgreSQL cannot store."
        else:
            return _undo(model, key, target, text, restore=restore)
    html = render_template(
        "chrononaut/undo.html",
        model=model,
        key=key,
        restore=restore,
        target=target,
        current=newest,
        changes=changes,
        hidden=sorted(hidden_columns(model)),
        timeline_url=url_for(".timeline", model_name=model.__name__, key=format_key(key)),
        token=_form_token(),
        error=error,
        rationale=request.form.get("rationale", ""),
    )
    return html, 400 if error else 200


def _target_version(entries: list[TimelineEntry]) -> TimelineEntry:
    raw = request.args.get("version", "")
    # Only ASCII digits: int() would take other scripts' digits, signs and spaces.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        abort(400, f"version: {visible(raw)!r} is not a version number")
    for entry in _revertible(entries):
        if entry.version == int(raw):
            return entry
    abort(
        404,
        f"Version {int(raw)} is not one to revert to: only earlier versions of the "
        "object as it is now are, and a deleted object is restored first.",
    )


def _changes_to(current: TimelineEntry | None, target: TimelineEntry) -> list[ColumnChange]:
    """The visible columns that undoing to ``target`` changes, from ``current`` (``None``
    for an object brought back: every value is new); hidden ones are never in
    :attr:`~chrononaut.interfaces.timeline.TimelineEntry.state`."""
    before = {} if current is None else current.state
    after = target.state
    changes = []
    for column in sorted(before.keys() | after.keys()):
        old = readable_value(target.model, column, before.get(column))
        new = readable_value(target.model, column, after.get(column))
        if old != new or current is None:
            changes.append(ColumnChange(column, old, new, inline_diff(old, new)))
    return changes


def _undo(
    model: type[Any], key: dict[str, Any], target: TimelineEntry, text: str, *, restore: bool
) -> Response:
    """Undo, record it with ``text`` as its rationale, and redirect to the new version."""
    db = extension()
    db_session = db.session()
    names = VersionedColumns.of(inspect(model)).primary_key
    try:
        with rationale(text):
            if restore:
                model.undelete({name: key[name] for name in names})
            else:
                live = db_session.get(model, tuple(key[name] for name in names))
                if live is None:
                    abort(409, f"{model.__name__} {visible(format_key(key))} has no live row.")
                live.revert_to(target.version)
            db_session.commit()
    except (ChrononautException, IntegrityError) as error:
        db_session.rollback()
        abort(409, f"The undo was refused, and nothing was changed: {_first_line(error)}")
    entries = object_timeline(db_session, model, key)
    # The timeline it redirects to is another request, whose history reads could go
    # to a replica that has not replayed the undo yet: it reads the primary once.
    session[_WROTE_SESSION_KEY] = True
    return redirect(
        url_for(
            ".timeline",
            model_name=model.__name__,
            key=format_key(key),
            _anchor=change_anchor(entries[-1]),
        ),
        303,
    )


def _first_line(error: Exception) -> str:
    # A database error's message goes on with the statement and its parameters.
    return str(error).split("\n", 1)[0]


def _form_token() -> str:
    """The session's token that forms that write send back, made on first use."""
    token = session.get(_CSRF_SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[_CSRF_SESSION_KEY] = token
    return token


def _check_form_token() -> None:
    """Answer 400 unless the form sends back the session's token: a page of another
    site can make the browser post a form here, but cannot read the token."""
    expected = session.get(_CSRF_SESSION_KEY)
    given = request.form.get("csrf_token", "")
    if not isinstance(expected, str) or not hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode()
    ):
        abort(400, "The form is out of date or did not come from this site: load it again.")


def _state_page(model_name: str, per_page: int) -> tuple[str, int]:
    try:
        model = versioned_model(model_name)
    except ValueError as error:
        abort(404, str(error))
    args = request.args
    errors = []
    at = datetime.now(UTC)
    if args.get("at"):
        try:
            at = parse_time(args["at"])
        except ValueError as error:
            errors.append(f"at: {error}")
    number = _page_number(args, per_page, errors)
    page = None
    if not errors:
        try:
            page = state_at(
                extension().session(), model, at, limit=per_page, offset=(number - 1) * per_page
            )
        except ChrononautException as error:
            # A table made before the time-travel columns: the message names the migration.
            errors.append(str(error))
    query: dict[str, Any] = {"at": utc(at).isoformat()}
    html = render_template(
        "chrononaut/state.html",
        model=model,
        at=at,
        page=page,
        rows=[
            (values, changed, url_for(".timeline", model_name=model.__name__, key=format_key(key)))
            for key, values, changed in (page.rows if page else [])
        ],
        errors=errors,
        number=number,
        previous_url=url_for(".state", model_name=model.__name__, page=number - 1, **query)
        if number > 1
        else None,
        next_url=url_for(".state", model_name=model.__name__, page=number + 1, **query)
        if page and page.has_next
        else None,
    )
    return html, 400 if errors else 200


def _page_number(args: Any, per_page: int, errors: list[str]) -> int:
    """The ``page`` query parameter, or 1 with the reason in ``errors``."""
    try:
        return parse_page(args.get("page", "1"), per_page)
    except ValueError as error:
        errors.append(f"page: {error}")
        return 1


def _activity_page(per_page: int) -> tuple[str, int]:
    args = request.args
    filters: dict[str, Any] = {}
    errors = []
    model_name = args.get("model", "")
    if model_name:
        try:
            filters["table_name"] = table_name_of(versioned_model(model_name))
        except ValueError as error:
            errors.append(str(error))
    if args.get("kind"):
        try:
            filters["kind"] = parse_kind(args["kind"])
        except ValueError as error:
            errors.append(f"kind: {error}")
    if args.get("user"):
        try:
            filters["user_id"] = parse_user(args["user"])
        except ValueError as error:
            errors.append(f"user: {error}")
    for bound in ("since", "until"):
        if args.get(bound):
            try:
                filters[bound] = parse_time(args[bound])
            except ValueError as error:
                errors.append(f"{bound}: {error}")
    number = _page_number(args, per_page, errors)

    entries = []
    if not errors:
        db = extension()
        # One row more than a page tells whether there is a next page without a COUNT.
        entries = activity_feed(
            db.session(),
            db.activity_cls,
            limit=per_page + 1,
            offset=(number - 1) * per_page,
            **filters,
        )
    has_next = len(entries) > per_page
    # Only the filters: other names could be url_for's own arguments (_external...).
    query: dict[str, Any] = {name: args[name] for name in _FILTERS if args.get(name)}
    html = render_template(
        "chrononaut/activity.html",
        changes=[_feed_row(entry) for entry in entries[:per_page]],
        models=versioned_models(),
        kinds=FILTERABLE_KINDS,
        args=args,
        errors=errors,
        page=number,
        previous_url=url_for(".activity", page=number - 1, **query) if number > 1 else None,
        next_url=url_for(".activity", page=number + 1, **query) if has_next else None,
    )
    return html, 400 if errors else 200


def _feed_row(entry: TimelineEntry) -> dict[str, Any]:
    key = format_key(dict(entry.snapshot.chrononaut_key))
    url = None
    if entry.model is not None:
        url = url_for(
            ".timeline", model_name=entry.model.__name__, key=key, _anchor=change_anchor(entry)
        )
    return {"entry": entry, "model": model_label(entry), "key": key, "url": url}
