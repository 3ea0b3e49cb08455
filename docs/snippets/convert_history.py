"""Converting the Chrononaut 0.1 history of an application's models.

Replace ``myapp`` with your package, and call each function in the application's
context.
"""

from datetime import datetime, timezone

from myapp import Customer, Translation, Voucher, db

from chrononaut.data_converters import HistoryModelDataConverter


def convert_everything():
    converter = HistoryModelDataConverter(Customer)
    while converter.convert(db.session):  # one chunk of objects per call
        pass

    # A primary key not called "id", or one of several columns.
    HistoryModelDataConverter(Voucher, id_column="uuid").convert_all(db.session)
    HistoryModelDataConverter(Translation, id_column=("locale", "slug")).convert_all(db.session)


def convert_while_the_old_application_runs():
    started = datetime.now(timezone.utc)
    HistoryModelDataConverter(Customer).convert_all(db.session)
    return started


def convert_what_it_wrote_since(started):
    # Once the old application is stopped, before the new one changes anything.
    return HistoryModelDataConverter(Customer).update(db.session, update_from=started)
