"""Policy evaluation with 200 rules: microseconds per proposed action, and CEL programs run per action.

    .venv/bin/python -m bench.policy_eval [--evaluations 20000] [--seed 7]

The policy is generated: 60 actions over 12 connectors and MCP tools named by prefix, each action with a block of
rules in the order a team writes them (money limits on `action.params.amount`, the requester's roles, what was
moved today or in the run, lists of actions sharing a verdict, then a plain fallback for some), and a few rules
that test no action name (destructive tools, a daily ceiling, read-only tools) at the top, in the middle and near
the end. The actions are drawn from the same names (a tenth of them unknown to the policy) with realistic
parameters, requesters with and without roles, run totals and history. Each evaluation is timed alone with
`time.perf_counter_ns`; the conditions judged in Python and the CEL programs run are counted in a separate pass,
so that counting costs nothing timed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from policies.engine import History, Policy, PolicyVerdict

CONNECTORS = (
    "shop",
    "stripe",
    "cms",
    "email",
    "social",
    "wordpress",
    "calendar",
    "github",
    "jira",
    "hubspot",
    "drive",
    "webhook",
)
VERBS = ("create", "update", "delete", "send", "refund")
ACTIONS = [f"{connector}.{verb}" for connector in CONNECTORS for verb in VERBS]
MCP_SERVERS = ("git", "linear", "notion")
ROLES = {
    "manager": ["U0MANAGER", "U0LEAD"],
    "finance": ["U0FIN", "U0LEAD"],
    "editor": ["U0EDITOR"],
    "admin": ["U0ADMIN"],
}
REQUESTERS = ("U0MANAGER", "U0LEAD", "U0FIN", "U0EDITOR", "U0ADMIN", "U0ALICE", "U0BOB", "U0CAROL")
RULES = 200


def generate_policy(rng: random.Random) -> str:
    """200 rules: blocks per action (conditions first, fallbacks last), with catch-alls spread through."""
    blocks: list[list[tuple[str, str]]] = []
    for name in ACTIONS:
        block: list[tuple[str, str]] = []
        money = name.endswith((".refund", ".send")) or rng.random() < 0.3
        if money:
            limit = rng.choice((50, 100, 250, 500, 1000))
            block.append((f'action.name == "{name}" && action.params.amount > {limit * 4}.0', "deny"))
            block.append((f'action.name == "{name}" && action.params.amount > {limit}.0', "require_approval"))
            if rng.random() < 0.5:
                block.append(
                    (
                        f'action.name == "{name}" && requester.today["{name}"] + action.params.amount > '
                        f"{limit * 5}.0",
                        "require_approval",
                    )
                )
        if rng.random() < 0.5:
            role = rng.choice(list(ROLES))
            block.append((f'action.name == "{name}" && "{role}" in requester.roles', "allow"))
        if rng.random() < 0.3:
            block.append((f'action.name == "{name}" && run.totals["{name}"] > 300.0', "require_approval"))
        if name.startswith("shop.refund"):
            block.append(
                (
                    f'action.name == "{name}" && order.refunded + action.params.amount > 100.0',
                    "require_approval",
                )
            )
        if rng.random() < 0.6:
            block.append((f'action.name == "{name}"', rng.choice(("allow", "require_approval"))))
        blocks.append(block)
    for server in MCP_SERVERS:  # MCP tools, by server
        tools: list[tuple[str, str]] = [
            (f'action.name.startsWith("mcp.{server}.") && action.read_only', "allow"),
            (f'action.name.startsWith("mcp.{server}.")', "require_approval"),
        ]
        blocks.insert(len(blocks) // 2, tools)
    rules = [rule for block in blocks for rule in block][: RULES - 8]
    while len(rules) < RULES - 8:  # lists of actions that share a verdict fill the rest
        listed = ", ".join(f'"{name}"' for name in rng.sample(ACTIONS, 3))
        rules.insert(rng.randrange(len(rules) // 2, len(rules)), (f"action.name in [{listed}]", "allow"))
    catch_alls = [
        (0, 'action.destructive && !("admin" in requester.roles)', "deny"),
        (1, 'requester.id == "U0BLOCKED"', "deny"),
        (
            len(rules) // 2,
            'requester.today["stripe.refund"] + requester.today["shop.refund"] > 2000.0',
            "deny",
        ),
        (len(rules) // 2, "has(action.params.amount) && action.params.amount > 10000.0", "deny"),
        (len(rules) - 20, 'action.read_only && !("admin" in requester.roles)', "allow"),
        (len(rules) - 10, 'action.name != "cms.delete" && "admin" in requester.roles', "allow"),
        (len(rules), '"manager" in requester.roles', "allow"),
        (len(rules), "action.read_only", "allow"),
    ]
    for at, when, verdict in catch_alls:
        rules.insert(at, (when, verdict))
    assert len(rules) == RULES, len(rules)
    lines = ["version: 1", "roles:"]
    lines += [f"  {role}: [{', '.join(members)}]" for role, members in ROLES.items()]
    lines.append("rules:")
    for number, (when, verdict) in enumerate(rules, 1):
        lines.append(f"  - id: rule-{number}")
        quoted = when.replace("'", "''")
        lines.append(f"    when: '{quoted}'")
        lines.append(f"    verdict: {verdict}")
        if verdict == "require_approval":
            lines.append("    approvers: [manager]")
    lines += ["default: require_approval", "default_approvers: [manager]"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Proposed:
    name: str
    params: dict[str, Any]
    requester: str
    run_totals: dict[str, float] | None
    history: History | None
    action_facts: dict[str, bool] | None


def generate_actions(rng: random.Random, count: int) -> list[Proposed]:
    actions = []
    for _ in range(count):
        draw = rng.random()
        facts = None
        if draw < 0.1:
            name = f"{rng.choice(('tickets', 'wiki'))}.{rng.choice(VERBS)}"  # no rule names it
        elif draw < 0.2:
            name = f"mcp.{rng.choice(MCP_SERVERS)}.{rng.choice(('status', 'search', 'write', 'drop'))}"
            read_only = name.endswith(("status", "search"))
            facts = {"read_only": read_only, "destructive": name.endswith("drop")}
        else:
            name = rng.choice(ACTIONS)
        params: dict[str, Any] = {"reason": rng.choice(("broken on arrival", "late", "duplicate charge"))}
        if name.endswith((".refund", ".send")) or rng.random() < 0.5:
            params["amount"] = float(rng.choice((5, 20, 45, 80, 120, 260, 600, 2500)))
        if name.startswith(("shop.", "stripe.")):
            params["order_id"] = 1000 + rng.randrange(500)
        if name.startswith(("cms.", "wordpress.", "social.")):
            params |= {
                "title": "Spring sale",
                "body": "Twenty percent off everything in the shop.",
                "slug": "sale",
            }
        run_totals = None
        if rng.random() < 0.3 and "amount" in params:
            run_totals = {name: params["amount"] + rng.choice((0.0, 50.0, 400.0))}
        history = None
        if rng.random() < 0.3:
            history = History(
                order_refunded=rng.choice((0.0, 30.0)),
                requester_today={name: rng.choice((0.0, 100.0, 3000.0))},
            )
        actions.append(Proposed(name, params, rng.choice(REQUESTERS), run_totals, history, facts))
    return actions


def judge(policy: Policy, action: Proposed) -> PolicyVerdict:
    return policy.evaluate(
        action.name,
        action.params,
        action.requester,
        action.run_totals,
        history=action.history,
        action_facts=action.action_facts,
    )


class CountingProgram:
    """Stands in for a compiled condition during the counting pass."""

    def __init__(self, program: Any, runs: list[int]) -> None:
        self._program = program
        self._runs = runs

    def execute(self, context: Any = None) -> Any:
        self._runs[0] += 1
        return self._program.execute(context)

    def variables(self) -> list[str]:
        return list(self._program.variables())


class CountingJudge:
    """Stands in for a condition's judge in Python during the counting pass."""

    def __init__(self, judge: Any, runs: list[int]) -> None:
        self._judge = judge
        self._runs = runs

    def __call__(self, facts: Any) -> Any:
        self._runs[0] += 1
        return self._judge(facts)


