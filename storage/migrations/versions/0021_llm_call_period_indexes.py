"""Indexes for the digest and `aios cost`: llm_call's spend in a period answered from the index alone; runs,
decisions and executions of a period by status or verdict

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
    op.create_index("ix_run_status_updated_at", "run", ["status", "updated_at"])
    op.drop_index("ix_run_status", table_name="run")
    op.create_index("ix_decision_verdict_created_at", "decision", ["verdict", "created_at"])
    op.create_index("ix_execution_status_started_at", "execution", ["status", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_execution_status_started_at", table_name="execution")
    op.drop_index("ix_decision_verdict_created_at", table_name="decision")
    op.create_index("ix_run_status", "run", ["status"])
    op.drop_index("ix_run_status_updated_at", table_name="run")
    op.create_index("ix_llm_call_run_id", "llm_call", ["run_id"])
    op.create_index("ix_llm_call_created_at", "llm_call", ["created_at"])
    op.drop_index("ix_llm_call_run_period", table_name="llm_call")
    op.drop_index("ix_llm_call_outcome_period", table_name="llm_call")
    op.drop_index("ix_llm_call_agent_period", table_name="llm_call")
    op.drop_index("ix_llm_call_period", table_name="llm_call")
