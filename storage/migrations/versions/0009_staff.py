"""staff management, one-time login links, flash after redirect, idempotent Open311 POST

Revision ID: 0009_staff
Revises: 0008
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types

revision: str = "0009_staff"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_login_at", storage.types.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("console_session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flash", sa.JSON(), nullable=True))
    op.create_table(
        "login_link",
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"]),
        sa.ForeignKeyConstraint(["created_by"], ["staff.id"]),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("login_link", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_link_staff_id"), ["staff_id"], unique=False)
    with op.batch_alter_table("open311_request", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.add_column(sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column("filed_at", storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint("uq_open311_request_client_key", ["client", "idempotency_key"])
        batch_op.create_index("ix_open311_request_fingerprint", ["client", "fingerprint", "filed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("open311_request", schema=None) as batch_op:
        batch_op.drop_index("ix_open311_request_fingerprint")
        batch_op.drop_constraint("uq_open311_request_client_key", type_="unique")
        batch_op.drop_column("filed_at")
        batch_op.drop_column("fingerprint")
        batch_op.drop_column("idempotency_key")
    with op.batch_alter_table("login_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_link_staff_id"))
    op.drop_table("login_link")
    with op.batch_alter_table("console_session", schema=None) as batch_op:
        batch_op.drop_column("flash")
    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.drop_column("last_login_at")
