"""duplicates, followers, labelled examples

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "labelled_example",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("labelled_example", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_labelled_example_case_id"), ["case_id"], unique=False)

    op.create_table(
        "case_follower",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("since", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["resident.id"],
        ),
        sa.PrimaryKeyConstraint("case_id", "resident_id"),
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("confidence", sa.Float(), nullable=False, server_default="1.0"))
        batch_op.add_column(sa.Column("duplicate_of_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_cases_duplicate_of_id"), ["duplicate_of_id"], unique=False)
        batch_op.create_foreign_key("fk_cases_duplicate_of_id", "cases", ["duplicate_of_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_constraint("fk_cases_duplicate_of_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_cases_duplicate_of_id"))
        batch_op.drop_column("duplicate_of_id")
        batch_op.drop_column("confidence")

    op.drop_table("case_follower")
    with op.batch_alter_table("labelled_example", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_labelled_example_case_id"))

    op.drop_table("labelled_example")
