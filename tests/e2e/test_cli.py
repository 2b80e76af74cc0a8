"""The real `meld-console` command line, run as a subprocess against real files."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from meld_console.cli import main
from meld_core.ledger import Ledger
from meld_core.signing import SECRET_PATTERN, MeldAuth

CLI = [sys.executable, "-m", "meld_console.cli"]
DEADLINE_S = 30.0


@dataclass(frozen=True)
class Home:
    """A MELD home in tmp_path: its config file, data directory and port."""

    root: Path
    config: Path
    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MELD")}
        return {**env, "MELD_HOME": str(self.root), "PYTHONUNBUFFERED": "1", **extra}

    def cli(
        self, *args: str, expect: int | None = 0, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run `meld-console ARGS --config FILE` and check its exit status."""
        done = subprocess.run(
            [*CLI, *args, "--config", str(self.config)],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            stdin=subprocess.DEVNULL,
        )
        if expect is not None:
            assert done.returncode == expect, done.stderr
        return done

    def json(self, *args: str) -> Any:
        """The `--json` output of a command, run in-process to save a start-up."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
            main([*args, "--json", "--config", str(self.config)])
        assert exited.value.code == 0
        return json.loads(out.getvalue())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(root: Path, port: int) -> Path:
    config = root / "config.toml"
    config.write_text(
        f"""
[[remotes]]
id = "loop"
url = "http://127.0.0.1:{port}"
peer_id = "agent-1"
secret_env = "MELD_LOOP_SECRET"

[node]
id = "meld-t"
listen = "127.0.0.1:{port}"
data_dir = "{root / "data"}"