def conditions_judged(text: str, actions: list[Proposed]) -> tuple[list[int], list[int]]:
    """Per evaluation, the conditions judged in Python and the CEL programs run, counted on a separate copy of the
    policy."""
    policy = Policy.from_text(text, "bench")
    judged, runs = [0], [0]
    for compiled in policy._rules:
        object.__setattr__(compiled, "program", CountingProgram(compiled.program, runs))
        if compiled.judge is not None:
            object.__setattr__(compiled, "judge", CountingJudge(compiled.judge, judged))
    in_python, by_cel = [], []
    for action in actions:
        judged[0] = runs[0] = 0
        judge(policy, action)
        in_python.append(judged[0])
        by_cel.append(runs[0])
    return in_python, by_cel


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--evaluations", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    text = generate_policy(rng)
    actions = generate_actions(rng, 2_000)
    started = time.perf_counter()
    policy = Policy.from_text(text, "bench")
    print(f"loaded {RULES} rules in {(time.perf_counter() - started) * 1000:.0f} ms")

    for action in actions[:200]:  # warm-up
        judge(policy, action)
    timings = []
    verdicts: Counter[str] = Counter()
    cpu_began = time.thread_time_ns()
    for number in range(args.evaluations):
        action = actions[number % len(actions)]
        began = time.perf_counter_ns()
        verdict = judge(policy, action)
        timings.append(time.perf_counter_ns() - began)
        verdicts[verdict.verdict] += 1
    cpu = (time.thread_time_ns() - cpu_began) / args.evaluations / 1000
    micros = sorted(t / 1000 for t in timings)
    q = statistics.quantiles(micros, n=100)
    print(
        f"{args.evaluations:,} evaluations: median {statistics.median(micros):.1f} µs, p90 {q[89]:.1f} µs, "
        f"p99 {q[98]:.1f} µs, mean {statistics.fmean(micros):.1f} µs, max {micros[-1]:.0f} µs; "
        f"CPU time {cpu:.1f} µs per evaluation (the timing loop's, with its own overhead)"
    )
    print("verdicts: " + ", ".join(f"{name} {count:,}" for name, count in sorted(verdicts.items())))
    in_python, by_cel = conditions_judged(text, actions[: args.evaluations])
    for what, counts in (("conditions judged in Python", in_python), ("CEL programs run", by_cel)):
        print(
            f"{what} per evaluation: mean {statistics.fmean(counts):.1f}, "
            f"median {statistics.median(counts):.0f}, max {max(counts)} (of {RULES} rules)"
        )


if __name__ == "__main__":
    main()
