"""What a store that could not be reached raises, for the front doors that must answer Slack all the same."""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import SQLAlchemyError

# SQLAlchemy wraps what the driver raises while a statement runs, but not what opening a connection raises:
# PostgreSQL refusing the connection is a bare ConnectionRefusedError (an OSError), a connect that times out a
# TimeoutError, and PostgreSQL refusing the session (starting up, too many connections) asyncpg's own errors.
STORE_UNREACHABLE: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
