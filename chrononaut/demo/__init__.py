"""A small app that shows Chrononaut at work: ``python -m chrononaut.demo``.

It defines three models, records a short, made-up history for them (several people
editing documents, a password change, a deleted document, a shop clerk moving an order
along) and serves the history viewer of :mod:`chrononaut.views` under ``/history``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from flask import Flask, redirect, render_template, url_for
from flask_login import LoginManager, current_user, login_user, logout_user
from sqlalchemy import select

from chrononaut import extra_change_info, rationale
from chrononaut.demo.models import Document, Order, OrderStatus, Person, db
from chrononaut.views import history_blueprint

__all__ = ["create_app", "seed"]

#: Activity rows per page of the demo's feed: small, so that the seeded history pages.
FEED_PAGE_SIZE = 10


def create_app(database_url: str) -> Flask:
    """Make the demo app on the database at ``database_url``.

    The viewer under ``/history`` is shown only to a signed-in person; ``/sign-in``
    signs in as the demo's auditor.
    """
    app = Flask(__name__)
    app.config.update(SQLALCHEMY_DATABASE_URI=database_url, SECRET_KEY=os.urandom(16))
    db.init_app(app)
    login_manager = LoginManager(app)

    @login_manager.user_loader  # type: ignore[untyped-decorator]
    def load_person(person_id: str) -> Person | None:
        return db.session.get(Person, int(person_id))

    app.register_blueprint(
        history_blueprint(lambda: current_user.is_authenticated, per_page=FEED_PAGE_SIZE),
        url_prefix="/history",
    )

    @app.route("/")
    def landing() -> str:
        documents = {document.title: document for document in db.session.scalars(select(Document))}
        return render_template(
            "chrononaut_demo/landing.html",
            report=documents.get("Quarterly report"),
            ada=db.session.scalar(select(Person).where(Person.email == "ada@example.org")),
            scratch_id=_deleted_document_id(),
            order=db.session.scalar(select(Order).order_by(Order.id).limit(1)),
            database_url=database_url,
        )

    @app.route("/sign-in", methods=["POST"])
    def sign_in() -> Any:
        auditor = db.session.scalar(select(Person).where(Person.role == "auditor"))
        login_user(auditor)
        return redirect(url_for("chrononaut.activity"))

    @app.route("/sign-out", methods=["POST"])
    def sign_out() -> Any:
        logout_user()
        return redirect(url_for("landing"))

    return app


def _deleted_document_id() -> int | None:
    """The id of the seeded document that was deleted, read from its history."""
    activity = db.activity_cls
    return db.session.scalar(
        select(activity.key["id"].as_integer())
        .where(activity.table_name == Document.__tablename__, activity.version == 1)
        .where(activity.extra_info["rationale"].astext == "duplicate of the handbook")
    )


@contextmanager
def _editing_as(app: Flask, person: Person | None, remote_addr: str) -> Iterator[None]:
    # A request of the person's own, so the history records their email (through
    # Flask-Login) and address just as it would for a real edit.
    with app.test_request_context(environ_base={"REMOTE_ADDR": remote_addr}):
        # The seed runs in one app context, whose ``g`` would keep the last person
        # signed in.
        if person is None:
            logout_user()
        else:
            login_user(person)
        yield


def seed(app: Flask) -> bool:
    """Create the tables and record the demo history, unless people exist already.

    :return: whether anything was recorded.
    """
    with app.app_context():
        db.create_all()
        if db.session.scalar(select(Person).limit(1)) is not None:
            return False
        session = db.session
        with _editing_as(app, None, "192.0.2.1"), rationale("initial accounts"):
            ada = Person(email="ada@example.org", name="Ada", role="editor", password_hash="x1")
            grace = Person(
                email="grace@example.org", name="Grace", role="editor", password_hash="x2"
            )
            linus = Person(
                email="linus@example.org", name="Linus", role="editor", password_hash="x3"
            )
            auditor = Person(
                email="audit@example.org", name="Audit", role="auditor", password_hash="x4"
            )
            session.add_all([ada, grace, linus, auditor])
            session.commit()
        with _editing_as(app, ada, "198.51.100.7"), rationale("yearly password rotation"):
            ada.password_hash = "pbkdf2:rotated"
            session.commit()
        for person in (ada, grace, ada, linus):
            person.login_count += 1  # untracked: no new version
            session.commit()

        with _editing_as(app, ada, "198.51.100.7"), extra_change_info(ticket="DOC-1"):
            report = Document(
                title="Quarterly report draft",
                body="Revenue grew 4%.",
                owner_id=ada.id,
            )
            session.add(report)
            session.commit()
        with _editing_as(app, grace, "203.0.113.20"), rationale("fix the revenue figure"):
            report.body = "Revenue grew 6%, driven by the new plans."
            session.commit()
        with (
            _editing_as(app, linus, "203.0.113.44"),
            extra_change_info(ticket="DOC-7", reviewed=True),
        ):
            report.title = "Quarterly report"
            session.commit()
        with _editing_as(app, ada, "198.51.100.7"), rationale("approved by the board"):
            report.status = "published"
            session.commit()

        editors = [(grace, "203.0.113.20"), (linus, "203.0.113.44"), (ada, "198.51.100.7")]
        with _editing_as(app, grace, "203.0.113.20"):
            handbook = Document(title="Team handbook", body="1. Welcome", owner_id=grace.id)
            session.add(handbook)
            session.commit()
        sections = ["On-call", "Holidays", "Expenses", "Security", "Travel", "Offboarding"]
        for number, section in enumerate(sections, start=2):
            person, address = editors[number % len(editors)]
            with _editing_as(app, person, address), rationale(f"add the {section} section"):
                handbook.body += f"\n{number}. {section}"
                session.commit()

        with _editing_as(app, linus, "203.0.113.44"):
            scratch = Document(
                title="Scratch notes", body="Ideas for the handbook", owner_id=linus.id
            )
            session.add(scratch)
            session.commit()
        with _editing_as(app, ada, "198.51.100.7"), rationale("duplicate of the handbook"):
            session.delete(scratch)
            session.commit()
        _seed_shop(app)
        return True


def _seed_shop(app: Flask) -> None:
    """A clerk takes an order, marks it paid, corrects the customer and ships it."""
    session = db.session
    with _editing_as(app, None, "192.0.2.1"), rationale("shop opened"):
        clerk = Person(email="clerk@shop.example", name="Clerk", role="clerk", password_hash="x5")
        session.add(clerk)
        session.commit()
    clerk_at = "192.0.2.50"
    with _editing_as(app, clerk, clerk_at):
        order = Order(customer="Hopper Ltd", total=Decimal("120.00"))
        session.add(order)
        session.commit()
    with _editing_as(app, clerk, clerk_at), rationale("payment received"):
        order.status = OrderStatus.PAID
        session.commit()
    with _editing_as(app, clerk, clerk_at), extra_change_info(ticket="SHOP-3"):
        order.customer = "Hopper & Sons Ltd"
        session.commit()
    with _editing_as(app, clerk, clerk_at), rationale("sent by courier"):
        order.status = OrderStatus.SHIPPED
        session.commit()
