"""campaign stats: a partial index on unsubscribe events

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_events_unsubscribed", "events", ["id"],
                    postgresql_where=sa.text("kind = 'unsubscribed'"),
                    sqlite_where=sa.text("kind = 'unsubscribed'"))


def downgrade():
    op.drop_index("ix_events_unsubscribed", "events")
