"""Offline grammar for planning again after a reviewer rejected an action and said why (the feedback turn of
:class:`agents.base.Feedback`): the rejected tool call, changed as the reason asks, or nothing and a reply.

The feedback comes only from the agent's feedback turn (:class:`agents.base.FeedbackTurn`), never from words
a person typed: a request that reads like one is planned as a request.

Refunds (``shop_refund``, ``stripe_refund``): a reason that tells the amount to refund — ``refund only the broken
item, $40``, ``only $40``, ``$40 max``, ``at most $40``, ``make it $40``, ``don't refund more than $40``, ``$40
is right`` — is the same refund of that amount, the reviewer's words added to its reason; the amount follows the
refunds grammar's rules (a dollar sign or ``USD``/``dollars``; one that cannot be refunded proposes nothing, and
the reply says why). An amount told otherwise (``the customer already got $40 back``), or a reason naming another
order or payment than the rejected refund's (``refund order 1002 $40 instead``), proposes nothing: the reply says
the reason was noted. Posts (``cms_create_draft``, ``cms_publish``, ``wordpress_update``): a new title in quotes,
or a time (``publish on Friday 9am``) read in the team's zone, is the same call with it. A reason saying not to
(``don't refund``, ``no refund``), or one the grammar cannot use, proposes nothing: the reply says the reason
was noted.
"""

from __future__ import annotations

import re
from decimal import Decimal

from agents.amounts import AmountProblem, Money, find_money, read_amount
from agents.base import Feedback
from agents.dates import UnreadableTime, describe, read_time
from agents.llm import LLMReply, ToolCall
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
# What names the amount to refund: said before it in its sentence ("refund only the broken item, $40", "only
# $40", "make it $40", "no more than $40") or right after it ("$40 max", "$40 is right").
_TELLS_BEFORE = re.compile(
    r"\b(?:refund|only|just|make\s+it|at\s+most|max(?:imum)?|up\s+to|more\s+than|cap\s+it\s+at)\b",
    re.IGNORECASE,
)
_TELLS_AFTER = re.compile(
    r"^\W*(?:max(?:imum)?|at\s+most|tops|only|(?:is|would\s+be)\s+(?:right|enough|fair|fine))\b",
    re.IGNORECASE,
)
# An amount told as what happened, not what to do: "already got $40 back", "was refunded $40 last week".
_TELLS_PAST = re.compile(
    r"\b(?:already|got|received|gave|given|paid|was|were|been|had|refunded|back|last|ago|yesterday)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.;!?\n]")
_ORDER = re.compile(r"(?:\border\s*(?:no\.?|number)?\s*#?\s*|#)(?P<id>\d+)\b", re.IGNORECASE)
_PAYMENT = re.compile(r"\b(?:pi|ch|py)_[A-Za-z0-9]+\b")
_BARE_NUMBER = re.compile(r"(?<![\w.,/:-])\d+(?:[.,]\d+)?(?![\w/:-]|[.,]\d)")
_QUOTED = re.compile(r"[\"“]([^\"“”]+)[\"”]")
_WHEN = re.compile(
    r"\b(?:on|at|for|by|before|after|from|until)\s+(?P<when>.+?)[\s.!]*$", re.IGNORECASE | re.DOTALL
)
_TIME_OF_DAY = re.compile(r"\d|\b(?:noon|midnight)\b", re.IGNORECASE)  # words without one name no time


def plan(feedback: Feedback, system: str, offered: set[str]) -> LLMReply:
    """The rejected call revised as the reviewer's reason asks, or nothing and a reply saying why."""
    if _NOT_AT_ALL.search(feedback.reason):
        return _noted(feedback, "they said not to, so I propose nothing more")
    if feedback.tool in REFUND_TOOLS and feedback.tool in offered:
        return _refund(feedback)
    if feedback.tool in POST_TOOLS and feedback.tool in offered:
        return _post(feedback, system)
    return _noted(feedback, "I can't act on it without a model, so I propose nothing more")


def _refund(feedback: Feedback) -> LLMReply:
    """The same refund of the one amount the reason names."""
    if (other := _other_target(feedback)) is not None:
        return _noted(feedback, f"it names {other}, not the rejected refund's, so I propose nothing more")
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
    if not _told_to_refund(feedback.reason, money[0]):
        return _noted(feedback, "it doesn't say to refund that amount, so I propose nothing more")
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


def _told_to_refund(reason: str, money: Money) -> bool:
    """The reason's sentence with the amount tells to refund it, and says nothing of a refund already given."""
    start, end = money.span
    begins = max((m.end() for m in _SENTENCE_END.finditer(reason, 0, start)), default=0)
    ends = next((m.start() for m in _SENTENCE_END.finditer(reason, end)), len(reason))
    before, after = reason[begins:start], reason[end:ends]
    if _TELLS_PAST.search(before) or _TELLS_PAST.search(after):
        return False
    return bool(_TELLS_BEFORE.search(before) or _TELLS_AFTER.search(after))


def _other_target(feedback: Feedback) -> str | None:
    """Another order or payment than the rejected refund's, as the reason names it; None when it names none
    (or only the refund's own)."""
    own = {str(feedback.params.get("order_id", "")), str(feedback.params.get("payment", ""))}
    for found in _ORDER.finditer(feedback.reason):
        if found["id"] not in own:
            return f"order {found['id']}"
    for found in _PAYMENT.finditer(feedback.reason):
        if found.group() not in own:
            return f"payment {found.group()}"
    return None


def _post(feedback: Feedback, system: str) -> LLMReply:
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


def _time_field(feedback: Feedback) -> str | None:
    """Which parameter holds the time a post goes out: a publish's, or a planned draft's."""
    if feedback.tool == "cms_publish":
        return "publish_at"
    if feedback.tool == "cms_create_draft" and feedback.params.get("planned_for"):
        return "planned_for"
    return None


def _noted(feedback: Feedback, why: str) -> LLMReply:
    return LLMReply(f"I noted the reviewer's reason (“{feedback.reason}”); {why}.")


def _shortened(reason: str) -> str:
    """A refund's reason within what its action allows: the reviewer's words may not all fit."""
    return reason if len(reason) <= MAX_REFUND_REASON else reason[: MAX_REFUND_REASON - 1].rstrip() + "…"
