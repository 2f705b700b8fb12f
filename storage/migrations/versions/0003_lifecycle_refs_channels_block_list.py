"""case lifecycle, short refs, channels, robots, block list

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FOREIGN_KEYS = [
    ("fk_cases_extension_approver_id", "staff", "extension_approver_id"),
    ("fk_cases_verifier_id", "staff", "verifier_id"),
    ("fk_cases_transfer_to_id", "staff", "transfer_to_id"),
    ("fk_cases_transfer_grid_id", "grid_node", "transfer_grid_id"),
]


def upgrade() -> None:
    op.create_table(
        "job_run",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", "key"),
    )
    op.create_table(
        "case_ref",
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["staff.id"],
        ),
        sa.PrimaryKeyConstraint("staff_id", "ref"),
        sa.UniqueConstraint("staff_id", "case_id", name="uq_case_ref_staff_case"),
    )
    with op.batch_alter_table("case_ref", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_ref_case_id"), ["case_id"], unique=False)

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_at", storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("due_at", storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("transfer_grid_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("transfer_to_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("suspended_until", storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("requested_due_at", storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("extension_approver_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("verifier_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rework_count", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("reopen_count", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("rating", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True))
        batch_op.add_column(sa.Column("rated_at", storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_cases_due_at"), ["due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_extension_approver_id"), ["extension_approver_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_suspended_until"), ["suspended_until"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_transfer_to_id"), ["transfer_to_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_verifier_id"), ["verifier_id"], unique=False)
        for name, table, column in _FOREIGN_KEYS:
            batch_op.create_foreign_key(name, table, [column], ["id"])

    with op.batch_alter_table("grid_node", schema=None) as batch_op:
        batch_op.add_column(sa.Column("robot_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_outbox_recipient_sent", ["recipient", "channel", "sent_at"], unique=False)

    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.create_index("ix_inbound_sender_received", ["sender", "received_at"], unique=False)

    with op.batch_alter_table("resident", schema=None) as batch_op:
        batch_op.add_column(sa.Column("blocked_at", storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("blocked_by", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("block_reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column("throttle_notice_at", storage.types.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False, server_default="wechat")
        )
        batch_op.add_column(sa.Column("last_ref", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.drop_column("last_ref")
        batch_op.drop_column("channel")

    with op.batch_alter_table("resident", schema=None) as batch_op:
        batch_op.drop_column("throttle_notice_at")
        batch_op.drop_column("block_reason")
        batch_op.drop_column("blocked_by")
        batch_op.drop_column("blocked_at")

    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_sender_received")

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_recipient_sent")
        batch_op.drop_column("merged_into_id")

    with op.batch_alter_table("grid_node", schema=None) as batch_op:
        batch_op.drop_column("robot_key")

    with op.batch_alter_table("cases", schema=None) as batch_op:
        for name, _table, _column in _FOREIGN_KEYS:
            batch_op.drop_constraint(name, type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_cases_verifier_id"))
        batch_op.drop_index(batch_op.f("ix_cases_transfer_to_id"))
        batch_op.drop_index(batch_op.f("ix_cases_suspended_until"))
        batch_op.drop_index(batch_op.f("ix_cases_extension_approver_id"))
        batch_op.drop_index(batch_op.f("ix_cases_due_at"))
        batch_op.drop_column("rated_at")
        batch_op.drop_column("rating")
        batch_op.drop_column("reopen_count")
        batch_op.drop_column("rework_count")
        batch_op.drop_column("verifier_id")
        batch_op.drop_column("extension_approver_id")
        batch_op.drop_column("requested_due_at")
        batch_op.drop_column("suspended_until")
        batch_op.drop_column("transfer_to_id")
        batch_op.drop_column("transfer_grid_id")
        batch_op.drop_column("due_at")
        batch_op.drop_column("closed_at")

    with op.batch_alter_table("case_ref", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_ref_case_id"))

    op.drop_table("case_ref")
    op.drop_table("job_run")
