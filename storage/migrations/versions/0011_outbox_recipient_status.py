"""outbox: an index on (recipient, status, id) for claim_due's "an older push to this person is
still pending" check

Without it SQLite, having no statistics, looks each claimed row's elders up through ix_outbox_due
(status only): every pending row per pending row, 0.4 s a claim with 2,000 queued, seconds after a flood.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_outbox_recipient_status", "outbox", ["recipient", "status", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbox_recipient_status", table_name="outbox")
