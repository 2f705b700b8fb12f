"""ping leases: the follow-up engine's claims on due cases, in a narrow table of their own

Revision ID: 0010
Revises: 0009_staff
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0010"
down_revision: str | None = "0009_staff"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Until now a claim moved cases.next_ping_at to the lease's end. A case claimed when this runs
    # keeps that time: it is simply looked at again once it has passed, as after a crash.
    op.create_table(
        "ping_lease",
        sa.Column("case_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("lease_until", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("seen_next_ping_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("case_id"),
    )


def downgrade() -> None:
    # Live leases are dropped: their cases' next_ping_at is still due, so the old engine takes them
    # at its next tick, and the compare-and-set of the new one (if any still runs) fails safe.
    op.drop_table("ping_lease")
