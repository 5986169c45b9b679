"""The documentation is executed: every shell block of README.md and docs/*.md that a reader is told to
run is run here, page by page, in the page's order, on a fresh chain, and its output is checked.

What runs
    Fenced blocks tagged ``sh``, ``bash`` or ``console``. A block is skipped only when the line
    directly above its opening fence is ``<!-- illustrative -->`` (``make test`` itself, testnet
    commands, output samples). New pages and new blocks are picked up without touching this file.

How
    Each page gets a free port that replaces ``8545`` in its blocks (so a reader's own node on 8545
    is never touched), a temporary deployment file (``$BULWARK_DEPLOYMENT``), keystore folder and
    ``$HOME``, and ``.venv/bin`` first on ``PATH``. Blocks run with bash from the repository root;
    the environment a block exports (``export BULWARK_RPC=...``, ``source .venv/bin/activate``) is
    carried to the next block of the page. ``sh``/``bash`` blocks run as one script with
    ``set -eo pipefail``: a failing command fails the test with its output.

    ``console`` blocks are commands (``$ ...``) each followed by the output the page shows. Every
    shown line must appear in the command's output (stdout and stderr), in order, after
    normalising what differs from run to run: dates, durations, process ids, the repository path
    (shown as ``/path/to/bulwark``) and runs of spaces. A line ``...`` stands for lines left out,
    and ``...`` within a line for any text (a last digit that funding accrual moves, say).
    A command whose shown output has a ``bulwark: error:`` line must fail; the others must succeed.

Servers
    A command that serves in the foreground is started in the background instead, and stopped
    (SIGINT, then SIGKILL) when the page ends: ``bulwark node`` and ``make node`` (on the page's
    port; the page goes on once the node answers), ``bulwark web`` and ``bulwark keeper`` without
    ``--once`` (the page goes on once they print their first line). A page that starts no node of its own gets one with Bulwark deployed and seeded
    (``bulwark node --deploy``), so that pages documenting one command can show it on a live chain.
    The page's node has its clock pinned once it answers (each block one second after the last), so
    what accrues between two commands does not depend on the machine's load.
    Each command has a time limit (``COMMAND_TIMEOUT``); a long run belongs in an illustrative block.

Writing a page
    ``BULWARK_DOCS_PRINT=1 .venv/bin/python -m pytest -s tests/test_docs.py -k cli.md`` prints what
    every console command printed, to copy into the page, and checks nothing of it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import toolvenv

from bulwark.core import paths

ROOT = paths.project_root()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_TAGS = {"sh", "bash", "console"}
ILLUSTRATIVE = "<!-- illustrative -->"
COMMAND_TIMEOUT = 600
NODE_TIMEOUT = 180
NODE = re.compile(r"^\s*(\S*/)?(bulwark\s+node\b|make\s+node\b)")
# Other commands that serve until stopped: the page goes on once they print their first line.
SERVER = re.compile(
    r"^\s*(\S*/)?(bulwark\s+node\b|make\s+node\b|bulwark\s+web\b|bulwark\s+keeper\b(?!.*--once))"
)
FENCE = re.compile(r"^(\s*)```\s*([\w-]*)\s*$")


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    tag: str
    text: str
    illustrative: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Every fenced block of the page, in order."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, tag = match[1], match[2].lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        illustrative = i > 0 and lines[i - 1].strip() == ILLUSTRATIVE
        found.append(Block(page, i + 1, tag, "\n".join(body), illustrative))
        i = j + 1
    return found


def runnable(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.tag in RUN_TAGS and not b.illustrative]


# ---------------------------------------------------------------------------- output matching

_VOLATILE = [
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d( UTC|Z)?"), "<time>"),
    (re.compile(r"\b\d+d \d+h\b|\b\d+h \d+m\b|\b\d+m \d+s\b|\b\d+s\b"), "<duration>"),
    (re.compile(r"\bpid \d+"), "pid <n>"),
    (re.compile(r"\s+"), " "),
]


def normalise(line: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        line = line.replace(old, new)
    for pattern, placeholder in _VOLATILE:
        line = pattern.sub(placeholder, line)
    return line.strip()


def missing_lines(shown: list[str], output: str, replacements: dict[str, str]) -> list[str]:
    """The shown lines not found in the output in order ("..." lines skip)."""
    got = [normalise(line, replacements) for line in output.splitlines()]
    at = 0
    missing = []
    for line in shown:
        want = normalise(line, replacements)
        if want in ("", "..."):
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in want.split("...")))
        found = next((i for i in range(at, len(got)) if pattern.fullmatch(got[i])), None)
        if found is None:
            missing.append(line)
        else:
            at = found + 1
    return missing


# ---------------------------------------------------------------------------- a page's session


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pin_clock(port: int) -> None:
    """Every block of the page's node lands one second after the last, however loaded the machine:
    what accrues between two commands (funding, say) does not depend on how long they took."""
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "anvil_setBlockTimestampInterval", "params": [1]}
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}", body.encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        reply = json.loads(response.read())
    assert "error" not in reply, reply


@dataclass
class Session:
    """One page's run: its port, environment file, servers and temporary paths."""

    page: Path
    tmp: Path
    port: int = field(default_factory=_free_port)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.env_file = self.tmp / "env.sh"
        self.deployment = self.tmp / "deployment.json"
        home = self.tmp / "home"
        home.mkdir()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("BULWARK_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")
        }
        env.update(
            HOME=str(home),
            PATH=f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
            BULWARK_DEPLOYMENT=str(self.deployment),
            BULWARK_KEYSTORE_DIR=str(self.tmp / "keys"),
            PYTHONUNBUFFERED="1",
            NO_COLOR="1",
        )
        self.env_file.write_text(
            "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))
        )
        self.replacements = {
            str(self.deployment): "/path/to/bulwark/deployments/31337.json",
            str(ROOT): "/path/to/bulwark",
        }

    def adapt(self, text: str) -> str:
        return text.replace("8545", str(self.port))

    def run(self, script: str, where: str) -> subprocess.CompletedProcess[str]:
        wrapped = (
            f"source {shlex.quote(str(self.env_file))}\nset -eo pipefail\n{script}\n"
            f"export -p > {shlex.quote(str(self.env_file))}\n"
        )
        try:
            return subprocess.run(
                ["bash", "-c", wrapped],
                cwd=ROOT,
                env={"PATH": os.environ.get("PATH", ""), "HOME": str(self.tmp / "home")},
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"{where}: no answer after {COMMAND_TIMEOUT} s:\n{script}\n{exc.stdout}")

    def start_server(self, command: str, where: str) -> str:
        """Starts a foreground server line in the background; returns what it printed first."""
        if re.search(r"\bbulwark\s+node\b", command) and "--port" not in command:
            command += f" --port {self.port}"
        elif re.search(r"\bmake\s+node\b", command) and "PORT=" not in command:
            command += f" PORT={self.port}"
        log = self.tmp / f"server-{len(self.servers)}.log"
        out = log.open("w")
        proc = subprocess.Popen(
            ["bash", "-c", f"source {shlex.quote(str(self.env_file))}\nexec {command}"],
            cwd=ROOT,
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(self.tmp / "home")},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.servers.append(proc)
        deadline = time.monotonic() + NODE_TIMEOUT
        node = NODE.match(command)
        ready = "Ctrl-C stops the node" if "bulwark" in command else "Listening on"
        while time.monotonic() < deadline:
            text = log.read_text()
            if node and ready in text and _answers(self.port):
                _pin_clock(self.port)
                return text
            if not node and text.strip():
                time.sleep(1)  # what else it prints at once
                return log.read_text()
            if proc.poll() is not None:
                pytest.fail(f"{where}: `{command}` exited with {proc.returncode}:\n{text}")
            time.sleep(0.2)
        pytest.fail(
            f"{where}: `{command}` did not serve within {NODE_TIMEOUT} s:\n{log.read_text()}"
        )

    def close(self) -> None:
        for proc in self.servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


