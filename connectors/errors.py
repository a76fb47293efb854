"""The connector exception hierarchy, described once."""


class ConnectorError(Exception):
    """A connector could not carry out an action."""


class TransientConnectorError(ConnectorError):
    """Worth retrying: a timeout, a rate limit, a server error."""


class PermanentConnectorError(ConnectorError):
    """Retrying will not help: the request itself is wrong (unknown order, amount too high, …)."""


class InvalidActionError(ConnectorError):
    """A proposed action does not match its typed model, or names no known action."""


class UnknownActionError(InvalidActionError):
    """No installed connector offers an action by this name."""
