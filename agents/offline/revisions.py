"""Offline grammar for planning again after a reviewer rejected an action and said why (the feedback turn of
:class:`agents.base.Feedback`): the rejected tool call, changed as the reason asks, or nothing and a reply.

Refunds (``shop_refund``, ``stripe_refund``): a reason naming one amount (``refund only the broken item, $40``,
``$40 max``) is the same refund of that amount, the reviewer's words added to its reason; the amount follows the
refunds grammar's rules (a dollar sign or ``USD``/``dollars``; one that cannot be refunded proposes nothing, and
the reply says why). Posts (``cms_create_draft``, ``cms_publish``, ``wordpress_update``): a new title in quotes,
or a time (``publish on Friday 9am``) read in the team's zone, is the same call with it. A reason saying not to
(``don't refund``, ``no refund``), or one the grammar cannot use, proposes nothing: the reply says the reason
was noted.
"""

from __future__ import annotations

import re
from decimal import Decimal

from agents.amounts import AmountProblem, find_money, read_amount
from agents.base import Feedback, ReadFeedback
from agents.dates import UnreadableTime, describe, read_time
from agents.llm import LLMReply, ToolCall
from agents.offline.grammar import Grammar
from agents.publishing_calendar import read_context

REFUND_TOOLS = ("shop_refund", "stripe_refund")
POST_TOOLS = ("cms_create_draft", "cms_publish", "wordpress_update")
MAX_REFUND_REASON = 500  # a refund's reason, as its action allows

_NOT_AT_ALL = re.compile(
    r"\b(?:no|not?\s+(?:a|any)|never|don'?t|do\s+not|shouldn'?t|should\s+not|won'?t)\s+"
    r"(?:\w+\s+){0,2}?(?:(?:refund|publish|post|draft|update)(?:s|es|e?d|ing)?|do\s+(?:it|this|that))"
    # "don't refund more than $40" names a cap, "don't publish before Friday 9am" a time: neither is a no.
    r"(?!\w|\s+(?:more\s+than|over|above|beyond|past|before|until|till)\b)",
    re.IGNORECASE,
)
_BARE_NUMBER = re.compile(r"(?<![\w.,/:-])\d+(?:[.,]\d+)?(?![\w/:-]|[.,]\d)")
_QUOTED = re.compile(r"[\"“]([^\"“”]+)[\"”]")
_WHEN = re.compile(
    r"\b(?:on|at|for|by|before|after|from|until)\s+(?P<when>.+?)[\s.!]*$", re.IGNORECASE | re.DOTALL
)
_TIME_OF_DAY = re.compile(r"\d|\b(?:noon|midnight)\b", re.IGNORECASE)  # words without one name no time


def plan(text: str, system: str, offered: set[str]) -> LLMReply | None:
    feedback = Feedback.read(text)
    if feedback is None:
        return None
    if _NOT_AT_ALL.search(feedback.reason):
        return _noted(feedback, "they said not to, so I propose nothing more")
    if feedback.tool in REFUND_TOOLS and feedback.tool in offered:
        return _refund(feedback)
    if feedback.tool in POST_TOOLS and feedback.tool in offered:
        return _post(feedback, system)
    return _noted(feedback, "I can't act on it without a model, so I propose nothing more")


def examples(offered: set[str]) -> list[str]:
    return []  # only ever given after a rejection; nobody types it


def _refund(feedback: ReadFeedback) -> LLMReply:
    """The same refund of the one amount the reason names."""
    money = find_money(feedback.reason)
    example = "`refund only the broken item, $40`"
    if not money:
        bare = _BARE_NUMBER.search(feedback.reason)
        if bare is not None:
            return LLMReply(
                f"I couldn't tell whether “{bare.group()}” in the reviewer's reason is an amount, so I proposed "
                f"nothing; an amount needs a dollar sign, like {example}."
            )
        return _noted(feedback, "it names no amount, so I propose nothing more")
    if len(money) > 1:
        said = ", ".join(f"“{m.written}”" for m in money)
        return LLMReply(f"The reviewer's reason names more than one amount ({said}), so I won't guess which.")
    amount = read_amount(money[0], example)
    if isinstance(amount, AmountProblem):
        return LLMReply(f"I proposed nothing: {amount.message}.")
    before = feedback.params.get("amount")
    was = f" instead of ${Decimal(str(before)):,.2f}" if isinstance(before, int | float) else ""
    reason = f"{feedback.params.get('reason') or 'refund'}; reviewer: {feedback.reason}"
    params = {**feedback.params, "amount": float(amount), "reason": _shortened(reason)}
    return LLMReply(
        f"Revised as the reviewer asked: refund ${amount:,.2f}{was}.",
        [ToolCall("", feedback.tool, params)],
    )


def _post(feedback: ReadFeedback, system: str) -> LLMReply:
    """The same call with the quoted title and the time the reason names, where the call has them."""
    changes: dict[str, object] = {}
    said: list[str] = []
    title = _QUOTED.search(feedback.reason)
    if title is not None and feedback.tool in ("cms_create_draft", "wordpress_update"):
        changes["title"] = title.group(1).strip()
        said.append(f"titled “{changes['title']}”")
    when = _WHEN.search(_QUOTED.sub(" ", feedback.reason))
    time_field = _time_field(feedback)
    if when is not None and _TIME_OF_DAY.search(when["when"]) and time_field is not None:
        zone, now = read_context(system)
        try:
            moment = read_time(when["when"], zone, now)
        except UnreadableTime as exc:
            return LLMReply(f"I didn't revise it: {exc}.")
        changes[time_field] = moment.isoformat()
        said.append(f"going out {describe(moment, zone)}")
    if not changes:
        return _noted(
            feedback, "it names no new title in quotes or time I can use, so I propose nothing more"
        )
    return LLMReply(
        f"Revised as the reviewer asked: {' and '.join(said)}.",
        [ToolCall("", feedback.tool, {**feedback.params, **changes})],
    )


def _time_field(feedback: ReadFeedback) -> str | None:
    """Which parameter holds the time a post goes out: a publish's, or a planned draft's."""
    if feedback.tool == "cms_publish":
        return "publish_at"
    if feedback.tool == "cms_create_draft" and feedback.params.get("planned_for"):
        return "planned_for"
    return None


def _noted(feedback: ReadFeedback, why: str) -> LLMReply:
    return LLMReply(f"I noted the reviewer's reason (“{feedback.reason}”); {why}.")


def _shortened(reason: str) -> str:
    """A refund's reason within what its action allows: the reviewer's words may not all fit."""
    return reason if len(reason) <= MAX_REFUND_REASON else reason[: MAX_REFUND_REASON - 1].rstrip() + "…"


GRAMMAR = Grammar(plan, examples)
