"""leads list: one index per sort order, each ending with id (the keyset tie-break)

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

SORTS = ("name", "score", "created_at", "mql_at")


def upgrade():
    for column in SORTS:
        op.create_index(f"ix_leads_{column}_id", "leads", [column, "id"])


def downgrade():
    for column in SORTS:
        op.drop_index(f"ix_leads_{column}_id", "leads")
