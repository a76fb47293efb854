"""End to end in the real `aios serve`: a refund with a customer email, the email gated by a manager, sent once."""

from __future__ import annotations

from tests.e2e.conftest import Server
from tests.e2e.test_serve import approval_value, in_thread, send
from tests.fakes.slack_payloads import app_mention, block_action

REQUESTER, MANAGER = "U0ALICE", "U0MANAGER"


async def test_the_customer_email_is_sent_once_after_the_manager_approves(server: Server) -> None:
    slack = server.slack
    thread = "1700000050.000100"
    mention = app_mention(
        "refund order 1003 $40 and tell the customer", user=REQUESTER, ts=thread, thread_ts=thread
    )
    assert (await send(server, *mention))[0] == 200

    slack.wait_for(lambda s: in_thread(s, thread, "Done: Refund $40.00 on order 1003"))
    request = slack.wait_for(
        lambda s: [c for c in s.approval_requests() if "ana@example.com" in c.params["text"]]
    )[0]
    assert server.sandbox()["emails"] == []
    message_ts = slack.wait_for(lambda s: request.response.get("ts"))
    click = block_action("aios_approve", approval_value(request), user=MANAGER, message_ts=str(message_ts))
    await send(server, *click)
    await send(server, *click)  # a second click changes nothing

    slack.wait_for(lambda s: in_thread(s, thread, "Done: Email ana@example.com"))
    [email] = server.sandbox()["emails"]
    assert email["to"] == "ana@example.com"
    assert len(in_thread(slack, thread, "Done: Email")) == 1