def starts_a_node(page_blocks: list[Block]) -> bool:
    return any(
        NODE.match(_command(line))
        for b in page_blocks
        for line in b.text.splitlines()
        if b.tag != "console" or line.startswith("$ ")
    )


def _command(line: str) -> str:
    return line[2:] if line.startswith("$ ") else line


# ---------------------------------------------------------------------------- running blocks


def run_shell_block(session: Session, block: Block) -> None:
    text = session.adapt(block.text)
    segment: list[str] = []

    def flush() -> None:
        script = "\n".join(segment).strip()
        segment.clear()
        if not script:
            return
        done = session.run(script, block.where)
        assert done.returncode == 0, (
            f"{block.where}: exit {done.returncode}\n$ {script}\n{done.stdout}{done.stderr}"
        )

    for line in text.splitlines():
        if SERVER.match(line):
            flush()
            session.start_server(line.split("#")[0].strip(), block.where)
        else:
            segment.append(line)
    flush()


def run_console_block(session: Session, block: Block) -> None:
    text = session.adapt(block.text)
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
        elif line.strip():
            pytest.fail(f"{block.where}: a console block starts with a command line `$ ...`")
    for command, shown in steps:
        if SERVER.match(command):
            printed = session.start_server(command.split("#")[0].strip(), block.where)
            missing = missing_lines(shown, printed, session.replacements)
            assert not missing, f"{block.where}: `{command}` did not print {missing}\n{printed}"
            continue
        done = session.run(command, block.where)
        output = done.stdout + done.stderr
        if os.environ.get("BULWARK_DOCS_PRINT"):  # writing a page: print, check nothing
            print(f"\n$ {command}  [exit {done.returncode}]\n{output}", end="")
            continue
        should_fail = any(line.startswith("bulwark: error:") for line in shown)
        if should_fail:
            assert done.returncode != 0, f"{block.where}: `{command}` should fail:\n{output}"
        else:
            assert done.returncode == 0, f"{block.where}: `{command}` failed:\n{output}"
        missing = missing_lines(shown, output, session.replacements)
        assert not missing, (
            f"{block.where}: `{command}` did not print:\n"
            + "\n".join(missing)
            + f"\n--- it printed:\n{output}"
        )


