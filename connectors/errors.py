"""The connector exception hierarchy, described once."""


class ConnectorError(Exception):
    """A connector could not carry out an action."""


class TransientConnectorError(ConnectorError):
    """Worth retrying: a timeout, a rate limit, a server error. ``retry_after``: seconds the server asked for."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentConnectorError(ConnectorError):
    """Retrying will not help: the request itself is wrong (unknown order, amount too high, …)."""


class OutcomeUnknownError(ConnectorError):
    """A call that may or may not have taken effect (the connection broke after it was sent, and the system
    cannot be asked). Neither permanent (the thread would be told nothing changed) nor transient (it would be
    sent again): the execution fails, and the thread is told to check before asking again."""


class InvalidActionError(ConnectorError):
    """A proposed action does not match its typed model, or names no known action."""


class UnknownActionError(InvalidActionError):
    """No installed connector offers an action by this name."""


class ConnectorSettingError(PermanentConnectorError, ValueError):
    """A connector's setting is malformed; the message names the setting and what a valid one looks like
    (never its value, which may hold a secret)."""
