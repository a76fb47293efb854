"""llm_call: indexes that answer the spend reports of a period (the digest, `aios cost`) from the index alone

Revision ID: 0021
Revises: 0020
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUMMED = [
    "outcome",
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_read_tokens",
    "cost_usd",
]


def upgrade() -> None:
    op.create_index("ix_llm_call_period", "llm_call", ["created_at", "run_id", "requester", *SUMMED])
    op.create_index("ix_llm_call_agent_period", "llm_call", ["agent", "created_at", *SUMMED])
    op.create_index("ix_llm_call_outcome_period", "llm_call", ["outcome", "created_at"])
    op.create_index("ix_llm_call_run_period", "llm_call", ["run_id", "created_at", *SUMMED])
    # Both are the first columns of one above.
    op.drop_index("ix_llm_call_created_at", table_name="llm_call")
    op.drop_index("ix_llm_call_run_id", table_name="llm_call")


def downgrade() -> None:
    op.create_index("ix_llm_call_run_id", "llm_call", ["run_id"])
    op.create_index("ix_llm_call_created_at", "llm_call", ["created_at"])
    op.drop_index("ix_llm_call_run_period", table_name="llm_call")
    op.drop_index("ix_llm_call_outcome_period", table_name="llm_call")
    op.drop_index("ix_llm_call_agent_period", table_name="llm_call")
    op.drop_index("ix_llm_call_period", table_name="llm_call")