@pytest.fixture
def session(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Session]:
    why = toolvenv.brownie_cannot_run_scripts_here()
    if why and request.param.name == "brownie.md":
        pytest.skip(why)
    s = Session(request.param, tmp_path)
    yield s
    s.close()


PAGES_WITH_BLOCKS = [p for p in PAGES if runnable(p)]


@pytest.mark.parametrize(
    "session", PAGES_WITH_BLOCKS, ids=[str(p.relative_to(ROOT)) for p in PAGES_WITH_BLOCKS],
    indirect=True,
)  # fmt: skip
def test_page_runs_as_written(session: Session) -> None:
    page_blocks = runnable(session.page)
    if not starts_a_node(page_blocks):
        session.start_server("bulwark node --deploy --port " + str(session.port), "setup")
        session.run(f"export BULWARK_RPC=http://127.0.0.1:{session.port}", "setup")
    for block in page_blocks:
        if block.tag == "console":
            run_console_block(session, block)
        else:
            run_shell_block(session, block)


# ---------------------------------------------------------------------------- the harness itself

SHELLISH = re.compile(r"^\s*(\$ )?(bulwark|make|\.venv/|brownie|export|python3?|pip|~/)")


def test_untagged_blocks_are_not_shell_commands() -> None:
    """A shell command in a block without a tag would escape the run: tag it, or mark it
    illustrative."""
    offenders = [
        b.where
        for p in PAGES
        for b in blocks(p)
        if b.tag == ""
        and not b.illustrative
        and any(SHELLISH.match(x) for x in b.text.splitlines())
    ]
    assert not offenders, f"tag these blocks ```sh or ```console: {offenders}"


def test_matching_normalises_what_changes_between_runs() -> None:
    shown = [
        "Anvil is listening on http://127.0.0.1:8545 (chain id 31337, pid 4242)",
        "...",
        "  shares locked until 2026-11-29 00:51:30 UTC (in 4d 0h)",
    ]
    output = (
        "Anvil is listening on http://127.0.0.1:8545 (chain id 31337, pid 77)\n"
        "something else\n"
        "  shares   locked until 2027-01-02 10:00:00 UTC (in 3d 23h)\n"
    )
    assert missing_lines(shown, output, {}) == []
    assert missing_lines(["shares locked until"], output, {}) == ["shares locked until"]
    assert missing_lines(["b", "a"], "a\nb\n", {}) == ["a"]  # in order
    assert missing_lines(["cap=1,502,176.2...; next"], "cap=1,502,176.200001; next", {}) == []
    assert missing_lines(["cap=1,502,176.2..."], "cap=1,502,177.2", {}) != []


def test_blocks_are_found_with_their_tags_and_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n\n```sh\nbulwark status\n```\n\n<!-- illustrative -->\n```sh\nmake test\n```\n\n"
        "1. step\n\n   ```console\n   $ bulwark status\n   ok\n   ```\n"
    )
    found = blocks(page)
    assert [(b.tag, b.illustrative, b.text) for b in found] == [
        ("sh", False, "bulwark status"),
        ("sh", True, "make test"),
        ("console", False, "$ bulwark status\nok"),
    ]


def test_a_server_that_is_not_a_node_runs_until_the_page_ends(tmp_path: Path) -> None:
    s = Session(tmp_path / "page.md", tmp_path)
    try:
        printed = s.start_server(
            "python3 -c \"print('serving', flush=True); import time; time.sleep(600)\"", "here"
        )
        assert printed.startswith("serving")
        (proc,) = s.servers
        assert proc.poll() is None
    finally:
        s.close()
    assert proc.poll() is not None
