"""partial indexes on the case columns that are empty on most cases

Every due ping moves cases.next_ping_at (the claim, then the settle), so on PostgreSQL those updates
are never HOT and each writes an entry into every index of the row; a full index on a column that
is NULL on nearly every case costs that entry for nothing. Indexed only where set, the follow-up
claim of 1,000 cases among 1,000,000 open writes 8 index entries per case instead of 13
(benchmarks/followup_tick.py). Queries on these columns are `= x` / `<= x`, served as before.

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SPARSE = (
    "duplicate_of_id",
    "transfer_to_id",
    "suspended_until",
    "extension_approver_id",
    "verifier_id",
    "next_ping_at",
)


def upgrade() -> None:
    for name in SPARSE:
        op.drop_index(f"ix_cases_{name}", table_name="cases")
        where = sa.text(f"{name} IS NOT NULL")
        op.create_index(f"ix_cases_{name}", "cases", [name], postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for name in SPARSE:
        op.drop_index(f"ix_cases_{name}", table_name="cases")
        op.create_index(f"ix_cases_{name}", "cases", [name])
