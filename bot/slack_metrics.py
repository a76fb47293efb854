"""Prometheus metrics of the Slack front door, served with the runtime's at `GET /metrics`: the requests
received, by kind, and how long answering them took."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SLACK_REQUESTS = Counter("aios_slack_requests_total", "Slack requests received", ["kind"])
# Each kind's series, bound once: looking a label up costs several times what counting does, on every ack.
SLASH_COMMANDS = SLACK_REQUESTS.labels(kind="slash")
MENTIONS = SLACK_REQUESTS.labels(kind="app_mention")
DIRECT_MESSAGES = SLACK_REQUESTS.labels(kind="message_im")
BLOCK_ACTIONS = SLACK_REQUESTS.labels(kind="block_actions")
VIEW_SUBMISSIONS = SLACK_REQUESTS.labels(kind="view_submission")
MESSAGE_ACTIONS = SLACK_REQUESTS.labels(kind="message_action")
APP_HOME_OPENINGS = SLACK_REQUESTS.labels(kind="app_home_opened")
ACK_SECONDS = Histogram(
    "aios_slack_ack_seconds",
    "Time from receiving a Slack request to answering it",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
