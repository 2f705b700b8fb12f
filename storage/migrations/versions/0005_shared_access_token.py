"""shared access token: one row per API app, refreshed by one process at a time

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "access_token",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("token", sa.Text(), nullable=True),
        sa.Column("expires_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("fetched_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("refreshing_until", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("refresher", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("fetch_day", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
        sa.Column("day_fetches", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("access_token")
