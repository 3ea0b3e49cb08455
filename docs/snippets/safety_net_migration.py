"""Install Chrononaut's safety net on the tables of some versioned models.

An Alembic migration: upgrading makes the triggers that record the writes the
session does not see (SQL text, other clients), downgrading drops them. Set
``CHRONONAUT_SAFETY_NET = True`` in every process of the application before running
it. Add a migration like it whenever the columns, or the hidden and untracked
declarations, of a netted model change: installing again replaces the triggers.
"""

from alembic import op
from myapp import Invoice

from chrononaut.capture.triggers import install_safety_net, remove_safety_net

revision = "chrononaut_safety_net"
down_revision = None  # set to your latest revision

NETTED_MODELS = [Invoice]


def upgrade():
    install_safety_net(op.get_bind(), NETTED_MODELS)


def downgrade():
    remove_safety_net(op.get_bind(), NETTED_MODELS)
