"""`aios policy check` through the installed executable, as a team's pipeline runs it: the exit code says what
happened (0 good, 1 a failing test or rule, 2 a file that does not load), the report says why, `--json` is one
document, and `--against-history` counts the recorded decisions the file would change."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.fakes.aios_process import AIOS, aios_env

RULES = """
version: 1
roles:
  manager: [U0MANAGER]
rules:
  - id: refunds-over-100-are-denied
    when: action.name == "shop.refund" && run.totals["shop.refund"] > 100.0
    verdict: deny
  - id: small-refunds-are-fine
    when: action.name == "shop.refund"
    verdict: allow
default: require_approval
default_approvers: [manager]
"""

PASSING = (
    RULES
    + """
tests:
  - name: a $150 refund is denied
    action: shop.refund
    params: {order_id: 1001, amount: 150.0, reason: broken}
    expect: {verdict: deny, rule: refunds-over-100-are-denied}
  - name: a small refund goes through
    action: shop.refund
    params: {order_id: 1001, amount: 20.0, reason: broken}
    expect: {verdict: allow, rule: small-refunds-are-fine}
"""
)

REASON_AS_A_NUMBER = """
  - id: reason-as-a-number
    when: action.name == "shop.refund" && action.params.reason > 3
    verdict: deny
"""

FAILING = (
    RULES.replace("verdict: deny\n", "verdict: deny" + REASON_AS_A_NUMBER, 1)
    + """
tests:
  - name: a $150 refund needs a manager
    action: shop.refund
    params: {order_id: 1001, amount: 150.0, reason: broken}
    expect: {verdict: require_approval, approvers: [manager]}
  - name: a typo in a parameter
    action: shop.refund
    params: {order_id: 1001, amuont: 20.0, reason: broken}
    expect: {verdict: allow}
"""
)


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIOS, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "passing.yaml").write_text(PASSING)
    (tmp_path / "failing.yaml").write_text(FAILING)
    return tmp_path


def test_a_policy_whose_tests_pass_exits_0(folder: Path) -> None:
    result = run("policy", "check", str(folder / "passing.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[1:] == [
        "✓ a $150 refund is denied — deny by refunds-over-100-are-denied",
        "✓ a small refund goes through — allow by small-refunds-are-fine",
        "2 tests: 2 passed, 0 failed; 0 rule problems",
    ]


def test_a_failing_test_or_rule_exits_1_with_a_readable_report(folder: Path) -> None:
    result = run("policy", "check", str(folder / "failing.yaml"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    report = result.stdout
    assert (
        "✗ a $150 refund needs a manager (shop.refund)\n"
        "    expected verdict require_approval, got deny\n"
        "    expected approvers [manager], got []\n"
    ) in report
    assert (
        "✗ a typo in a parameter (shop.refund)\n"
        "    its params are not a valid shop.refund: amount: Field required; "
        "amuont: Extra inputs are not permitted (did you mean amount?)\n"
    ) in report
    assert (
        "✗ rule reason-as-a-number: its `when` could not be evaluated for a typical shop.refund (No such "
        "overload: the operation is not defined for the given operand types), so such an action would be denied"
    ) in report
    assert "rules no test reaches: reason-as-a-number, small-refunds-are-fine" in report
    assert report.rstrip().endswith("2 tests: 0 passed, 2 failed; 1 rule problems")


def test_json_is_one_document(folder: Path) -> None:
    result = run("policy", "check", str(folder / "failing.yaml"), "--json")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert (document["ok"], document["passed"], document["failed"]) == (False, 0, 2)
    assert (
        document["policy"]["source"] == str(folder / "failing.yaml") and len(document["policy"]["hash"]) == 64
    )
    first = document["tests"][0]
    assert first["expected"] == {"verdict": "require_approval", "approvers": ["manager"]}
    assert first["got"]["verdict"] == "deny" and first["got"]["rule"] == "refunds-over-100-are-denied"
    assert document["tests"][1]["got"] is None
    assert [(p["rule"], p["actions"]) for p in document["problems"]] == [
        ("reason-as-a-number", ["shop.refund"])
    ]
    passing = run("policy", "check", str(folder / "passing.yaml"), "--json")
    assert passing.returncode == 0 and json.loads(passing.stdout)["ok"] is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (RULES.replace('action.name == "shop.refund" && run', "action.name == && run"), "is not valid CEL"),
        (
            PASSING.replace("expect: {verdict: deny,", "expect: {verdikt: deny,"),
            "test 'a $150 refund is denied' (expect.verdikt): Extra",
        ),
        (PASSING.replace("order_id: 1001, amount: 150.0", "order_id: [1001"), "not valid YAML"),
        (None, "there is no policy file"),
    ],
)
def test_a_file_that_does_not_load_exits_2_with_one_line(
    folder: Path, text: str | None, message: str
) -> None:
    path = folder / "candidate.yaml"
    if text is not None:
        path.write_text(text)
    result = run("policy", "check", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr
    as_json = run("policy", "check", str(path), "--json")
    assert as_json.returncode == 2 and message in json.loads(as_json.stdout)["error"]


def test_against_history_counts_the_recorded_decisions_that_would_change(folder: Path) -> None:
    """Two refunds recorded by `aios chat` under the packaged policy: $50 allowed, $150 for a manager. The
    candidate denies the second and allows the first as before."""
    env = aios_env(f"sqlite+aiosqlite:///{folder / 'aios.db'}", "http://127.0.0.1:9/api/")
    script = "refund order 1004, $50, scratched\nrefund order 1001, $150, arrived broken\nquit\n"
    chat = run("chat", "--as", "U0ALICE", env=env, stdin=script)
    assert chat.returncode == 0, chat.stderr
    result = run("policy", "check", str(folder / "passing.yaml"), "--against-history", "30d", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "Against the last 30d of decisions\n"
        "2 decisions in 2 runs replayed: 1 would change (1 stricter, 0 looser, 0 by another rule or approvers), "
        "in 1 run.\n"
        "1 × shop.refund totalling $150.00 would have been denied (stricter)\n"
    ) in result.stdout
    as_json = run(
        "policy", "check", str(folder / "passing.yaml"), "--against-history", "30d", "--json", env=env
    )
    history = json.loads(as_json.stdout)["history"]
    assert (history["window"], history["actions"], history["changed"]) == ("30d", 2, 1)
    bad_window = run("policy", "check", str(folder / "passing.yaml"), "--against-history", "a month", env=env)
    assert bad_window.returncode == 2 and "'a month' is not a duration" in bad_window.stderr


def test_publishing_windows_are_reported_and_a_wrong_one_is_refused(folder: Path) -> None:
    windows = PASSING.replace(
        "tests:", 'publishing:\n  windows: ["tue 09:00-12:00", "mon-fri 14:00-17:30"]\ntests:'
    )
    (folder / "windows.yaml").write_text(windows)
    result = run("policy", "check", str(folder / "windows.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        result.stdout.splitlines()[1]
        == "publishing windows (in AIOS_TIMEZONE): tue 09:00-12:00, mon-fri 14:00-17:30"
    )
    document = json.loads(run("policy", "check", str(folder / "windows.yaml"), "--json").stdout)
    assert document["publishing_windows"] == ["tue 09:00-12:00", "mon-fri 14:00-17:30"]

    (folder / "wrong.yaml").write_text(windows.replace("tue 09:00-12:00", "tuesday mornings"))
    wrong = run("policy", "check", str(folder / "wrong.yaml"))
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert (
        "publishing.windows: 'tuesday mornings' is not a publishing window; write days and hours"
        in wrong.stderr
    )
