"""Bad input, fuzzed with Hypothesis: `bulwark` arguments (amounts, markets, addresses, signers,
flags in odd places) and the deployment file (missing keys, wrong types, bad addresses, truncated,
garbage), in-process against the session Anvil and deployment.

Whatever comes in, the command either succeeds (exit 0) or fails with exactly one line on stderr
that starts with ``bulwark``, is not the catch-all "unexpected error", and a non-zero exit code; a
traceback never appears. The default run takes a fixed set of examples (derandomised, so it is the
same run every time); ``BULWARK_DEEP=1`` draws many more, at random.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import clear_cli_env
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bulwark import cli
from bulwark.chain.contracts import Bulwark, dev_account

DEEP = os.environ.get("BULWARK_DEEP") == "1"


def fuzz(default: int, deep: int) -> Any:
    return settings(
        max_examples=deep if DEEP else default,
        deadline=None,
        derandomize=not DEEP,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# ---------------------------------------------------------------------------- running the CLI


@dataclass
class Outcome:
    argv: list[str]
    code: int
    out: str
    err: str


@dataclass
class Runner:
    rpc: str
    deployment: Path
    capsys: pytest.CaptureFixture[str]
    runs: int = 0

    def __call__(self, argv: list[str]) -> Outcome:
        code = cli.main(argv)
        captured = self.capsys.readouterr()
        self.runs += 1
        return Outcome(argv, code, captured.out, captured.err)


# The keeper daemon logs to stderr by design (docs/keeper.md); its log lines are not error output.
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def assert_clean(o: Outcome) -> None:
    """Success, or one clear line on stderr and a non-zero exit; never a traceback."""
    assert "Traceback" not in o.err and "Traceback" not in o.out, (o.argv, o.err)
    if o.code == 0:
        return
    lines = o.err.strip().splitlines()
    if "keeper" in o.argv:
        lines = [line for line in lines if not LOG_LINE.match(line)]
    assert len(lines) == 1, (o.argv, o.err)
    assert lines[0].startswith("bulwark"), (o.argv, lines[0])
    assert "unexpected error" not in lines[0], (o.argv, lines[0])
    assert o.code in (cli.EXIT_ERROR, cli.EXIT_USAGE), (o.argv, o.code, lines[0])
    assert o.out == "", (o.argv, o.out)


@pytest.fixture
def runner(
    bw: Bulwark, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Runner]:
    clear_cli_env(monkeypatch)
    monkeypatch.setenv("BULWARK_KEEPER_CHECKPOINT_FILE", str(tmp_path / "keeper.json"))
    path = bw.deployment.save(tmp_path / "deployment.json")
    yield Runner(str(bw.w3.provider.endpoint_uri), path, capsys)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- argument strategies

NASTY_NUMBERS = [
    "", " ", "-", "+", ".", "..", "e", "1e", "e5", "E-3", "0x10", "0b1", "0o7", "1_000", "1__0",
    "_1", "1_", "1,000", "1 000", "1.2.3", "--1", "+-1", "1e+", "1e-", "1e2.5", "\t5", "5\n",
    "NaN", "nan", "-nan", "sNaN", "inf", "-inf", "Infinity", "-Infinity", "infinity",
    "0", "-0", "+0", "0.0", "0e0", "0.0000001", "1e-7", "1e-19", "1e-999999999", "5e-324",
    "1e30", "1e77", "1e78", "1e300", "1e400", "1e999999", "1e999999999", "-1e999999999",
    "9" * 80, "9" * 200, "1" + "0" * 5000, "0." + "0" * 5000 + "1",
    "\u0661\u0662\u0663", "\uff11\uff12\uff13", "\u00bd", "\u2153", "\u2160", "1\u0660", "\u0967",
    "\U0001d7d9", "1\u200b", "\u22121", "max", "all", "MAX", "Max", "-max",
]  # fmt: skip

extreme_numbers = st.one_of(
    st.integers(min_value=20, max_value=10**10).map(lambda e: f"1e{e}"),
    st.integers(min_value=1, max_value=10**10).map(lambda e: f"-2.5e-{e}"),
    st.integers(min_value=60, max_value=400).map(lambda k: "9" * k),
    st.integers(min_value=19, max_value=400).map(lambda k: "0." + "0" * k + "1"),
)
number_text = st.one_of(
    st.sampled_from(NASTY_NUMBERS),
    extreme_numbers,
    st.integers(min_value=-(10**90), max_value=10**90).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.floats().map(repr),
    st.text(alphabet="0123456789.eE+-_ ", max_size=24),
    st.text(alphabet=st.characters(categories=["Nd", "No", "Nl"]), max_size=6),
    st.text(max_size=12),
)

market_text = st.one_of(
    st.sampled_from(
        [
            "ETH-USD", "eth-usd", "BTC-USD", "btc-usd", "DOGE-USD", "", " ", "ETH", "ETH-USD ",
            "ETH_USD", "\uff25\uff34\uff28-USD", "0", "1", "-1", "2", "ETH-USD\x00", "--json",
        ]
    ),
    st.text(max_size=10),
)  # fmt: skip

GOOD = dev_account(4).address
address_text = st.one_of(
    st.sampled_from(
        [
            GOOD, GOOD.lower(), GOOD.upper().replace("0X", "0x"), GOOD[2:], GOOD[:-1], GOOD + "0",
            "0x" + "Z" * 40, "0x" + "aA" * 20, "0x", "", "vitalik.eth", "0x0", "0X" + GOOD[2:],
            "0x" + "0" * 40, " " + GOOD, "\u0660x" + GOOD[2:],
        ]
    ),
    st.text(alphabet=string.hexdigits + "xX", min_size=38, max_size=44).map(lambda s: "0x" + s),
    st.text(max_size=12),
)  # fmt: skip

dev_text = st.one_of(
    st.sampled_from(["4", "5", "1", "2", "3"]),
    st.sampled_from(["-1", "10", "99", "100", "1e3", "x", "", " 4", "4.0", "\u0664", "0x4"]),
)

request_id_text = st.one_of(
    st.sampled_from(["0", "1", "-1", "1e3", "", "x", "99", "2" * 80, "1" + "0" * 5000, "\u0661"]),
    st.integers(min_value=-(2**300), max_value=2**300).map(str),
    st.text(max_size=8),
)

ODD_FLAGS = [
    "--json", "--", "-", "--unknown", "-x", "--dev-account=4", "--json=1", "--max-price",
    "--slippage", "-1", "--rpc", "--deployment", "--keystore", "-h",
]  # fmt: skip


@st.composite
def commands(draw: st.DrawFn) -> list[str]:
    """A command with fuzzed positional arguments and options (without the chain flags)."""
    pick = draw(st.integers(0, 15))
    n, m, a = number_text, market_text, address_text
    if pick == 0:
        return ["trade", "deposit", draw(n)]
    if pick == 1:
        return ["trade", "withdraw", draw(n)]
    if pick == 2:
        argv = ["trade", "open", draw(m), draw(n)]
        option = draw(st.sampled_from(["", "--max-price", "--min-price", "--slippage"]))
        return argv + ([option, draw(n)] if option else [])
    if pick == 3:
        return ["trade", "close", draw(m)]
    if pick == 4:
        return ["account"] + ([draw(a)] if draw(st.booleans()) else [])
    if pick == 5:
        return ["pool", draw(st.sampled_from(["deposit", "withdraw"])), draw(n)]
    if pick == 6:
        return ["fund", "stake", draw(n)]
    if pick == 7:
        return ["fund", "unstake", draw(n)]
    if pick == 8:
        return ["fund", "claim", draw(request_id_text)]
    if pick == 9:
        return ["fund", "status"] + ([draw(a)] if draw(st.booleans()) else [])
    if pick == 10:
        return ["feed", "set", draw(m), draw(n)]
    if pick == 11:
        return ["status"]
    if pick == 12:
        return ["keeper", "--once", *draw(st.sampled_from([[], ["--metrics-port", draw(n)]]))]
    if pick == 13:
        return [draw(st.sampled_from(["trade", "pool", "fund", "feed", "nope", "", "TRADE"]))]
    if pick == 14:
        return ["trade", draw(st.sampled_from(["open", "close", "deposit"]))]  # missing arguments
    return draw(st.lists(st.text(max_size=8), max_size=4))


@st.composite
def argvs(draw: st.DrawFn, rpc: str, deployment: str) -> list[str]:
    """A command, a signer, the chain flags, and odd flags, each placed anywhere."""
    argv = draw(commands())
    extras: list[list[str]] = []
    if draw(st.integers(0, 9)) > 0:
        extras.append(["--dev-account", draw(dev_text)])
    if draw(st.booleans()):
        extras.append(["--json"])
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0):
        extras.append([draw(st.sampled_from(ODD_FLAGS))])
    chain = [["--rpc", rpc], ["--deployment", deployment]]
    if draw(st.booleans()):  # the chain flags at the end, where most people put them
        tail = [t for c in chain for t in c]
    else:
        extras += chain
        tail = []
    for group in extras:
        at = draw(st.integers(0, len(argv)))
        argv[at:at] = group
    return argv + tail


# ---------------------------------------------------------------------------- argument tests


REGRESSIONS = [
    ["trade", "deposit", "1e999999999", "--dev-account", "4"],
    ["trade", "open", "ETH-USD", "-2.5e-406700850", "--dev-account", "4"],
    ["fund", "unstake", "1e-406700850", "--dev-account", "2"],
    ["trade", "deposit", "9" * 200, "--dev-account", "4"],
    ["trade", "deposit", "\u0661\u0662\u0663", "--dev-account", "4"],
    ["trade", "withdraw", "1e77", "--dev-account", "4"],
    ["trade", "open", "ETH-USD", "1", "--max-price", "1e99999", "--dev-account", "4"],
    ["fund", "claim", "9" * 80, "--dev-account", "2"],
    ["feed", "set", "ETH-USD", "1e300"],
]


@pytest.mark.parametrize("argv", REGRESSIONS, ids=[" ".join(a)[:40] for a in REGRESSIONS])
def test_known_bad_arguments_get_one_clear_line(runner: Runner, argv: list[str]) -> None:
    outcome = runner([*argv, "--rpc", runner.rpc, "--deployment", str(runner.deployment)])
    assert outcome.code != 0, outcome
    assert_clean(outcome)


def test_fuzzed_arguments_never_trace_back(runner: Runner) -> None:
    seen: dict[int, int] = {}

    @fuzz(default=300, deep=5_000)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        argv = data.draw(argvs(runner.rpc, str(runner.deployment)), label="argv")
        outcome = runner(argv)
        seen[outcome.code] = seen.get(outcome.code, 0) + 1
        assert_clean(outcome)

    check()
    # the campaign exercised both outcomes, and its bad inputs were turned away, not crashed on
    assert seen.get(0, 0) > 0 and seen.get(cli.EXIT_USAGE, 0) + seen.get(cli.EXIT_ERROR, 0) > 0
    _record("arguments", runner.runs, seen)


# ---------------------------------------------------------------------------- deployment file


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**300), max_value=2**300),
        st.floats(allow_nan=False),
        st.text(max_size=10),
        st.sampled_from(["0x" + "0" * 40, "0xdead", GOOD.lower(), "0x" + "aA" * 20, "1e400"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> None:
    for key in path[:-1]:
        doc = doc[key]
    if delete:
        del doc[path[-1]]
    else:
        doc[path[-1]] = value


@st.composite
def deployment_files(draw: st.DrawFn, valid: str) -> bytes:
    """The valid deployment file, mutated: keys dropped or retyped, truncated, or replaced."""
    kind = draw(
        st.sampled_from(["mutate", "mutate", "mutate", "swap", "truncate", "replace", "bytes"])
    )
    if kind == "swap":  # an address of the deployment put where another belongs
        doc = json.loads(valid)
        addresses = [*doc["contracts"].values(), *(m["feed"] for m in doc["markets"].values())]
        name = draw(st.sampled_from(sorted(doc["contracts"])))
        doc["contracts"][name] = draw(st.sampled_from(addresses))
        return json.dumps(doc).encode()
    if kind == "truncate":
        return valid.encode()[: draw(st.integers(0, len(valid) - 1))]
    if kind == "replace":
        return json.dumps(draw(json_values)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    doc = json.loads(valid)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        if draw(st.integers(0, 2)) == 0:
            _set(doc, path, None, delete=True)
        else:
            _set(doc, path, draw(json_values))
    text = json.dumps(doc)
    if draw(st.integers(0, 9)) == 0:  # numbers JSON allows but Python reads as infinite
        text = text.replace('"chain_id": ', '"chain_id": 1e400, "x": ', 1)
    return text.encode()


def _replace(valid: str, old: str, new: str) -> bytes:
    assert old in valid
    return valid.replace(old, new).encode()


DEPLOYMENT_COMMANDS = [
    ["status"],
    ["account", GOOD],
    ["fund", "status"],
    ["trade", "deposit", "1", "--dev-account", "4"],
    ["trade", "open", "BTC-USD", "0.001", "--dev-account", "4"],
    ["feed", "set", "ETH-USD", "3000"],
    ["pool", "withdraw", "max", "--dev-account", "1"],
]


def test_fuzzed_deployment_files_never_trace_back(runner: Runner, tmp_path: Path) -> None:
    valid = runner.deployment.read_text()
    seen: dict[int, int] = {}
    file = tmp_path / "fuzzed.json"

    @fuzz(default=150, deep=3_000)
    @given(content=deployment_files(valid), command=st.sampled_from(DEPLOYMENT_COMMANDS))
    @example(content=b"", command=["status"])
    @example(content=b"\xef\xbb\xbf" + valid.encode(), command=["status"])
    @example(content=b"\xff\xfe\x00", command=["status"])
    @example(content=_replace(valid, '"chain_id": 31337', '"chain_id": 1e400'), command=["status"])
    @example(content=_replace(valid, '"collateral_decimals": 6', '"collateral_decimals": 99'),
             command=["status"])  # fmt: skip
    def check(content: bytes, command: list[str]) -> None:
        file.write_bytes(content)
        outcome = runner([*command, "--rpc", runner.rpc, "--deployment", str(file)])
        seen[outcome.code] = seen.get(outcome.code, 0) + 1
        assert_clean(outcome)

    check()
    for argv in (
        ["status", "--rpc", runner.rpc, "--deployment", str(tmp_path)],  # a directory
        ["status", "--rpc", runner.rpc, "--deployment", str(tmp_path / "none.json")],
    ):
        outcome = runner(argv)
        assert outcome.code != 0
        assert_clean(outcome)
    assert seen.get(0, 0) > 0 and seen.get(cli.EXIT_ERROR, 0) > 0
    _record("deployment", runner.runs, seen)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"collateral_decimals": 6', '"collateral_decimals": 0', "says the collateral has 0"),
        ('"collateral_decimals": 6', '"collateral_decimals": 99', "says the collateral has 99"),
        ('"chain_id": 31337', '"chain_id": 1e400', "is malformed: OverflowError"),
        ('"Collateral": "0x', '"Collateral": "0x0000000000000000000000000000000000000000", "x": "',
         "no contract code for Collateral at 0x0000"),
        ('"InsuranceFund": "0x', '"InsuranceFund": "0x0000000000000000000000000000000000000000", '
         '"x": "', "no contract code for InsuranceFund at 0x0000"),
        ('"Collateral": "0x', '"Collateral": "' + dev_account(4).address.lower() + '", "x": "',
         "no contract code for Collateral"),
    ],
)  # fmt: skip
def test_a_deployment_file_that_lies_is_refused_before_any_amount_is_scaled(
    runner: Runner, tmp_path: Path, old: str, new: str, message: str
) -> None:
    file = tmp_path / "lying.json"
    file.write_bytes(_replace(runner.deployment.read_text(), old, new))
    chain = ["--rpc", runner.rpc]
    account = ["account", GOOD, "--json", *chain, "--deployment", str(runner.deployment)]
    before = runner(account)
    deposit = ["trade", "deposit", "1", "--dev-account", "4"]
    outcome = runner([*deposit, *chain, "--deployment", str(file)])
    assert outcome.code == cli.EXIT_ERROR and message in outcome.err, outcome
    assert_clean(outcome)
    assert before.code == 0 and runner(account).out == before.out  # nothing was deposited


def test_a_keeper_that_cannot_start_says_so_in_one_line(runner: Runner) -> None:
    chain = ["--rpc", runner.rpc, "--deployment", str(runner.deployment)]
    outcome = runner(["keeper", "--once", "--dev-account", "10", *chain])  # no ETH for gas
    assert outcome.code == 2 and "needs at least 0.010000 ETH" in outcome.err
    assert len(outcome.err.strip().splitlines()) == 1, outcome.err


# ---------------------------------------------------------------------------- figures


def _record(name: str, runs: int, seen: dict[int, int]) -> None:
    """Appends the campaign's size to out/cli-fuzz.jsonl (the figures in docs/security.md)."""
    out = Path(__file__).parents[1] / "out"
    out.mkdir(exist_ok=True)
    with (out / "cli-fuzz.jsonl").open("a") as f:
        record = {"campaign": name, "deep": DEEP, "runs": runs, "exit_codes": seen}
        f.write(json.dumps(record) + "\n")
