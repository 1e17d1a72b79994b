"""owner changes: who gave a lead to which salesperson, and why

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        'owner_changes',
        sa.Column('id', BigId, nullable=False),
        sa.Column('lead_id', BigId, nullable=False),
        sa.Column('from_user_id', sa.Integer(), nullable=True),
        sa.Column('to_user_id', sa.Integer(), nullable=True),
        sa.Column('actor', sa.String(length=120), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['from_user_id'], ['users.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['to_user_id'], ['users.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_owner_changes_lead_id', 'owner_changes', ['lead_id'])
    # What was there before: the owner each lead has now, with no history.
    op.execute("INSERT INTO owner_changes (lead_id, from_user_id, to_user_id, actor, reason, at) "
               "SELECT id, NULL, owner_id, 'migration', 'owner before history was kept', "
               "coalesce(mql_at, updated_at, created_at) FROM leads WHERE owner_id IS NOT NULL")


def downgrade():
    op.drop_index('ix_owner_changes_lead_id', table_name='owner_changes')
    op.drop_table('owner_changes')
