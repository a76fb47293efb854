"""What a condition may name, checked when the policy loads, so a misspelt name is refused at start instead of
denying every action it meets later.

The CEL library lists the variables an expression uses but cannot declare their types, so the selections on
them (``action.params.amount``) are walked here: identifiers and ``a.b.c`` chains (and ``a["b"]`` keys of
``action.params``), outside string literals. Pure: the caller passes each action's parameter names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping, Sequence

# The facts a condition sees (see Policy.evaluate), each with the fields it has.
FACTS: dict[str, frozenset[str]] = {
    # read_only and destructive: an MCP tool's annotations (false for the other actions).
    "action": frozenset({"name", "params", "read_only", "destructive"}),
    "requester": frozenset({"id", "roles", "today"}),
    "run": frozenset({"totals"}),
    "order": frozenset({"refunded"}),
    "payment": frozenset({"refunded"}),
}

MCP_PREFIX = "mcp."  # the MCP tools' actions (connectors.mcp_tools); policies import no connector
_MCP_NAMED = re.compile(r"""["']mcp\.""")
_STRING = r"""[rR]?[bB]?(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')"""
_TOKENS = re.compile(
    rf"(?P<string>{_STRING})"
    r"|(?P<chain>(?<![\w.])[A-Za-z_]\w*(?:\s*\.\s*[A-Za-z_]\w*)*)(?P<call>\s*\()?"
    r"(?:\s*\[\s*(?P<key>" + _STRING + r")\s*\])?"
)
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_NAMED_ACTION = re.compile(
    rf"\baction\s*\.\s*name\s*==\s*(?P<right>{_STRING})|(?P<left>{_STRING})\s*==\s*action\s*\.\s*name\b"
    rf"|\baction\s*\.\s*name\s+in\s*\[(?P<listed>[^\]]*)\]"
)


def unknown_name(
    when: str,
    variables: Sequence[str],
    action_params: Mapping[str, Collection[str]] | None,
    *,
    mcp_connected: bool = False,
) -> str | None:
    """Why ``when`` names something no action ever has, or None when every name is known.

    ``variables`` are the expression's variables as the CEL library lists them; ``action_params`` maps each
    action name to its parameter names (None: parameters are not checked). A rule that names its action
    (``action.name == "shop.refund"``, and no ``||``) is checked against that action's parameters only.
    ``mcp_connected``: ``action_params`` includes the tools of the MCP servers that could be connected, so a
    rule naming one of their tools is checked too (a rule naming a tool of a server that is not connected,
    or MCP tools by prefix, still cannot be).
    """
    bound = set(_BOUND.findall(when))
    for variable in variables:
        if variable not in FACTS and variable not in bound:
            return f"`{variable}`, which is not a fact a condition can use{_hint(variable, FACTS)}"
    params, owner = None, ""
    if action_params is not None:
        named = _named_actions(when)
        servers = {_mcp_server(name) for name in action_params if name.startswith(MCP_PREFIX)}
        unchecked = False
        for name in named:
            if name in action_params:
                continue
            if not name.startswith(MCP_PREFIX):
                return f'action "{name}", which no connector offers{_hint(name, action_params)}'
            server = _mcp_server(name)
            if mcp_connected and server in servers:
                tools = [other for other in action_params if _mcp_server(other) == server]
                return f'action "{name}", which the MCP server {server} does not offer{_hint(name, tools)}'
            # An MCP server's tools are known only once it is connected, after the policy loads: a rule that
            # names them has its parameters checked when it is evaluated (an unknown one fails closed) instead.
            unchecked = True
        # Which rules' parameters can be checked: once the servers are connected, a rule that names its actions
        # (an MCP tool's among them); before, a rule that does not mention MCP tools at all, as theirs are not
        # known yet.
        checkable = bool(named) if mcp_connected else _MCP_NAMED.search(when) is None
        if not unchecked and checkable:
            scope = named if named and "||" not in when else list(action_params)
            params = {field for name in scope for field in action_params[name]}
            owner = " or ".join(scope) if len(scope) <= 2 else "any action"
    for token in _TOKENS.finditer(when):
        if token.group("chain") is None:
            continue
        path = re.split(r"\s*\.\s*", token.group("chain"))
        if token.group("call") and len(path) > 1:
            path = path[:-1]  # a method call on what comes before: `action.params.to.endsWith(...)`
        if token.group("key") and path == ["action", "params"]:
            path.append(token.group("key")[1:-1])
        head = path[0]
        if head in bound or head not in FACTS:
            continue
        if len(path) > 1 and path[1] not in FACTS[head]:
            return f"`{head}.{path[1]}`, which {head} does not have{_hint(path[1], FACTS[head], f'{head}.')}"
        if (
            params is not None
            and path[:2] == ["action", "params"]
            and len(path) > 2
            and path[2] not in params
        ):
            hint = _hint(path[2], params, "action.params.")
            return f"`action.params.{path[2]}`, which {owner} does not have{hint}"
    return None


def _mcp_server(action_name: str) -> str:
    """``git`` of ``mcp.git.git_status``."""
    return action_name.removeprefix(MCP_PREFIX).split(".", 1)[0]


def _named_actions(when: str) -> list[str]:
    names = []
    for match in _NAMED_ACTION.finditer(when):
        if match.group("listed") is not None:
            names += [s[1:-1] for s in re.findall(_STRING, match.group("listed"))]
        else:
            names.append((match.group("right") or match.group("left"))[1:-1])
    return list(dict.fromkeys(names))


def _hint(name: str, known: Collection[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    if close:
        return f" (did you mean `{prefix}{close[0]}`?)"
    return f" (known: {', '.join(sorted(known))})"
