"""The App Home as Slack gets it: a valid ``home`` view whatever is waiting (200 approvals still fit in 100 blocks),
each approval with the card's own buttons, hostile text shown as written and cut to Slack's limits, and the
approvals sorted into those the person may decide and those waiting for someone else."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk.models.views import View

from bot.app_home import (
    FOR_OTHERS_SHOWN,
    REQUEST_TEXT_MAX,
    WAITING_SHOWN,
    Home,
    SharedFacts,
    Spend,
    approvals_for,
    home_view,
    shared_facts,
    spend_alone_differs,
    view_hash,
)
from bot.blocks import approval_request
from bot.digest import BudgetUse
from connectors.actions import ShopRefund
from runtime.card_values import field_labels
from runtime.notices import ApprovalCard, CardEdit
from storage.home_viewers import RequestState
from storage.records import AgentPause, Approval, Intent, Run
from storage.repositories.budgets import CostRow
from tests.fakes.slack_api import _view_refusal

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
ROLES = {"manager": ["U0MANAGER", "S0LEADS"], "finance": ["U0FIN"]}
GROUPS = {"S0LEADS": {"U0LEAD"}}


def card(number: int, summary: str = "Refund $150.00 on order 1001") -> ApprovalCard:
    return ApprovalCard(
        approval_id=f"AP-{number}",
        action_id=f"A-{number}",
        decision_id=f"D-{number}",
        summary=summary,
        params={"order_id": 1001, "amount": 150.0, "reason": "arrived broken"},
        rationale="The customer sent a photo.",
        rule_id="refunds-over-100-need-a-manager",
        reason="refunds over $100 need a manager",
        approver_roles=("manager",),
        requester="U0ALICE",
        expires_at=NOW + timedelta(hours=4),
        labels=field_labels(ShopRefund),
    )


def approval(number: int, **fields: Any) -> Approval:
    values: dict[str, Any] = {
        "id": number,
        "action_id": number,
        "decision_id": number,
        "approver_roles": ["manager"],
        "requester": "U0ALICE",
        "channel": "C0SHOP",
        "expires_at": NOW + timedelta(hours=4),
        "created_at": NOW - timedelta(minutes=5),
        **fields,
    }
    return Approval(**values)


def spent(by_agent: list[CostRow] | None = None, budgets: list[BudgetUse] | None = None) -> Spend:
    return Spend(NOW, datetime(2026, 11, 1, tzinfo=UTC), by_agent or [], budgets or [])


def shared(pending: list[Approval] | None = None, **fields: Any) -> SharedFacts:
    values: dict[str, Any] = {
        "now": NOW,
        "pending": pending or [],
        "voters": {},
        "teams": {},
        "spend": spent(),
        "paused": [],
        "group_members": GROUPS,
        **fields,
    }
    return shared_facts(**values)


def home(**fields: Any) -> Home:
    values: dict[str, Any] = {
        "waiting": [],
        "waiting_total": 0,
        "for_others": [],
        "for_others_total": 0,
        "recent": [],
        "shared": shared(),
        "zone": BERLIN,
        **fields,
    }
    return Home(**values)


def published(view: dict[str, Any]) -> dict[str, Any]:
    """The view as Slack would take it: slack_sdk builds it again from its JSON, and the fake Slack accepts it."""
    assert View(**view).to_dict() == view
    assert _view_refusal(view) is None
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    ids = [block["block_id"] for block in view["blocks"]]
    assert len(ids) == len(set(ids)), "block ids must be unique within a view"
    return view


def texts(view: dict[str, Any]) -> str:
    return json.dumps(view, ensure_ascii=False)


def test_an_approval_shows_its_summary_and_the_cards_own_buttons() -> None:
    view = published(home_view(home(waiting=[card(7)], waiting_total=1)))
    [section, reasoning, actions] = [b for b in view["blocks"] if "AP-7" in b["block_id"]]
    assert reasoning["text"]["text"] == "*Why the agent proposes it:* The customer sent a photo."
    assert section["text"]["text"].startswith(
        "`AP-7` · manager · expires Fri 27 Nov 2026 14:00 Europe/Berlin"
    )
    assert "*Refund $150.00 on order 1001*\nRequested by <@U0ALICE> · `A-7`" in section["text"]["text"]
    assert "*Amount:* $150.00" in section["text"]["text"]
    [card_buttons] = [b for b in approval_request(card(7))[1] if b["block_id"] == "aios_decision"]
    assert actions["elements"] == card_buttons["elements"]
    assert actions["block_id"] == "aios_decision_AP-7"
    assert {e["action_id"] for e in actions["elements"]} >= {"aios_approve", "aios_reject"}
    assert {e["value"] for e in actions["elements"]} == {"AP-7"}


def test_empty_sections_say_so_in_one_line() -> None:
    view = published(home_view(home()))
    shown = {b["block_id"]: b["text"]["text"] for b in view["blocks"] if b["type"] == "section"}
    assert shown == {
        "home_waiting_none": "Nothing is waiting for your decision.",
        "home_recent_none": "You have not asked for anything yet.",
        "home_spend": "*Model spend this month:* no model calls in November 2026, since the 1st (UTC).",
        "home_budgets": "*Budgets near their limit:* none is 80% used.",
        "home_paused": "No agent is paused.",
    }


def test_hostile_text_is_escaped_and_cut_to_slacks_limits() -> None:
    hostile = "<!channel> <@U0BOSS> <https://evil.example|click> & " + "x" * 5000
    intent = Intent(
        id=3,
        source="mention",
        channel="C0SHOP",
        user="U0MANAGER",
        text=hostile,
        created_at=NOW,
        status="dispatched",
    )
    run = Run(id=4, intent_id=3, agent="returns", status="awaiting_approval")
    view = published(
        home_view(
            home(
                waiting=[card(1, summary=hostile)],
                waiting_total=1,
                for_others=[replace(card(2, summary=hostile), requester="U0MANAGER")],
                for_others_total=1,
                recent=[RequestState(intent, run)],
                shared=shared(
                    spend=spent(
                        [CostRow("<!here>", 3, 1, 1, 0, 0, 1.234567, 0)],
                        [BudgetUse("<!here>", "<@U0X>", "month", 9.0, 10.0)],
                    ),
                    paused=[AgentPause(agent="<!channel>", paused_by="U0PAUSER", created_at=NOW)],
                ),
            )
        )
    )
    everything = texts(view)
    for mention in ("<!channel>", "<!here>", "<@U0BOSS>", "<https://evil", "<@U0X>"):
        assert mention not in everything
    assert "&lt;!channel&gt; &lt;@U0BOSS&gt;" in everything
    [request] = [b for b in view["blocks"] if b["block_id"] == "home_request_0"]
    assert request["text"]["text"].startswith(
        "*Waiting for approval* · `I-3` · `R-4` returns · Fri 27 Nov 2026 10:00 Europe/Berlin (09:00 UTC)\n>"
    )
    assert len(request["text"]["text"].split("\n>", 1)[1]) <= REQUEST_TEXT_MAX
    assert request["text"]["text"].endswith("…")
    for block in view["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
    spend = next(b for b in view["blocks"] if b["block_id"] == "home_spend")["text"]["text"]
    assert "• &lt;!here&gt;: $1.23" in spend


def test_two_hundred_waiting_approvals_fit_in_one_view() -> None:
    pending = [approval(n) for n in range(1, 201)]
    theirs, for_others = approvals_for("U0MANAGER", shared(pending), ROLES)
    assert len(theirs) == 200 and for_others == []
    long_summary = "Refund " + "y" * 3000
    # Each as much as the Home shows of a card: two long parameters, edits, a long rationale.
    full = replace(
        card(0, long_summary),
        params={"body": "line\n" * 2000, "note": "x\n" * 2000, "amount": 1.0},
        rationale="r" * 5000,
        edits=tuple(CardEdit("U0ED", (("amount", n, n + 1),)) for n in range(9)),
    )
    view = published(
        home_view(
            home(
                waiting=[replace(full, approval_id=f"AP-{a.id}") for a in theirs[:WAITING_SHOWN]],
                waiting_total=len(theirs),
                for_others=[card(n, long_summary) for n in range(300, 300 + FOR_OTHERS_SHOWN)],
                for_others_total=200,
                recent=[
                    RequestState(
                        Intent(
                            id=n, source="im", channel="D1", user="U0MANAGER", text="z" * 5000, created_at=NOW
                        ),
                        None,
                    )
                    for n in range(10)
                ],
            )
        )
    )
    buttons = [b for b in view["blocks"] if b["type"] == "actions"]
    assert len(buttons) == WAITING_SHOWN
    more = next(b for b in view["blocks"] if b["block_id"] == "home_waiting_more")
    assert more["elements"][0]["text"] == f"and {200 - WAITING_SHOWN} more — `/aios pending` lists every one"
    assert all(b["elements"][0]["action_id"] == "aios_approve" for b in buttons)  # all shown in full
    assert len([b for b in view["blocks"] if b["block_id"].startswith("home_param_")]) == 2 * WAITING_SHOWN
    others = next(b for b in view["blocks"] if b["block_id"] == "home_for_others")["text"]["text"]
    assert others.count("\n• `AP-") == FOR_OTHERS_SHOWN and not others.endswith("…")
    more = next(b for b in view["blocks"] if b["block_id"] == "home_for_others_more")
    assert more["elements"][0]["text"] == "and 190 more — `/aios pending` lists every one"


def test_roles_held_through_a_user_group_count() -> None:
    theirs, _ = approvals_for("U0LEAD", shared([approval(1)]), ROLES)
    assert [a.id for a in theirs] == [1]
    nobody, others = approvals_for("U0STRANGER", shared([approval(1)]), ROLES)
    assert nobody == [] and others == []


def test_a_request_its_rule_forbids_its_requester_to_approve_waits_for_others() -> None:
    mine = approval(1, requester="U0MANAGER", forbid_self_approval=True)
    allowed = approval(2, requester="U0MANAGER")
    theirs, for_others = approvals_for("U0MANAGER", shared([mine, allowed]), ROLES)
    assert [a.id for a in theirs] == [2]
    assert [a.id for a in for_others] == [1]


def test_an_escalated_request_is_for_the_escalation_roles_once_it_is_due() -> None:
    escalating = approval(
        1, approver_roles=["finance"], escalate_to=["manager"], escalate_at=NOW + timedelta(hours=1)
    )
    assert approvals_for("U0MANAGER", shared([escalating]), ROLES)[0] == []
    escalated = replace_approval(escalating, escalate_at=NOW - timedelta(minutes=1))
    assert [a.id for a in approvals_for("U0MANAGER", shared([escalated]), ROLES)[0]] == [1]
    assert [a.id for a in approvals_for("U0FIN", shared([escalated]), ROLES)[0]] == [1]


def test_an_expired_request_and_one_already_approved_by_them_are_not_theirs_to_decide() -> None:
    expired = approval(1, expires_at=NOW - timedelta(seconds=1))
    quorum = approval(2, quorum=2)
    theirs, for_others = approvals_for(
        "U0MANAGER", shared([expired, quorum], voters={2: ["U0MANAGER"]}), ROLES
    )
    assert theirs == []
    assert [a.id for a in for_others] == [2]


def test_the_same_records_draw_the_same_view() -> None:
    first = home_view(home(waiting=[card(1)], waiting_total=1))
    assert view_hash(first) == view_hash(home_view(home(waiting=[card(1)], waiting_total=1)))
    assert view_hash(first) != view_hash(home_view(home(waiting=[card(2)], waiting_total=1)))


def replace_approval(original: Approval, **fields: Any) -> Approval:
    return Approval(**{**original.model_dump(), **fields})


def test_an_approval_shows_what_its_card_shows_before_its_approve_button() -> None:
    email = replace(
        card(3, "Email sam@example.com: Your refund"),
        params={"to": "sam@example.com", "body": "Dear Sam,\nwe refund <everything>.\nBest"},
        rationale="She asked twice.",
        edits=(CardEdit("U0ED", (("to", "pat@example.com", "sam@example.com"),)),),
        labels={},
    )
    view = published(home_view(home(waiting=[email], waiting_total=1)))
    shown = {b["block_id"]: b for b in view["blocks"] if "AP-3" in b["block_id"]}
    assert list(shown) == [
        "home_approval_AP-3",
        "home_edits_AP-3",
        "home_param_AP-3_0",
        "home_reasoning_AP-3",
        "aios_decision_AP-3.e1",
    ]
    edited = shown["home_edits_AP-3"]["elements"][0]["text"]
    assert edited == ":pencil2: Edited by <@U0ED>: To pat@example.com → sam@example.com"
    body = shown["home_param_AP-3_0"]["text"]["text"]
    assert body == "*Body:*\n>Dear Sam,\n>we refund &lt;everything&gt;.\n>Best"
    assert shown["home_reasoning_AP-3"]["text"]["text"].endswith("She asked twice.")
    actions = [e["action_id"] for e in shown["aios_decision_AP-3.e1"]["elements"]]
    assert actions == ["aios_approve", "aios_edit", "aios_reject"]


def test_an_approval_with_more_than_the_home_can_show_is_approved_on_its_card() -> None:
    many = replace(card(4), params={f"part_{n}": f"line\n{n}" for n in range(3)})
    view = published(home_view(home(waiting=[many], waiting_total=1, channels={"AP-4": "C0SHOP"})))
    shown = {b["block_id"]: b for b in view["blocks"] if "AP-4" in b["block_id"]}
    assert list(shown) == ["home_approval_AP-4", "aios_decision_AP-4"]
    assert "read its card in <#C0SHOP> to approve it" in shown["home_approval_AP-4"]["text"]["text"]
    actions = [e["action_id"] for e in shown["aios_decision_AP-4"]["elements"]]
    assert actions == ["aios_edit", "aios_reject"]


def test_spend_and_a_clicks_notice_are_apart_from_what_changed() -> None:
    before = view_hash(home_view(home()))
    richer = home(shared=shared(spend=spent([CostRow("returns", 3, 1, 1, 0, 0, 2.5, 0)])))
    assert spend_alone_differs(view_hash(home_view(richer)), before)
    noticed = home_view(home(notice="Your click on `AP-3` did not count."))
    assert noticed["blocks"][0]["block_id"] == "home_notice"
    assert view_hash(noticed) == before
    assert not spend_alone_differs(view_hash(home_view(home(waiting=[card(1)], waiting_total=1))), before)


def test_approvals_of_another_slack_team_are_left_out() -> None:
    facts = shared([approval(1), approval(2), approval(3)], teams={1: "T0ONE", 2: "T0TWO", 3: ""})
    assert [a.id for a in approvals_for("U0MANAGER", facts, ROLES, "T0ONE")[0]] == [1, 3]
    assert [a.id for a in approvals_for("U0MANAGER", facts, ROLES)[0]] == [1, 2, 3]
