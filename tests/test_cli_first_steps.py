"""A new user's first steps with `bulwark`, on the session Anvil: a local deploy that leaves a usable
market, the pool-cap error that says what passes, plain lines for what the node refuses, bounds
checked before sending, stale feeds, market terms, the account's history and many test accounts."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import clear_cli_env
from test_cli import Cli, assert_one_line_error
from web3.exceptions import Web3RPCError

from bulwark import cli
from bulwark.chain.contracts import (
    WAD,
    Bulwark,
    DecodedError,
    Deployment,
    TxReverted,
    dev_account,
    node_error_line,
)
from bulwark.chain.sender import NonceManager
from bulwark.cli.render import revert_message
from bulwark.core import riskmath
from bulwark.core.units import format_wad, parse_wad
from bulwark.devnet.deploy import SEED_FUND_ACCOUNT, SEED_POOL_ACCOUNT
from bulwark.devnet.world import USDC, World

TRADER = 4


@pytest.fixture
def run(
    bw: Bulwark, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Cli:
    clear_cli_env(monkeypatch)
    path = bw.deployment.save(tmp_path / "deployment.json")
    return Cli(str(bw.w3.provider.endpoint_uri), path, capsys)  # type: ignore[attr-defined]


def rpc(bw: Bulwark, method: str, *params: Any) -> Any:
    return bw.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- a usable local market


def test_local_deploy_seeds_the_pool_and_a_round_fund_stake(
    run: Cli,
    bw: Bulwark,
    tmp_path: Path,
) -> None:
    target = tmp_path / "fresh.json"
    code = cli.main(["deploy", "--rpc", run.rpc, "--deployment", str(target)])
    out = run.capsys.readouterr().out
    assert code == 0
    assert f"from dev account {SEED_POOL_ACCOUNT}" in out and "ready to trade" in out
    fresh = Bulwark(bw.w3, Deployment.load(target), bw.artifacts)
    assert fresh.pool.functions.totalAssets().call() == 500_000 * USDC
    assert fresh.fund.functions.totalAssets().call() == 50_000 * USDC
    shares = fresh.fund.functions.balanceOf(dev_account(SEED_FUND_ACCOUNT).address).call()
    assert fresh.fund.functions.convertToAssets(shares).call() == 50_000 * USDC
    assert shares == 50_000 * 10 ** fresh.fund.functions.decimals().call()  # one share per token

    # The README's first trade goes through on it.
    fresh_run = Cli(run.rpc, target, run.capsys)
    fresh_run.ok("trade", "deposit", "10000", "--dev-account", str(TRADER))
    opened = fresh_run.json("trade", "open", "ETH-USD", "2.5", "--dev-account", str(TRADER))
    assert opened["new_size"] == "2.5"


def test_deploy_no_seed_and_json(run: Cli, tmp_path: Path) -> None:
    target = tmp_path / "empty.json"
    code = cli.main(
        ["deploy", "--rpc", run.rpc, "--deployment", str(target), "--no-seed", "--json"]
    )
    data = json.loads(run.capsys.readouterr().out)
    assert code == 0 and data["seed"] is None
    text_run = Cli(run.rpc, target, run.capsys)
    text_run.ok("trade", "deposit", "1000", "--dev-account", str(TRADER))
    refused = text_run("trade", "open", "ETH-USD", "0.1", "--dev-account", str(TRADER))
    assert_one_line_error(refused, "TradePoolExposureCap", "bulwark pool deposit")


# ---------------------------------------------------------------------------- the pool's cap


def test_pool_cap_error_names_the_largest_size_that_passes(
    run: Cli,
    protocol: World,
) -> None:
    protocol.seed_pool(1_000)
    dev = ("--dev-account", str(TRADER))
    run.ok("trade", "deposit", "5000", *dev)
    refused = run("trade", "open", "ETH-USD", "2.5", *dev)
    assert_one_line_error(refused, "TradePoolExposureCap(", "bulwark pool deposit")
    largest = refused.err.split("the largest buy the pool takes now is ")[1].split(" ")[0]
    assert Decimal(largest) == 1  # 3 x pool equity 1,000 / price 3,000
    opened = run.json("trade", "open", "ETH-USD", largest, *dev)
    assert opened["new_size"] == largest
    again = run("trade", "open", "ETH-USD", "0.01", *dev)
    assert_one_line_error(again, "TradePoolExposureCap(")
    sell = run("trade", "open", "ETH-USD", "-3", *dev)
    assert_one_line_error(sell, "the largest sell the pool takes now is ")


def test_markets_room_is_what_the_pool_takes(run: Cli, protocol: World) -> None:
    protocol.seed_pool(10_000)
    protocol.fund_trader(dev_account(TRADER), 20_000)
    terms = run.json("markets")["markets"]
    eth = next(m for m in terms if m["name"] == "ETH-USD")
    assert eth["max_leverage"] == "20" and eth["initial_margin_ratio"] == "0.05"
    assert eth["maintenance_margin_ratio"] == "0.025" and eth["taker_fee"] == "0.0005"
    assert eth["max_open_interest"] == "100000" and eth["pool_exposure_cap"] == "30000"
    room = parse_wad(eth["pool_room_buy"])
    assert room == 10 * WAD
    step = room // 10**14 * 10**14 - 10**14  # a hair under the room, rounded as the CLI rounds
    run.ok("trade", "open", "ETH-USD", str(Decimal(step) / WAD), "--dev-account", str(TRADER))
    status = run.json("status")
    (eth_terms,) = [t for t in status["terms"] if t["name"] == "ETH-USD"]
    # what is left: 3 x the pool's equity (grown by its share of the fee) / price - the net size
    cap = parse_wad(status["pool"]["equity"]) * 3
    assert parse_wad(eth_terms["pool_room_buy"]) == cap * WAD // (3000 * WAD) - step
    text = run.ok("status").out
    assert "market terms" in text and "POOL ROOM BUY/SELL" in text


# ---------------------------------------------------------------------------- what the node refuses


def test_no_eth_for_gas_names_the_account_and_what_it_needs(
    run: Cli,
    protocol: World,
) -> None:
    broke = dev_account(6)
    rpc(protocol.bw, "anvil_setBalance", broke.address, "0x0")
    result = run("trade", "deposit", "10", "--dev-account", "6")
    assert_one_line_error(result, broke.address, "has 0 ETH", "gas", "it needs up to")
    assert "Web3RPCError" not in result.err


def test_nonce_too_low_is_one_line(
    run: Cli,
    protocol: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trader = dev_account(TRADER)
    protocol.fund_trader(trader, 100)  # uses nonces: nonce 0 is spent
    # a nonce manager that keeps handing out nonce 0 (as if another process raced it each time)
    monkeypatch.setattr(NonceManager, "reserve", lambda self, reseed=False: 0)
    result = run("trade", "deposit", "10", "--dev-account", str(TRADER))
    assert_one_line_error(result, "nonce too low", trader.address)


def test_replacement_underpriced_is_one_line(
    run: Cli,
    protocol: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bw = protocol.bw
    trader = dev_account(TRADER)
    rpc(bw, "evm_setAutomine", False)
    try:
        nonce = bw.w3.eth.get_transaction_count(trader.address, "pending")
        tx = bw.token.functions.approve(bw.ch.address, 10**30).build_transaction(
            {"from": trader.address, "nonce": nonce, "gas": 100_000}
        )
        bw.w3.eth.send_raw_transaction(trader.sign_transaction(tx).raw_transaction)
        monkeypatch.setattr(NonceManager, "reserve", lambda self, reseed=False: nonce)
        result = run("pool", "deposit", "10", "--dev-account", str(TRADER))
        assert_one_line_error(result, "still pending", trader.address)
    finally:
        rpc(bw, "evm_setAutomine", True)
        rpc(bw, "evm_mine")


@pytest.mark.parametrize(
    ("message", "needle"),
    [
        ("invalid chain id for signer: have 5 want 31337", "chain id"),
        ("nonce too low: next nonce 7, tx nonce 3", "nonce too low"),
        ("replacement transaction underpriced", "still pending"),
    ],
)
def test_node_messages_map_to_plain_lines(bw: Bulwark, message: str, needle: str) -> None:
    exc = Web3RPCError(json.dumps({"code": -32000, "message": message}))
    exc.rpc_response = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": message}}
    line = node_error_line(exc, bw.w3, dev_account(1).address, "trade ETH-USD")
    assert line is not None and needle in line and "trade ETH-USD" in line
    other = Web3RPCError("method not found")
    assert node_error_line(other, bw.w3, dev_account(1).address, "x") is None


# ---------------------------------------------------------------------------- bounds before sending


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["trade", "open", "ETH-USD", "1e20"], ["open-interest cap of 100000"]),
        (["trade", "open", "ETH-USD", "-1e30"], ["open-interest cap"]),
        (["trade", "open", "ETH-USD", "1", "--max-price", "1e13"], ["--max-price", "above"]),
        (["trade", "open", "ETH-USD", "-1", "--min-price", "1e40"], ["--min-price", "above"]),
        (["feed", "set", "ETH-USD", "1e30"], ["PRICE", "more than any market trades at"]),
    ],
)
def test_absurd_sizes_and_prices_are_refused_before_sending(
    run: Cli,
    protocol: World,
    argv: list[str],
    needles: list[str],
) -> None:
    protocol.seed_pool(100_000)
    protocol.fund_trader(dev_account(TRADER), 1_000)
    block = protocol.bw.w3.eth.block_number
    result = run(*argv, "--dev-account", str(TRADER) if argv[0] == "trade" else "0")
    assert_one_line_error(result, *needles)
    assert "SafeCast" not in result.err
    assert protocol.bw.w3.eth.block_number == block  # nothing was sent


# ---------------------------------------------------------------------------- stale feeds


def test_stale_feed_account_and_status_show_what_can_be_read(
    run: Cli,
    protocol: World,
) -> None:
    p = protocol
    trader = dev_account(TRADER)
    p.seed_pool(100_000)
    p.fund_trader(trader, 1_000)
    p.trade(trader, "ETH-USD", 2)
    before = run.json("account", "--dev-account", str(TRADER))
    published = p.bw.feeds["ETH-USD"].functions.latestRoundData().call()[3]
    p.warp(7200)

    stale = run.json("account", "--dev-account", str(TRADER))
    assert stale["stale_prices"] == {"ETH-USD": published, "BTC-USD": published} or stale[
        "stale_prices"
    ] == {"ETH-USD": published}
    assert "OracleStalePrice" in stale["stale_error"]
    # Valued at the last price, equity moves only by two hours of funding on a flat market
    assert stale["margin"] == before["margin"]
    assert stale["maintenance_margin"] == before["maintenance_margin"]
    (position,) = stale["positions"]
    assert position["price"] == "3000" and position["price_stale_since"] == published
    assert position["adl"]["known"] is False
    text = run.ok("account", "--dev-account", str(TRADER)).out
    assert (
        "STALE" in text and "bulwark feed set" in text and "healthy at the last feed prices" in text
    )

    status = run.ok("status").out
    assert "no open interest" not in status
    assert "3,000.00 STALE" in status and "at stale prices" in status
    assert "bulwark feed set" in status
    data = run.json("status")
    eth = next(m for m in data["markets"] if m["name"] == "ETH-USD")
    assert eth["price"] is None and eth["price_stale"] is True and eth["last_price"] == "3000"
    assert eth["open_interest_notional"] == "6000"


def test_fund_window_ends_at_is_null_before_any_window(run: Cli, protocol: World) -> None:
    protocol.stake(1_000)
    assert run.json("fund", "status")["window_ends_at"] is None
    assert run.json("status")["fund"]["window_ends_at"] is None


# ---------------------------------------------------------------------------- after the fill


def test_trade_open_prints_leverage_and_liquidation_price(
    run: Cli,
    protocol: World,
) -> None:
    protocol.seed_pool(500_000)
    dev = ("--dev-account", str(TRADER))
    run.ok("trade", "deposit", "1000", *dev)
    opened = run.json("trade", "open", "ETH-USD", "2", *dev)
    account = run.json("account", *dev)
    assert opened["liquidation_price"] == account["positions"][0]["liquidation_price"]
    assert Decimal(opened["leverage"]) == pytest.approx(
        Decimal(6000) / Decimal(997), rel=Decimal("1e-6")
    )
    text = run.ok("trade", "open", "ETH-USD", "0.5", *dev).out
    assert "leverage " in text and "ETH-USD liquidation price " in text


# ---------------------------------------------------------------------------- what happened to me


def test_history_and_last_liquidation(
    run: Cli,
    protocol: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BULWARK_KEEPER_CHECKPOINT_FILE", str(tmp_path / "checkpoint.json"))
    p = protocol
    trader = dev_account(TRADER)
    p.seed_pool(500_000)
    p.stake(50_000)
    p.fund_trader(trader, 1_000)
    p.trade(trader, "ETH-USD", 5)
    p.set_price("ETH-USD", 2700)  # below the bankruptcy price: the fund covers a shortfall
    assert run("keeper", "--once", "--dev-account", "3").code == 0

    history = run.json("account", "--history", "--dev-account", str(TRADER))["history"]
    kinds = [h["event"] for h in history]
    assert kinds[:2] == ["Deposited", "PositionChanged"]
    assert "Liquidated" in kinds and "ShortfallSettled" in kinds
    settled = next(h for h in history if h["event"] == "ShortfallSettled")
    assert Decimal(settled["values"]["coveredWad"]) > 0
    assert settled["tx"].startswith("0x") and len(settled["tx"]) == 66
    assert settled["block"] > 0 and settled["timestamp"] > 0
    liquidated = next(h for h in history if h["event"] == "Liquidated")
    assert liquidated["values"]["bankrupt"] is True

    text = run.ok("account", "--dev-account", str(TRADER)).out.splitlines()
    assert text[1].startswith("  last liquidated in ETH-USD") and "fund covered" in text[1]
    table = run.ok("account", "--history", "--dev-account", str(TRADER)).out
    assert "LIQUIDATED" in table and "the insurance fund covered" in table


# ---------------------------------------------------------------------------- many accounts


def test_accounts_create_fund_and_pick_by_index(
    run: Cli,
    protocol: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BULWARK_KEYSTORE_PASSWORD", "test-only")
    folder = tmp_path / "keys"
    made = run.json("accounts", "create", "3", "--keystore-dir", str(folder), "--usdc", "2500")
    assert [c["index"] for c in made["created"]] == [0, 1, 2]
    assert len(list(folder.glob("key-*.json"))) == 3
    more = run.json("accounts", "create", "2", "--keystore-dir", str(folder), "--eth", "1")
    assert [c["index"] for c in more["created"]] == [3, 4]

    listed = run.json("accounts", "list", "--keystore-dir", str(folder))["accounts"]
    assert [a["wallet"] for a in listed] == ["2500", "2500", "2500", "100000", "100000"]
    assert listed[3]["eth"] == "1" and listed[0]["eth"] == "10"

    picked = ("--account-index", "2", "--keystore-dir", str(folder))
    deposited = run.json("trade", "deposit", "1000", *picked)
    assert deposited["account"] == listed[2]["address"] and deposited["wallet"] == "1500"
    assert_one_line_error(
        run("account", "--account-index", "9", "--keystore-dir", str(folder)), "keys 0 to 4"
    )
    both = run("account", "--account-index", "1", "--dev-account", "1")
    assert_one_line_error(both, "not several")

    topped = run.json("accounts", "fund", dev_account(7).address, "--eth", "0", "--usdc", "5")
    assert Decimal(topped["wallet"]) == 1_000_005


def test_riskmath_values_the_stale_account_like_the_chain(protocol: World) -> None:
    """The stale view's arithmetic is the contract's: with fresh prices both agree exactly."""
    from bulwark.keeper import status

    p = protocol
    trader = dev_account(TRADER)
    p.seed_pool(100_000)
    p.fund_trader(trader, 1_000)
    p.trade(trader, "ETH-USD", 2)
    p.trade(trader, "BTC-USD", -0.05)
    bw = p.bw
    positions = {m: riskmath.Position.from_tuple(bw.ch.functions.positionOf(trader.address, m).call()) for m in (0, 1)}  # fmt: skip
    configs = {m: riskmath.MarketConfig.from_tuple(bw.ch.functions.marketConfig(m).call()) for m in (0, 1)}  # fmt: skip
    states = {m: riskmath.MarketState.from_tuple(bw.ch.functions.marketState(m).call()) for m in (0, 1)}  # fmt: skip
    prices = {m: bw.oracle.functions.priceWad(m).call() for m in (0, 1)}
    now = status.latest_timestamp(bw)
    indices = {m: riskmath.funding_index_now(states[m], configs[m], prices[m], now) for m in (0, 1)}
    margin = bw.ch.functions.marginOf(trader.address).call()
    health = riskmath.health(margin, positions, prices, indices, configs)
    equity, imr, mmr, _ = bw.ch.functions.healthOf(trader.address).call()
    assert (health.equity, health.imr, health.mmr) == (equity, imr, mmr)


@pytest.mark.parametrize(
    "error",
    [
        DecodedError("Error", {"message": "execution reverted"}),
        DecodedError("unknown", raw="0x"),
    ],
)
def test_revert_without_data_is_a_plain_line(error: DecodedError) -> None:
    line = revert_message(TxReverted("trade ETH-USD", error))
    assert line.startswith("trade ETH-USD reverted without revert data")
    assert "no reason" in line and "unknown error" not in line
    custom = revert_message(TxReverted("x", DecodedError("TradeZeroSize")))
    assert custom == "x reverted: TradeZeroSize()"


def test_stale_status_lists_liquidatable_accounts_at_the_last_prices(
    run: Cli, protocol: World
) -> None:
    p = protocol
    trader, other = dev_account(TRADER), dev_account(5)
    p.seed_pool(100_000)
    p.fund_trader(trader, 1_000)
    p.fund_trader(other, 5_000)
    p.trade(trader, "ETH-USD", 2)
    p.trade(other, "ETH-USD", 2)
    p.set_price("ETH-USD", 2550)  # trader: equity ~100 < maintenance 127.5; other stays healthy
    fresh = run.json("status")
    p.warp(7200)
    stale = run.json("status")
    assert stale["health_error"] is None and stale["liquidatable_at_last_prices"] is True
    assert [x["address"] for x in stale["liquidatable"]] == [trader.address]
    assert [x["address"] for x in fresh["liquidatable"]] == [trader.address]
    assert (
        stale["liquidatable"][0]["maintenance_margin"]
        == fresh["liquidatable"][0]["maintenance_margin"]
    )
    # the pool's equity too, at the last prices: it moved only by two hours of funding
    fresh_pool, stale_pool = Decimal(fresh["pool"]["equity"]), Decimal(stale["pool"]["equity"])
    assert fresh_pool != stale_pool and abs(fresh_pool - stale_pool) < 1
    text = run.ok("status").out
    assert "1 liquidatable at the last feed prices" in text
    shown = format_wad(parse_wad(stale["pool"]["equity"]), 2, group=True)
    assert f"pool equity       {shown} at the last feed prices" in text


def test_an_adl_haircut_shows_in_the_account_and_its_history(
    run: Cli, protocol: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers import adl_book

    monkeypatch.setenv("BULWARK_KEEPER_CHECKPOINT_FILE", str(tmp_path / "checkpoint.json"))
    book = adl_book(protocol)  # bad debt on ETH's long side, an empty fund, three profitable shorts
    first = book.shorts[0]  # 2 ETH short on 500: first in the ADL queue
    index = str(next(i for i in range(10) if dev_account(i).address == first.address))
    assert run("keeper", "--once", "--dev-account", "3").code == 0

    history = run.json("account", "--history", "--dev-account", index)["history"]
    (step,) = [h for h in history if h["event"] == "AutoDeleveraged"]
    assert Decimal(step["values"]["haircutWad"]) > 0 and step["market"] == "ETH-USD"
    lines = run.ok("account", "--dev-account", index).out.splitlines()
    assert (
        lines[1].startswith("  last auto-deleveraged in ETH-USD") and "profit haircut" in lines[1]
    )
    assert "AUTO-DELEVERAGED" in run.ok("account", "--history", "--dev-account", index).out


def test_deploy_with_a_given_token_seeds_nothing_and_says_what_to_do(
    run: Cli, bw: Bulwark, tmp_path: Path
) -> None:
    target = tmp_path / "given.json"
    argv = [
        "deploy",
        "--rpc",
        run.rpc,
        "--deployment",
        str(target),
        "--collateral",
        bw.token.address,
    ]
    assert cli.main(argv) == 0
    out = run.capsys.readouterr().out
    assert "seeded" not in out
    assert "`bulwark pool deposit AMOUNT`" in out and "`bulwark fund stake AMOUNT`" in out
    fresh = Bulwark(bw.w3, Deployment.load(target), bw.artifacts)
    assert fresh.pool.functions.totalAssets().call() == 0