[[backends]]
name = "sim"
kind = "sim"
models = ["sim-small"]
max_concurrency = 4
ttft_s = 0.01
tpot_s = 0.001
parallel = 4
"""
    )
    return config


@pytest.fixture
def home(tmp_path: Path) -> Home:
    port = free_port()
    return Home(tmp_path, write_config(tmp_path, port), tmp_path / "data", port)


@pytest.fixture
def agent(home: Home) -> str:
    """A registered peer with 100 credit units; returns its secret."""
    added = home.json("peers", "add", "agent-1", "--credits", "100")
    return str(added["secret"])


def ledger_state(home: Home) -> tuple[Any, ...]:
    """Every peer and every transfer, read in-process (faster than the CLI)."""

    async def read() -> tuple[Any, ...]:
        ledger = await Ledger.open(home.data / "ledger.db")
        try:
            peers = await ledger.peers()
            transfers = [await ledger.transfers(p.id, limit=1000) for p in peers]
        finally:
            await ledger.close()
        return peers, transfers

    return asyncio.run(read())


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("meld-console: error: ")
    assert "Traceback" not in done.stderr
    return lines[0]


def test_peers_add_prints_the_secret_once_and_list_never_shows_it(home: Home) -> None:
    added = home.cli("peers", "add", "agent-1", "--credits", "25")
    secrets = SECRET_PATTERN.findall(added.stdout)

    listed = home.cli("peers", "list")
    listed_json = home.cli("peers", "list", "--json")

    assert len(secrets) == 1
    assert "shown only this once" in added.stdout
    assert "agent-1" in listed.stdout and "25" in listed.stdout
    assert "msk_" not in listed.stdout + listed_json.stdout
    assert [p["id"] for p in json.loads(listed_json.stdout)] == ["agent-1"]


def test_peers_add_json_is_exactly_id_secret_and_balance(home: Home) -> None:
    added = json.loads(
        home.cli("peers", "add", "agent-1", "--credits", "40", "--json").stdout
    )

    assert set(added) == {"id", "secret", "balance"}
    assert added["id"] == "agent-1" and added["balance"] == 40
    assert SECRET_PATTERN.fullmatch(added["secret"])


def test_grant_and_deduct_move_the_balance_by_exactly_n_with_the_reason(
    home: Home, agent: str
) -> None:
    home.cli("credits", "grant", "agent-1", "70", "--reason", "monthly top-up")
    after_grant = home.json("credits", "show", "agent-1")
    home.cli("credits", "deduct", "agent-1", "30", "--reason", "refund reversed")
    after_deduct = home.json("credits", "show", "agent-1")

    assert after_grant["balance"] == 170
    assert after_deduct["balance"] == 140 and after_deduct["available"] == 140
    latest = after_deduct["recent"][0]
    assert (latest["kind"], latest["amount"], latest["reason"]) == (
        "deduct",
        30,
        "refund reversed",
    )
    assert latest["actor"].startswith("cli:")
    assert after_grant["recent"][0]["reason"] == "monthly top-up"
    statement = home.cli("credits", "show", "agent-1").stdout
    assert "balance 140, held 0, available 140" in statement
    assert "+70" in statement and "-30" in statement


def test_a_deduct_over_the_available_amount_is_refused_and_changes_nothing(
    home: Home, agent: str
) -> None:
    before = home.json("credits", "show", "agent-1")

    refused = home.cli(
        "credits", "deduct", "agent-1", "101", "--reason", "too much", expect=1
    )

    assert "100" in one_error_line(refused)
    assert home.json("credits", "show", "agent-1") == before


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["credits", "grant", "agent-1", "ten", "--reason", "x"], 2),
        (["credits", "grant", "nobody", "5", "--reason", "x"], 1),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_changes_nothing(
    home: Home, agent: str, args: list[str], status: int
) -> None:
    before = ledger_state(home)

    done = home.cli(*args, expect=status)

    one_error_line(done)
    assert done.stdout == ""
    assert ledger_state(home) == before


# The same checks in-process, where a run costs milliseconds rather than a whole
# interpreter start, for the long tail of bad inputs.
@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["credits", "grant", "agent-1", "0", "--reason", "x"], 2),
        (["credits", "grant", "agent-1", "1.5", "--reason", "x"], 2),
        (["credits", "deduct", "agent-1", "-5", "--reason", "x"], 2),
        (["credits", "grant", "agent-1", "5"], 2),
        (["credits", "grant", "agent-1", "5", "--reason", "  "], 2),
        (["credits", "grant", "Agent_1", "5", "--reason", "x"], 2),
        (["credits", "deduct", "nobody", "5", "--reason", "x"], 1),
        (["peers", "add", "agent-1"], 1),
        (["peers", "add", "-bad"], 2),
        (["peers", "add", "agent-2", "--credits", "-1"], 2),
        (["peers", "add", "agent-2", "--credits", "many"], 2),
        (["peers", "add", "agent-2", "--credits", str(2**63)], 2),
        (["credits", "grant", "agent-1", str(2**63 - 1), "--reason", "x"], 2),
        (["credits", "grant", "agent-1", str(10**15 + 1), "--reason", "x"], 2),
        (["credits", "deduct", "agent-1", "9" * 5000, "--reason", "x"], 2),
        (["credits", "show", "agent-1", "--limit", str(2**64)], 2),
        (["peers", "disable", "nobody"], 1),
        (["peers", "enable", "nobody"], 1),
        (["peers", "rotate", "nobody"], 1),
        (["peers", "remove", "agent-1"], 2),
        (["credits", "show", "nobody"], 1),
        (["stress", "--target", "nowhere", "--model", "m"], 1),
        (["stress", "--target", "self", "--levels", "1,x"], 2),
        (["stress", "--target", "self", "--levels", "0"], 2),
        (["stress", "--target", "http://127.0.0.1:9", "--model", "m"], 1),
    ],
)
def test_each_bad_input_is_one_line_and_changes_nothing(
    home: Home,
    agent: str,
    args: list[str],
    status: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("MELD_PEER", "MELD_SECRET"):
        monkeypatch.delenv(name, raising=False)
    before = ledger_state(home)

    with pytest.raises(SystemExit) as exited:
        main([*args, "--config", str(home.config)])

    out, err = capsys.readouterr()
    assert exited.value.code == status
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("meld-console: error: ")
    assert ledger_state(home) == before


def test_a_bad_config_file_is_one_line_naming_the_file_and_key(home: Home) -> None:
    home.config.write_text(home.config.read_text() + "\n[limits]\nburst = 3\n")

    done = home.cli("peers", "list", expect=1)

    line = one_error_line(done)
    assert str(home.config) in line and "limits.burst" in line
    assert not (home.data / "ledger.db").exists()


def test_a_grant_of_10_to_the_15_is_the_most_one_argument_may_name(
    home: Home, agent: str
) -> None:
    home.cli("credits", "grant", "agent-1", "1_000_000_000_000_000", "--reason", "x")
    assert home.json("credits", "show", "agent-1")["balance"] == 10**15 + 100


@pytest.mark.parametrize("command", [["peers", "list"], ["credits", "show", "a"]])
def test_reading_where_no_ledger_exists_says_so_and_creates_none(
    home: Home, command: list[str]
) -> None:
    done = home.cli(*command, expect=1)

    line = one_error_line(done)
    assert f"no ledger exists at {home.data / 'ledger.db'}" in line
    assert not (home.data / "ledger.db").exists()


def test_a_corrupt_ledger_is_one_line_naming_the_file(home: Home) -> None:
    home.data.mkdir()
    (home.data / "ledger.db").write_bytes(b"not a database at all" * 100)

    for command in (["peers", "list"], ["peers", "add", "agent-9"]):
        done = home.cli(*command, expect=1)
        assert str(home.data / "ledger.db") in one_error_line(done)


def test_a_missing_config_file_is_named(home: Home, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"

    done = subprocess.run(
        [*CLI, "--config", str(missing), "peers", "list"],
        env=home.env(),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )

    assert done.returncode == 1
    assert str(missing) in one_error_line(done)


def test_rotate_prints_a_new_secret_once_and_says_how_long_the_old_one_lives(
    home: Home, agent: str
) -> None:
    rotated = home.cli("peers", "rotate", "agent-1")
    as_json = home.json("peers", "rotate", "agent-1")

    secrets = SECRET_PATTERN.findall(rotated.stdout)
    assert len(secrets) == 1 and secrets[0] != agent
    assert "60 minutes" in rotated.stdout
    assert set(as_json) == {"id", "secret", "old_secret_expires_at"}
    assert as_json["old_secret_expires_at"] > time.time() + 3000


def test_disable_and_enable_show_in_the_listing(home: Home, agent: str) -> None:
    home.cli("peers", "disable", "agent-1")
    disabled = home.json("peers", "list")
    home.cli("peers", "enable", "agent-1")
    enabled = home.json("peers", "list")

    assert [p["enabled"] for p in disabled] == [False]
    assert [p["enabled"] for p in enabled] == [True]


def test_the_database_is_private_to_its_owner(home: Home, agent: str) -> None:
    for path in home.data.iterdir():
        if path.name.startswith("ledger.db"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(home.data.stat().st_mode) & 0o077 == 0


def test_the_real_entry_point_answers_help(home: Home) -> None:
    done = home.cli("--help")

    assert "usage: meld-console" in done.stdout
    for command in ("serve", "peers", "credits", "stress"):
        assert command in done.stdout


@pytest.mark.parametrize(
    "command",
    [
        [], ["serve"], ["peers", "add"], ["peers", "list"], ["peers", "rotate"],
        ["credits", "grant"], ["credits", "deduct"], ["credits", "show"], ["stress"],
    ],
)  # fmt: skip
def test_every_command_has_help(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: meld-console")


# The node itself: `serve` as a service manager would run it.


@pytest.fixture
def served(home: Home) -> Iterator[subprocess.Popen[str]]:
    """`meld-console serve` running until the test ends; stopped with SIGTERM."""
    pytest.importorskip("meld_core.node", exc_type=ImportError)
    process = subprocess.Popen(
        [*CLI, "serve", "--config", str(home.config)],
        env=home.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_for_health(home.url, process)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=DEADLINE_S)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        process.stderr.close()


def wait_for_health(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "serve exited before it answered"
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling interval, bounded by the deadline
    raise AssertionError(f"{url} did not answer within {DEADLINE_S}s")


def stop(
    process: subprocess.Popen[str], signum: int = signal.SIGTERM
) -> tuple[int, str, str]:
    process.send_signal(signum)
    out, err = process.communicate(timeout=DEADLINE_S)
    return process.returncode, out, err


def test_serve_answers_a_signed_request_and_exits_0_on_sigterm(
    home: Home, agent: str, served: subprocess.Popen[str]
) -> None:
    with httpx.Client(base_url=home.url, auth=MeldAuth("agent-1", agent)) as client:
        answer = client.post(
            "/v1/chat/completions",
            json={
                "model": "sim-small",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "hello"}],
            },
            timeout=DEADLINE_S,
        )

    status, out, err = stop(served)

    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]
    assert status == 0, err
    assert out.splitlines()[0] == f"meld node meld-t listening on {home.url}"
    assert "Traceback" not in err
    assert agent not in err + (home.data / "node.log").read_text()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP])
def test_serve_stops_cleanly_on_sigint_and_sighup(
    served: subprocess.Popen[str], signum: int
) -> None:
    status, _, err = stop(served, signum)

    assert status == 0, err
    assert "stopping" in err and "Traceback" not in err


def test_a_grant_made_while_serving_is_visible_at_once(
    home: Home, agent: str, served: subprocess.Popen[str]
) -> None:
    with httpx.Client(base_url=home.url, auth=MeldAuth("agent-1", agent)) as client:
        before = client.get("/v1/credits").json()
        home.cli("credits", "grant", "agent-1", "250", "--reason", "while serving")
        after = client.get("/v1/credits").json()

    assert after["balance"] - before["balance"] == 250
    assert after["recent"][0]["reason"] == "while serving"
    assert stop(served)[0] == 0


def test_rotate_and_disable_take_effect_on_a_running_node(
    home: Home, agent: str, served: subprocess.Popen[str]
) -> None:
    def credits_status(secret: str) -> int:
        auth = MeldAuth("agent-1", secret)
        with httpx.Client(base_url=home.url, auth=auth) as client:
            return client.get("/v1/credits").status_code

    new_secret = home.json("peers", "rotate", "agent-1")["secret"]
    rotated = [credits_status(agent), credits_status(new_secret)]
    home.cli("peers", "disable", "agent-1")
    disabled = [credits_status(agent), credits_status(new_secret)]

    assert rotated == [200, 200]  # the old secret lives on through its grace
    assert disabled == [401, 401]
    assert stop(served)[0] == 0


def test_limits_set_from_the_command_line_bind_a_running_node_at_once(
    home: Home, agent: str, served: subprocess.Popen[str]
) -> None:
    hi = [{"role": "user", "content": "hi"}]
    body = {"model": "sim-small", "max_tokens": 1, "messages": hi}

    def chat() -> int:
        with httpx.Client(base_url=home.url, auth=MeldAuth("agent-1", agent)) as c:
            return c.post("/v1/chat/completions", json=body).status_code

    before = [chat(), chat()]
    done = home.cli("peers", "limits", "agent-1", "--requests-per-minute", "3")
    after = [chat(), chat()]
    listed = {p["id"]: p for p in home.json("peers", "list")}
    reset = home.cli("peers", "limits", "agent-1", "--requests-per-minute", "default")

    assert before == [200, 200]
    assert (
        done.stdout
        == "peer agent-1: 3 requests a minute, 16 (the node's default) in flight.\n"
    )
    assert after == [200, 429]  # the third and fourth in the minute
    assert listed["agent-1"]["requests_per_minute"] == 3
    assert listed["agent-1"]["max_in_flight"] is None
    assert "120 (the node's default) requests a minute" in reset.stdout
    assert chat() == 200
    assert stop(served)[0] == 0


def test_limits_without_a_flag_or_with_zero_are_refused(home: Home, agent: str) -> None:
    bare = home.cli("peers", "limits", "agent-1", expect=2)
    zero = home.cli("peers", "limits", "agent-1", "--max-in-flight", "0", expect=2)

    assert bare.stderr.count("\n") == 1 and "--max-in-flight" in bare.stderr
    assert zero.stderr.count("\n") == 1 and "positive whole number" in zero.stderr
    assert home.json("peers", "list")[0]["max_in_flight"] is None


def test_serve_keeps_its_secret_and_log_files_private(
    home: Home, served: subprocess.Popen[str]
) -> None:
    assert stop(served)[0] == 0

    for name in ("console.secret", "node.log", "ledger.db"):
        path = home.data / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_stress_against_self_prints_a_row_per_level_and_writes_reports(
    home: Home, served: subprocess.Popen[str], tmp_path: Path
) -> None:
    report, data = tmp_path / "out" / "stress.md", tmp_path / "out" / "stress.json"

    done = home.cli(
        "stress", "--target", "self", "--levels", "1,3", "--requests-per-level", "3",
        "--report", str(report), "--json", str(data),
    )  # fmt: skip

    rows = [line.split() for line in done.stdout.splitlines() if line[:5].strip()]
    levels = [row for row in rows if row[0].isdigit()]
    assert [(r[0], r[1], r[2], r[3]) for r in levels] == [
        ("1", "3", "3", "0"),
        ("3", "3", "3", "0"),
    ]
    body = json.loads(data.read_text())
    assert [level["ok"] for level in body["levels"]] == [3, 3]
    assert "| 3 | 3 | 3 | 0 |" in report.read_text()
    assert stop(served)[0] == 0


@pytest.mark.parametrize("target", ["url", "remote"])
def test_stress_signs_as_the_peer_named_for_a_url_or_a_remote(
    home: Home, agent: str, served: subprocess.Popen[str], target: str
) -> None:
    if target == "url":
        args, env = [home.url], {"MELD_PEER": "agent-1", "MELD_SECRET": agent}
    else:
        args, env = ["loop"], {"MELD_LOOP_SECRET": agent}

    done = home.cli(
        "stress", "--target", *args, "--model", "sim-small", "--levels", "2", **env
    )

    assert "as agent-1, model sim-small" in done.stdout
    assert home.json("peers", "list")[0]["requests_1h"] == 2
    assert agent not in done.stdout + done.stderr
    assert stop(served)[0] == 0


def test_the_command_line_never_imports_the_screen(home: Home, agent: str) -> None:
    code = (
        "import sys\n"
        "from meld_console.cli import main\n"
        "try:\n"
        f"    main(['peers', 'list', '--config', {str(home.config)!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        "import meld_console.commands.serve, meld_console.commands.stress\n"
        "roots = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(roots & {'textual', 'rich'}))\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", code], env=home.env(), capture_output=True, text=True,
        timeout=DEADLINE_S, check=True,
    )  # fmt: skip

    assert done.stdout.splitlines()[-1] == "[]"


def test_no_command_runs_the_console_with_the_config_and_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import meld_console.app

    calls: list[tuple[Any, bool]] = []

    def fake_console(config: Any, *, read_only: bool) -> int:
        calls.append((config, read_only))
        return 0

    monkeypatch.setattr(meld_console.app, "run_console", fake_console)
    monkeypatch.setattr("meld_core.defaults.probe_ollama", lambda *a, **k: [])
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    path = tmp_path / "fresh" / "config.toml"

    with pytest.raises(SystemExit) as exited:
        main(["--config", str(path), "--read-only"])

    assert exited.value.code == 0
    [(config, read_only)] = calls
    assert read_only is True
    assert config.path == path and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
