"""outbox indexes for a backlog: a recipient's open pushes in order, and the rows merged into one

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
    # claim_due skips a push while an older one to the same person is pending. Found through
    # (recipient, channel, sent_at) that walked every row the person ever had: with thousands of
    # pushes queued after a flood (a leader's held back by WeChat's quota) one claim took 5 s on
    # SQLite, 0.35 s on PostgreSQL; with this index 5 ms and 12 ms (benchmarks/README.md).
    op.create_index("ix_outbox_recipient_open", "outbox", ["recipient", "status", "id"])
    # "Is anything merged into this push?" (cancel_pings, marking a push sent) scanned every merged row.
    op.create_index("ix_outbox_merged_into_id", "outbox", ["merged_into_id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_merged_into_id", table_name="outbox")
    op.drop_index("ix_outbox_recipient_open", table_name="outbox")
