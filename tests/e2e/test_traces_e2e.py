"""The real `aios serve` with OTEL_EXPORTER_OTLP_ENDPOINT set exports its traces over OTLP/HTTP to a collector."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import Server
from tests.e2e.test_serve import approval_value, in_thread, send
from tests.fakes.aios_process import aios_env, running_aios_serve
from tests.fakes.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import block_action, slash_command

REQUESTER, MANAGER = "U0ALICE", "U0MANAGER"
# The approving click claims the execution and its ActionApproved calls the connector: no ExecuteAction between.
EXPECTED = {
    "intent",
    "HandleIntent",
    "approval.wait",
    "DecideApproval",
    "ActionApproved",
    "execute shop.refund",
    "ActionExecuted",
}


async def test_a_gated_refund_reaches_the_collector_as_one_trace(tmp_path: Path) -> None:
    with FakeSlackApi() as slack, OtlpReceiver() as collector:
        env = aios_env(f"sqlite+aiosqlite:///{tmp_path / 'aios.db'}", slack.url)
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
            OTEL_SERVICE_NAME="aios-e2e",
            OTEL_BSP_SCHEDULE_DELAY="100",  # milliseconds: export soon after each span ends
        )
        with running_aios_serve(env) as serve:
            server = Server(serve.url, env, slack, serve.log)
            status, _, _ = await send(
                server, *slash_command("refund order 1001 $250 arrived broken", user=REQUESTER)
            )
            assert status == 200
            request = slack.wait_for(
                lambda s: [c for c in s.approval_requests() if "order 1001" in c.params["text"]]
            )[0]
            message_ts = slack.wait_for(lambda s: request.response.get("ts"))
            click = block_action("aios_approve", approval_value(request), user=MANAGER, message_ts=message_ts)
            assert (await send(server, *click))[0] == 200
            slack.wait_for(lambda s: in_thread(s, request.params["thread_ts"], "Done: Refund $250.00"))

            def whole_trace(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
                """The refund's trace once every span expected of it has arrived (they come in batches)."""
                executed = [s for s in spans if s.name == "execute shop.refund"]
                if not executed:
                    return []
                trace = [s for s in spans if s.trace_id == executed[0].trace_id]
                acks = [s for s in trace if s.name == "slack.ack"]
                return trace if len(acks) == 2 and {s.name for s in trace} >= EXPECTED else []

            trace = collector.wait_for(whole_trace)

    assert {s.service for s in trace} == {"aios-e2e"}
    acks = sorted(str(s.attributes["aios.slack.payload"]) for s in trace if s.name == "slack.ack")
    assert acks == ["block_actions", "slash_command"]
    [wait] = [s for s in trace if s.name == "approval.wait"]
    [decide] = [s for s in trace if s.name == "DecideApproval"]
    assert decide.links == (wait.span_id,)
    ids = {s.span_id for s in trace}
    assert all(s.parent_span_id in ids for s in trace if s.parent_span_id)
