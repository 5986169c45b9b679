"""The trading page in a real headless Chromium (Debian's), driven by Playwright, on the session Anvil.

The wallet is an injected EIP-1193 provider, announced through EIP-6963, that forwards every request
to this Anvil, whose dev accounts are unlocked: each transaction the page sends is a real transaction
on a real chain. Every assertion reads what the page shows from the DOM and compares it with the
chain's own views (bulwark/keeper/status.py, the contracts' view functions) and with the CLI's words.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import clear_cli_env
from helpers import adl_book
from playwright import sync_api as playwright_sync
from playwright.sync_api import expect
from web3 import Web3
from web3.logs import DISCARD

from bulwark import cli
from bulwark.chain.contracts import WAD, Bulwark, Deployment, TxReverted, dev_account
from bulwark.cli import render
from bulwark.cli.web import PageServer, page_config, start_page, web_dir
from bulwark.core import paths
from bulwark.core import riskmath as rm
from bulwark.devnet.node import AnvilNode
from bulwark.devnet.world import USDC, World
from bulwark.keeper import status

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = paths.project_root() / "web-screenshots"
TIMEOUT_MS = 60_000  # a loaded machine: every expectation polls up to this
expect.set_options(timeout=TIMEOUT_MS)
TRADER, OTHER = 4, 5

# The injected wallet: EIP-1193 over the page's fetch to Anvil, announced through EIP-6963.
# It starts on chain 1, which it cannot reach, and knows no other chain until the page adds one.
WALLET_JS = """
(() => {
  const cfg = window.__walletConfig;
  const listeners = {};
  const log = [];
  const chains = Object.assign({}, cfg.chains);
  let chainId = cfg.chainId;
  let authorised = false;
  const fail = (message, code) => Object.assign(new Error(message), { code });
  async function forward(method, params) {
    const url = chains[chainId];
    if (!url) throw fail(`chain ${chainId} is not reachable from this wallet`, -32603);
    const reply = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: log.length, method, params: params || [] }),
    });
    const body = await reply.json();
    if (body.error) throw Object.assign(fail(body.error.message, body.error.code), { data: body.error.data });
    return body.result;
  }
  const emit = (event, value) => (listeners[event] || []).forEach((fn) => fn(value));
  const provider = {
    async request({ method, params }) {
      log.push({ method, params: params === undefined ? null : params });
      switch (method) {
        case "eth_requestAccounts": authorised = true; return [cfg.account];
        case "eth_accounts": return authorised ? [cfg.account] : [];
        case "eth_chainId": return chainId;
        case "wallet_switchEthereumChain": {
          const id = params[0].chainId;
          if (!chains[id]) throw fail("Unrecognized chain ID " + id, 4902);
          chainId = id; emit("chainChanged", id); return null;
        }
        case "wallet_addEthereumChain": {
          const p = params[0];
          chains[p.chainId] = p.rpcUrls[0]; chainId = p.chainId; emit("chainChanged", p.chainId);
          return null;
        }
        case "wallet_watchAsset": return true;
        case "eth_sendTransaction":
          if (!authorised) throw fail("not authorised", 4100);
          if (params[0].from.toLowerCase() !== cfg.account.toLowerCase()) throw fail("wrong from", 4100);
          return forward(method, params);
        default: return forward(method, params);
      }
    },
    on(event, fn) { (listeners[event] = listeners[event] || []).push(fn); },
    removeListener(event, fn) { listeners[event] = (listeners[event] || []).filter((f) => f !== fn); },
  };
  window.__wallet = {
    log,
    setChain(id) { chainId = id; emit("chainChanged", id); },
    setAccount(address) { cfg.account = address; emit("accountsChanged", [address]); },
  };
  const info = Object.freeze({
    uuid: "5f0a2b1e-0d5c-4b43-9c39-7d1f0b2d6c11",
    name: "Test Wallet",
    icon: "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 8 8'%3E%3Crect width='8' height='8' fill='%23888'/%3E%3C/svg%3E",
    rdns: "org.bulwark.test-wallet",
  });
  const announce = () =>
    window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail: Object.freeze({ info, provider }) }));
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
})();
"""


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get)")
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="session")
def page_server(bw: Bulwark, anvil: AnvilNode) -> Iterator[PageServer]:
    server = start_page(bw, anvil.rpc_url, port=0)
    yield server
    server.shutdown()
    server.server_close()


class Page:
    """One browser tab on the page with the test wallet as dev account `account`."""

    def __init__(self, tab: Any, p: World, account: int, requests: list[str]) -> None:
        self.tab = tab
        self.p = p
        self.address = dev_account(account).address
        self.requests = requests
        self.mark = 0

    # -- reading

    def stat(self, testid: str) -> Any:
        return self.tab.get_by_test_id(testid)

    def value(self, locator: Any) -> int:
        return int(locator.get_attribute("data-value"))

    def expect_value(self, locator: Any, value: int) -> None:
        expect(locator).to_have_attribute("data-value", str(value), timeout=TIMEOUT_MS)

    def wallet_log(self, method: str) -> list[Any]:
        log: list[dict[str, Any]] = self.tab.evaluate("window.__wallet.log")
        return [e["params"] for e in log if e["method"] == method]

    def shot(self, name: str) -> None:
        SHOTS.mkdir(exist_ok=True)
        self.tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    # -- acting

    def connect(self) -> None:
        self.tab.get_by_test_id("connect").click()
        expect(self.tab.get_by_test_id("wrong-chain")).to_be_visible(timeout=TIMEOUT_MS)
        self.tab.get_by_test_id("switch-chain").click()
        expect(self.tab.get_by_test_id("wrong-chain")).to_have_count(0, timeout=TIMEOUT_MS)
        expect(self.stat("wallet")).to_have_attribute("data-value", re.compile(r"\d+"))

    def act(self, locator: Any) -> None:
        """Clicks what starts a transaction; `last_tx` then waits for one started after it."""
        self.mark = int(self.tab.evaluate("document.querySelectorAll('#txs li.tx').length"))
        locator.click()

    def submit(self, form: str, field: str, text: str) -> None:
        self.tab.locator(f"#{field}").fill(text)
        self.act(self.tab.locator(f"#{form} button[type=submit]"))

    def last_tx(self, action: str) -> Any:
        self.tab.wait_for_function(
            """([mark, action]) => {
                const all = [...document.querySelectorAll('#txs li.tx')];
                return all.slice(0, all.length - mark).some((li) => li.dataset.action === action);
            }""",
            arg=[self.mark, action],
            timeout=TIMEOUT_MS,
        )
        return self.tab.locator(f"#txs li[data-action='{action}']").first

    def expect_confirmed(self, action: str) -> None:
        tx = self.last_tx(action)
        expect(tx).to_have_attribute(
            "data-state", re.compile("confirmed|failed"), timeout=TIMEOUT_MS
        )
        assert tx.get_attribute("data-state") == "confirmed", tx.inner_text()

    def expect_failed(self, action: str) -> str:
        tx = self.last_tx(action)
        expect(tx).to_have_attribute("data-state", "failed", timeout=TIMEOUT_MS)
        return str(tx.get_by_test_id("tx-message").inner_text())

    def wait_block(self, number: int) -> None:
        expect(self.tab.get_by_test_id("block")).to_have_attribute(
            "data-value", str(number), timeout=TIMEOUT_MS
        )


@pytest.fixture
def open_page(
    browser: Any, page_server: PageServer, protocol: World, anvil: AnvilNode
) -> Iterator[Any]:
    contexts: list[Any] = []
    outside: list[str] = []
    errors: list[str] = []

    def make(account: int = TRADER, on_chain: bool = False, extra_script: str = "") -> Page:
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        contexts.append(context)
        chain_id = hex(protocol.bw.w3.eth.chain_id)
        wallet = {
            "account": dev_account(account).address,
            "chainId": chain_id if on_chain else "0x1",
            "chains": {chain_id: anvil.rpc_url} if on_chain else {},
        }
        context.add_init_script(f"window.__walletConfig = {json.dumps(wallet)};")
        context.add_init_script(WALLET_JS)
        if extra_script:
            context.add_init_script(extra_script)
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        requests: list[str] = []

        def seen(request: Any) -> None:
            requests.append(request.url)
            if not request.url.startswith(("http://127.0.0.1:", "data:")):
                outside.append(request.url)

        tab.on("request", seen)
        tab.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.goto(page_server.url)
        expect(tab.locator("body")).to_have_attribute("data-ready", "true", timeout=TIMEOUT_MS)
        return Page(tab, protocol, account, requests)

    yield make
    for context in contexts:
        context.close()
    assert not outside, f"the page reached outside this machine: {outside}"
    assert not errors, f"errors in the page's console: {errors}"


def seed_pool(p: World, usdc: int = 1_000_000) -> None:
    p.seed_pool(usdc)


def cli_run(anvil: AnvilNode, deployment_file: Path, *argv: str) -> None:
    code = cli.main([*argv, "--rpc", anvil.rpc_url, "--deployment", str(deployment_file)])
    assert code == 0


@pytest.fixture
def deployment_file(
    tmp_path: Path, deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> Path:
    clear_cli_env(monkeypatch)
    return deployment.save(tmp_path / "deployment.json")


def fmt(value: int | None, places: int = 2) -> str:
    return render.wad(value, places)


# ---------------------------------------------------------------------------- scenarios


def test_connect_adds_the_chain_and_a_wrong_chain_shows_a_switch_prompt(
    open_page: Any, protocol: World, anvil: AnvilNode
) -> None:
    page = open_page()
    bw = protocol.bw
    # Markets are shown before any wallet connects, at the chain's oracle price.
    row = page.tab.locator("#markets tr[data-market='ETH-USD']")
    price = protocol.price_wad("ETH-USD")
    expect(row.locator("td.num").first).to_have_attribute("data-value", str(price))
    expect(row.locator("td.num").first).to_have_text(fmt(price))

    page.tab.get_by_test_id("connect").click()
    banner = page.tab.get_by_test_id("wrong-chain")
    expect(banner).to_contain_text("Your wallet is on chain 1")
    expect(banner).to_contain_text(f"chain {bw.w3.eth.chain_id}")
    expect(page.tab.locator("#deposit-submit")).to_be_disabled()
    page.shot("wrong-chain")

    page.tab.get_by_test_id("switch-chain").click()
    expect(banner).to_have_count(0)
    chain_hex = hex(bw.w3.eth.chain_id)
    assert page.wallet_log("wallet_switchEthereumChain") == [[{"chainId": chain_hex}]]
    added = page.wallet_log("wallet_addEthereumChain")
    assert len(added) == 1
    assert added[0][0]["chainId"] == chain_hex
    assert added[0][0]["rpcUrls"] == [anvil.rpc_url]
    assert added[0][0]["nativeCurrency"]["decimals"] == 18
    expect(page.tab.get_by_test_id("account-address")).to_have_attribute("title", page.address)
    wallet = int(bw.token.functions.balanceOf(page.address).call())
    page.expect_value(page.stat("wallet"), wallet)
    expect(page.stat("wallet")).to_have_text(render.units.format_units(wallet, 6, 2, group=True))
    expect(page.tab.locator("#deposit-submit")).to_be_enabled()

    page.tab.locator("#watch-token").click()
    expect(page.tab.locator("#txs li").first).to_contain_text("added to the wallet")
    watched = page.wallet_log("wallet_watchAsset")
    assert watched == [
        {
            "type": "ERC20",
            "options": {"address": bw.token.address, "symbol": "mUSDC", "decimals": 6},
        }
    ]

    # The guardian's reduce-only switch shows as a banner.
    bw.send(bw.ch.functions.setReduceOnly(True), protocol.admin)
    expect(page.tab.get_by_test_id("reduce-only")).to_be_visible(timeout=TIMEOUT_MS)
    bw.send(bw.ch.functions.setReduceOnly(False), protocol.admin)
    expect(page.tab.get_by_test_id("reduce-only")).to_have_count(0, timeout=TIMEOUT_MS)

    # The wallet moves to another chain: the prompt comes back and actions are off.
    page.tab.evaluate("window.__wallet.setChain('0x1')")
    expect(banner).to_be_visible()
    expect(page.tab.locator("#deposit-submit")).to_be_disabled()
    # And another account: the page follows it.
    other = dev_account(OTHER).address
    page.tab.get_by_test_id("switch-chain").click()
    page.tab.evaluate(f"window.__wallet.setAccount('{other}')")
    expect(page.tab.get_by_test_id("account-address")).to_have_attribute("title", other)


# A second wallet, announced through EIP-6963 too, whose user refuses every request.
REFUSING_WALLET_JS = """
(() => {
  const provider = {
    async request() { throw Object.assign(new Error("User rejected the request."), { code: 4001 }); },
    on() {}, removeListener() {},
  };
  const info = Object.freeze({ uuid: "9b1c7e52-7f3e-4c8e-a1a4-2f5e0d9c8b77", name: "Other Wallet",
    icon: "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E", rdns: "org.example.other" });
  const announce = () =>
    window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail: Object.freeze({ info, provider }) }));
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
})();
"""


def test_several_wallets_are_offered_by_name_and_a_refusal_is_plain(open_page: Any) -> None:
    page = open_page(on_chain=True, extra_script=REFUSING_WALLET_JS)
    page.tab.get_by_test_id("connect").click()
    choice = page.tab.locator("#wallet-choice button")
    expect(choice).to_have_count(2)
    expect(choice).to_have_text(["Test Wallet", "Other Wallet"])
    choice.nth(1).click()
    expect(page.tab.locator("#txs li").first).to_have_text("note wallet: cancelled in the wallet")
    expect(page.tab.get_by_test_id("account-address")).to_have_count(0)
    page.tab.get_by_test_id("connect").click()
    page.tab.locator("#wallet-choice button", has_text="Test Wallet").click()
    expect(page.tab.get_by_test_id("account-address")).to_have_attribute("title", page.address)
    expect(page.tab.get_by_test_id("wrong-chain")).to_have_count(0)


def test_deposit_open_long_and_see_the_liquidation_price(open_page: Any, protocol: World) -> None:
    bw = protocol.bw
    seed_pool(protocol)
    page = open_page()
    page.connect()

    page.submit("deposit-form", "deposit-amount", "1000")
    page.expect_confirmed("deposit")
    assert int(bw.token.functions.allowance(page.address, bw.ch.address).call()) == 0
    margin = int(bw.ch.functions.marginOf(page.address).call())
    assert margin == 1000 * WAD
    page.expect_value(page.stat("margin"), margin)
    expect(page.stat("margin")).to_have_text("1,000.00")

    page.tab.locator("#side-long").click()
    page.submit("trade-form", "trade-size", "2.5")
    page.expect_confirmed("trade ETH-USD")
    size = int(bw.ch.functions.positionOf(page.address, 0).call()[0])
    assert size == 5 * WAD // 2

    view = status.account(bw, page.address)
    (pos,) = view.positions
    row = page.tab.locator("tr[data-position='ETH-USD']")
    page.wait_block(bw.w3.eth.block_number)
    page.expect_value(row.locator("td.size"), pos.size)
    expect(row.locator("td.size")).to_have_text("2.5 ETH")
    page.expect_value(row.locator("td.entry"), pos.entry_price)
    expect(row.locator("td.entry")).to_have_text(fmt(pos.entry_price))
    page.expect_value(row.locator("td.liq"), pos.liquidation_price or 0)
    expect(row.locator("td.liq")).to_have_text(fmt(pos.liquidation_price))
    page.expect_value(row.locator("td.upnl"), pos.upnl)
    page.expect_value(row.locator("td.adl"), pos.adl.lights)
    page.expect_value(page.stat("equity"), view.equity)
    page.expect_value(page.stat("margin-ratio"), view.margin_ratio or 0)
    page.expect_value(page.stat("leverage"), view.leverage or 0)
    expect(page.stat("leverage")).to_have_text(f"{fmt(view.leverage)}x")
    expect(
        page.tab.get_by_test_id("history").locator("li[data-event='PositionChanged']")
    ).to_have_count(1)
    page.shot("position")

    # In profit, the long enters the ADL queue: first of one, five lights, as `bulwark account`.
    protocol.set_price("ETH-USD", 3100)
    page.wait_block(bw.w3.eth.block_number)
    (pos,) = status.account(bw, page.address).positions
    assert pos.adl.rank == 1 and pos.adl.lights == 5
    page.expect_value(row.locator("td.adl"), 5)
    expect(row.locator("td.adl")).to_contain_text("1 of 1")
    page.expect_value(row.locator("td.upnl"), pos.upnl)
    page.expect_value(row.locator("td.liq"), pos.liquidation_price or 0)

    # Reduce by half with the other side, then close from the position's row.
    page.tab.locator("#side-short").click()
    expect(page.tab.locator("#trade-submit")).to_contain_text("reduces your long")
    page.submit("trade-form", "trade-size", "1.25")
    page.expect_confirmed("trade ETH-USD")
    page.expect_value(row.locator("td.size"), 5 * WAD // 4)
    page.act(row.locator("button[data-close]"))
    expect(page.tab.get_by_test_id("no-positions")).to_be_visible(timeout=TIMEOUT_MS)
    assert int(bw.ch.functions.positionOf(page.address, 0).call()[0]) == 0

    # Withdraw everything: `max` fills the free margin rounded down to token units.
    page.tab.locator(".max[data-max='withdraw']").click()
    free = status.account(bw, page.address).free_margin
    before = int(bw.ch.functions.marginOf(page.address).call())
    assert page.tab.locator("#withdraw-amount").input_value() == render.units.format_units(
        free // bw.token_scale, 6
    )
    page.act(page.tab.locator("#withdraw-submit"))
    page.expect_confirmed("withdraw")
    withdrawn = free // bw.token_scale * bw.token_scale
    assert int(bw.ch.functions.marginOf(page.address).call()) == before - withdrawn


def test_a_crash_shows_the_liquidation_and_the_funds_payout(
    open_page: Any, protocol: World, anvil: AnvilNode, deployment_file: Path
) -> None:
    bw = protocol.bw
    seed_pool(protocol)
    protocol.stake(50_000)
    page = open_page()
    page.connect()
    page.submit("deposit-form", "deposit-amount", "1000")
    page.expect_confirmed("deposit")
    page.submit("trade-form", "trade-size", "3")  # 9,000 notional on 1,000: 9x
    page.expect_confirmed("trade ETH-USD")
    expect(page.tab.locator("tr[data-position='ETH-USD']")).to_be_visible()

    cli_run(anvil, deployment_file, "feed", "set", "ETH-USD", "2600", "--dev-account", "0")
    page.wait_block(bw.w3.eth.block_number)
    expect(page.stat("health")).to_have_text("liquidatable")
    fund_before = int(bw.fund.functions.assetsWad().call())

    receipt = bw.send(bw.ch.functions.liquidate(page.address, 0), protocol.keeper)
    settled = [
        dict(e["args"])
        for e in bw.ch.events.ShortfallSettled().process_receipt(receipt, errors=DISCARD)
        if e["args"]["account"] == page.address
    ]
    assert settled and settled[0]["coveredWad"] > 0
    covered = int(settled[0]["coveredWad"])
    page.wait_block(bw.w3.eth.block_number)
    history = page.tab.get_by_test_id("history")
    expect(history.locator("li[data-event='PositionLiquidated']")).to_have_count(1)
    expect(history.locator("li[data-event='Liquidated']")).to_contain_text("bankrupt")
    expect(history.get_by_test_id("fund-paid")).to_have_text(fmt(covered))
    expect(page.tab.get_by_test_id("payouts").locator("li").first).to_contain_text(fmt(covered))
    fund_after = int(bw.fund.functions.assetsWad().call())
    assert fund_after < fund_before
    page.expect_value(page.stat("fund-assets"), fund_after)
    expect(page.stat("fund-assets")).to_have_text(fmt(fund_after))
    expect(page.tab.get_by_test_id("no-positions")).to_be_visible()
    page.expect_value(page.stat("margin"), int(bw.ch.functions.marginOf(page.address).call()))
    page.shot("liquidated")


def test_bad_debt_the_adl_queue_and_a_haircut_are_shown(open_page: Any, protocol: World) -> None:
    bw = protocol.bw
    book = adl_book(protocol)  # dev account 4 went bankrupt long; 5, 6 and 7 hold profitable shorts
    first = book.shorts[0]  # 2 ETH short on 500 USDC: the highest score
    page = open_page(account=OTHER, on_chain=True)
    assert page.address == first.address
    page.tab.get_by_test_id("connect").click()
    expect(page.tab.get_by_test_id("bad-debt")).to_contain_text(fmt(book.debt))
    debt_cell = page.tab.locator("#markets tr[data-market='ETH-USD'] td.num").last
    page.expect_value(debt_cell, book.debt)
    view = status.account(bw, first.address)
    (pos,) = view.positions
    assert pos.adl.rank == 1 and pos.adl.queue_length == 3
    row = page.tab.locator("tr[data-position='ETH-USD']")
    page.expect_value(row.locator("td.adl"), pos.adl.lights)
    expect(row.locator("td.adl")).to_contain_text("1 of 3")
    page.shot("adl-queue")

    addrs = [t.address for t in book.shorts]
    scores = bw.ch.functions.adlScoresOf(0, addrs).call()
    order = rm.rank_adl(dict(zip(addrs, [int(x) for x in scores], strict=True)))
    receipt = bw.send(bw.ch.functions.autoDeleverage(0, order), protocol.keeper)
    steps = [
        dict(e["args"])
        for e in bw.ch.events.AutoDeleveraged().process_receipt(receipt, errors=DISCARD)
        if e["args"]["account"] == first.address
    ]
    assert len(steps) == 1
    history = page.tab.get_by_test_id("history")
    expect(history.locator("li[data-event='AutoDeleveraged']")).to_contain_text(
        f"haircut {fmt(steps[0]['haircutWad'])}"
    )
    expect(page.tab.get_by_test_id("bad-debt")).to_have_count(0)
    page.expect_value(page.stat("margin"), int(bw.ch.functions.marginOf(first.address).call()))


def test_an_lp_deposit_is_locked_and_a_withdrawal_shows_why(
    open_page: Any, protocol: World
) -> None:
    bw = protocol.bw
    page = open_page(account=OTHER)
    page.connect()
    page.submit("pool-deposit-form", "pool-deposit-amount", "5000")
    page.expect_confirmed("pool deposit")
    shares = int(bw.pool.functions.balanceOf(page.address).call())
    until = int(bw.pool.functions.lockedUntil(page.address).call())
    assert shares > 0
    page.expect_value(page.stat("pool-shares"), shares)
    page.expect_value(page.stat("pool-lock"), until)
    expect(page.stat("pool-lock")).to_contain_text(render.when(until))
    page.expect_value(page.stat("pool-max-withdraw"), 0)
    page.expect_value(
        page.stat("pool-value"), int(bw.pool.functions.convertToAssets(shares).call())
    )
    # Exits are priced at min(pool equity, pool margin): the page shows what the shares pay.
    page.expect_value(
        page.stat("pool-exit-value"), int(bw.pool.functions.previewRedeem(shares).call())
    )

    page.submit("pool-withdraw-form", "pool-withdraw-amount", "100")
    shown = page.expect_failed("pool withdraw")
    with pytest.raises(TxReverted) as info:
        bw.call(
            bw.pool.functions.withdraw(100 * USDC, page.address, page.address),
            action="pool withdraw",
            call_params={"from": page.address},
        )
    assert info.value.error.name == "PoolSharesLocked"
    assert shown == render.revert_message(info.value, 6)

    # A trader's unrealised loss is the pool's equity, not yet its margin: exits pay the lower.
    trader = dev_account(TRADER)
    protocol.fund_trader(trader, 1000)
    protocol.trade(trader, "ETH-USD", 1)
    protocol.set_price("ETH-USD", 2900)
    page.wait_block(bw.w3.eth.block_number)
    value = int(bw.pool.functions.convertToAssets(shares).call())
    exit_value = int(bw.pool.functions.previewRedeem(shares).call())
    assert exit_value < value
    page.expect_value(page.stat("pool-value"), value)
    page.expect_value(page.stat("pool-exit-value"), exit_value)
    expect(page.stat("pool-exit-value")).to_contain_text(
        "lower of the pool's equity and its margin"
    )
    page.shot("pool-locked")
    protocol.trade(trader, "ETH-USD", -1)  # the loss realised: margin and equity agree again
    exit_value = int(bw.pool.functions.previewRedeem(shares).call())
    assert exit_value == int(bw.pool.functions.convertToAssets(shares).call())
    page.wait_block(bw.w3.eth.block_number)
    page.expect_value(page.stat("pool-exit-value"), exit_value)
    expect(page.stat("pool-exit-value")).not_to_contain_text("lower")

    # Past the lock, `max` withdraws what the pool says it pays, rounded down to token units.
    protocol.mine(until + 1)  # past the lock
    most = int(bw.pool.functions.maxWithdraw(page.address).call())
    assert most > 0
    page.expect_value(page.stat("pool-max-withdraw"), most)
    expect(page.stat("pool-lock")).to_have_text("unlocked")
    page.tab.locator(".max[data-max='pool-withdraw']").click()
    assert page.tab.locator("#pool-withdraw-amount").input_value() == render.units.format_units(
        most, 6
    )
    assert int(bw.pool.functions.maxRedeem(page.address).call()) == shares
    wallet_before = int(bw.token.functions.balanceOf(page.address).call())
    page.act(page.tab.locator("#pool-withdraw-submit"))
    page.expect_confirmed("pool withdraw")
    assert int(bw.token.functions.balanceOf(page.address).call()) == wallet_before + most
    # Every share could leave, so `max` redeemed them all: no dust of shares stays behind.
    assert int(bw.pool.functions.balanceOf(page.address).call()) == 0
    page.expect_value(page.stat("pool-shares"), 0)


def test_stake_request_wait_and_claim(open_page: Any, protocol: World) -> None:
    """Two requests: one claimed inside its claim window, one left to lapse and returned to staked."""
    bw = protocol.bw
    f = bw.fund.functions
    page = open_page(account=OTHER)
    page.connect()
    page.submit("stake-form", "stake-amount", "2000")
    page.expect_confirmed("fund stake")
    shares = int(f.balanceOf(page.address).call())
    page.expect_value(page.stat("fund-shares"), shares)
    decimals = int(f.decimals().call())

    # Half the shares, typed; then the rest with `all`.
    half = shares // 2
    page.submit("unstake-form", "unstake-shares", render.units.format_units(half, decimals))
    page.expect_confirmed("unstake request")
    page.expect_value(page.stat("fund-shares"), shares - half)
    page.tab.locator(".max[data-max='unstake']").click()
    page.act(page.tab.locator("#unstake-submit"))
    page.expect_confirmed("unstake request")
    first, second = status.unstake_requests(bw, page.address)
    assert (first.shares, second.shares) == (half, shares - half)
    owner, ready_at, window, req_shares, at_request = f.unstakeRequest(first.request_id).call()
    assert owner == page.address and req_shares == half and window > 0
    claim_until = ready_at + window
    assert first.claim_until == claim_until

    # The fund panel: what open requests reserve, and the free assets that back payouts.
    page.wait_block(bw.w3.eth.block_number)
    page.expect_value(page.stat("fund-reserved"), int(f.reservedAssets().call()))
    page.expect_value(page.stat("fund-free"), int(f.freeAssetsWad().call()))
    expect(page.stat("fund-free")).to_have_text(fmt(int(f.freeAssetsWad().call())))
    page.expect_value(page.stat("fund-claim-window"), window)

    row = page.tab.locator(f"tr[data-request='{first.request_id}']")
    state = row.get_by_test_id("request-state")
    page.expect_value(row.locator("td.pays"), int(f.claimable(first.request_id).call()))
    expect(state).to_have_attribute("data-state", "cooldown")
    expect(state).to_contain_text(f"in cooldown until {render.when(ready_at)}")
    expect(state).to_contain_text(f"then claimable until {render.when(claim_until)}")
    expect(row.locator("button[data-claim]")).to_be_disabled()
    expect(row.locator("button[data-lapse]")).to_have_count(0)
    page.shot("unstake-cooldown")

    # At the end of the cooldown the request is claimable until its window ends.
    assert protocol.mine(ready_at) == ready_at
    expect(state).to_have_attribute("data-state", "claimable")
    expect(state).to_have_text(
        re.compile(rf"^claimable until {re.escape(render.when(claim_until))}")
    )
    pays = int(f.claimable(first.request_id).call())
    assert pays == min(at_request, int(f.convertToAssets(req_shares).call()))
    page.expect_value(row.locator("td.pays"), pays)
    wallet_before = int(bw.token.functions.balanceOf(page.address).call())
    page.act(row.locator("button[data-claim]"))
    page.expect_confirmed("claim")
    paid = int(bw.token.functions.balanceOf(page.address).call()) - wallet_before
    assert paid == pays
    expect(row).to_have_count(0)
    page.expect_value(page.stat("wallet"), wallet_before + paid)

    # The second request, left unclaimed past its window: lapsed, no Claim, a Lapse.
    row = page.tab.locator(f"tr[data-request='{second.request_id}']")
    state = row.get_by_test_id("request-state")
    assert protocol.mine(second.claim_until) == second.claim_until
    expect(state).to_have_attribute("data-state", "lapsed")
    expect(state).to_contain_text(f"lapsed {render.when(second.claim_until)}")
    expect(row.locator("button[data-claim]")).to_have_count(0)
    page.expect_value(row.locator("td.pays"), 0)
    with pytest.raises(TxReverted) as info:
        bw.call(f.claim(second.request_id), action="claim", call_params={"from": page.address})
    assert info.value.error.name == "FundClaimWindowPassed"
    page.shot("unstake-lapsed")
    staked = int(f.balanceOf(page.address).call())
    assert staked == 0
    page.act(row.locator("button[data-lapse]"))
    page.expect_confirmed("lapse")
    assert int(f.balanceOf(page.address).call()) == shares - half
    assert int(f.unstakeRequest(second.request_id).call()[0], 16) == 0
    expect(row).to_have_count(0)
    page.expect_value(page.stat("fund-shares"), shares - half)
    page.expect_value(page.stat("fund-reserved"), int(f.reservedAssets().call()))


def test_too_much_leverage_shows_the_clis_plain_message(open_page: Any, protocol: World) -> None:
    bw = protocol.bw
    seed_pool(protocol)
    trader = dev_account(TRADER)
    protocol.fund_trader(trader, 100)
    page = open_page(on_chain=True)
    page.tab.get_by_test_id("connect").click()
    page.expect_value(page.stat("margin"), 100 * WAD)

    page.submit("trade-form", "trade-size", "10")  # 30,000 notional on 100
    shown = page.expect_failed("trade ETH-USD")
    price = protocol.price_wad("ETH-USD")
    with pytest.raises(TxReverted) as info:
        bw.call(
            bw.ch.functions.trade(0, 10 * WAD, price * 101 // 100),
            action="trade ETH-USD",
            call_params={"from": trader.address},
        )
    assert info.value.error.name == "TradeMarginInsufficient"
    assert shown == render.revert_message(info.value, 6)
    assert "deposit more" in shown
    expect(page.tab.get_by_test_id("trade-status")).to_have_text("failed " + shown)
    assert int(bw.ch.functions.positionOf(trader.address, 0).call()[0]) == 0
    page.shot("revert")

    # An amount finer than the token's units is refused before the wallet is asked.
    page.submit("deposit-form", "deposit-amount", "1.0000001")
    assert "more than 6 decimal places" in page.expect_failed("deposit")


def test_a_position_below_the_minimum_is_refused_in_the_clis_words(
    open_page: Any, protocol: World
) -> None:
    bw = protocol.bw
    seed_pool(protocol)
    trader = dev_account(TRADER)
    protocol.fund_trader(trader, 1000)
    page = open_page(on_chain=True)
    page.tab.get_by_test_id("connect").click()
    page.expect_value(page.stat("margin"), 1000 * WAD)
    config = rm.MarketConfig.from_tuple(bw.ch.functions.marketConfig(0).call())
    minimum = config.min_position_notional
    assert minimum > 0
    cell = page.tab.locator("#markets tr[data-market='ETH-USD'] td.min-position")
    page.expect_value(cell, minimum)
    expect(cell).to_have_text(fmt(minimum))
    page.expect_value(page.tab.get_by_test_id("trade-minimum"), minimum)

    price = protocol.price_wad("ETH-USD")
    small = (minimum * WAD // price) // (10**14) * 10**14 // 2  # half the minimum, 0.0001 steps
    assert 0 < rm.notional(small, price) < minimum
    text = render.units.format_units(small, 18)

    def expected(size: int) -> str:
        with pytest.raises(TxReverted) as info:
            bw.call(
                bw.ch.functions.trade(0, size, price * 2 if size > 0 else 1),
                action="trade ETH-USD",
                call_params={"from": trader.address},
            )
        assert info.value.error.name == "TradePositionBelowMinimum"
        return render.revert_message(info.value, 6)

    # Opening below the minimum: refused in the form, the wallet never asked to send.
    page.tab.locator("#trade-size").fill(text)
    expect(page.tab.get_by_test_id("trade-leaves")).to_contain_text("below the minimum")
    page.act(page.tab.locator("#trade-submit"))
    shown = page.expect_failed("trade ETH-USD")
    assert shown == expected(small)
    assert "at least the market's minimum notional" in shown
    assert page.wallet_log("eth_sendTransaction") == []
    page.shot("below-minimum")

    # A position at the minimum opens; reducing it below the minimum is refused; closing works.
    size = small * 4
    assert rm.notional(size, price) >= minimum
    page.submit("trade-form", "trade-size", render.units.format_units(size, 18))
    page.expect_confirmed("trade ETH-USD")
    page.tab.locator("#side-short").click()
    page.submit("trade-form", "trade-size", render.units.format_units(size - small, 18))
    shown = page.expect_failed("trade ETH-USD")
    assert shown == expected(-(size - small))
    assert int(bw.ch.functions.positionOf(trader.address, 0).call()[0]) == size
    row = page.tab.locator("tr[data-position='ETH-USD']")
    page.act(row.locator("button[data-close]"))
    page.expect_confirmed("trade ETH-USD")
    assert int(bw.ch.functions.positionOf(trader.address, 0).call()[0]) == 0


def test_the_pages_arithmetic_matches_the_clis(open_page: Any) -> None:
    """Differential: the page's formatting and liquidation price against bulwark.core.units and
    bulwark.keeper.status on the same random integers, ties of half-even rounding included."""
    page = open_page()
    rng = random.Random(14)
    formats: list[dict[str, Any]] = []
    for _ in range(600):
        decimals = rng.choice([0, 2, 6, 8, 18])
        places = rng.choice([None, 0, 2, 4, 6])
        value = rng.choice([0, 1, -1, rng.randint(-(10**9), 10**9), rng.randint(-(10**40), 10**40)])
        if places is not None and places < decimals and rng.random() < 0.4:
            step = 10 ** (decimals - places)
            value = rng.randint(-(10**6), 10**6) * step + step // 2  # an exact tie
        formats.append(
            {
                "v": str(value),
                "d": decimals,
                "p": places,
                "g": rng.random() < 0.5,
                "s": rng.random() < 0.5,
            }
        )
    shown = page.tab.evaluate(
        "cases => cases.map(c => window.bulwarkMath.formatUnits(BigInt(c.v), c.d, c.p, "
        "{ group: c.g, sign: c.s }))",
        formats,
    )
    expected = [
        render.units.format_units(int(c["v"]), c["d"], c["p"], group=c["g"], sign=c["s"])
        for c in formats
    ]
    assert shown == expected

    prices: list[dict[str, str]] = []
    for _ in range(400):
        prices.append(
            {
                "size": str(rng.choice([1, -1]) * rng.randint(1, 10**24)),
                "price": str(rng.randint(1, 10**23)),
                "equity": str(rng.randint(-(10**24), 10**25)),
                "mm": str(rng.randint(0, 10**24)),
                "ratio": str(rng.randint(0, WAD // 10)),
            }
        )
    js = page.tab.evaluate(
        "cases => cases.map(c => { const r = window.bulwarkMath.liquidationPrice(BigInt(c.size), "
        "BigInt(c.price), BigInt(c.equity), BigInt(c.mm), BigInt(c.ratio)); "
        "return r === null ? null : r.toString(); })",
        prices,
    )
    py = [
        status.liquidation_price(
            int(c["size"]), int(c["price"]), int(c["equity"]), int(c["mm"]), int(c["ratio"])
        )
        for c in prices
    ]
    assert [None if v is None else int(v) for v in js] == py
    assert sum(v is not None for v in py) > 100


def test_a_stale_feed_is_shown_and_a_fresh_price_clears_it(
    open_page: Any, protocol: World, anvil: AnvilNode, deployment_file: Path
) -> None:
    bw = protocol.bw
    seed_pool(protocol)
    protocol.fund_trader(dev_account(TRADER), 1000)
    page = open_page(on_chain=True)
    page.tab.get_by_test_id("connect").click()
    expect(page.tab.get_by_test_id("stale-ETH-USD")).to_have_count(0)
    protocol.warp(2 * 3600)  # past the one-hour heartbeat; mines a block
    banner = page.tab.get_by_test_id("stale-ETH-USD")
    expect(banner).to_contain_text("older than its heartbeat (1h 0m)")
    expect(banner).to_contain_text("bulwark feed set ETH-USD PRICE")

    page.submit("trade-form", "trade-size", "1")
    shown = page.expect_failed("trade ETH-USD")
    with pytest.raises(TxReverted) as info:
        bw.call(bw.oracle.functions.priceWad(0), action="price of ETH-USD")
    assert info.value.error.name == "OracleStalePrice"
    assert shown == "trade ETH-USD: " + render.revert_message(info.value, 6)
    page.shot("stale")

    cli_run(anvil, deployment_file, "feed", "set", "ETH-USD", "3000", "--dev-account", "0")
    expect(banner).to_have_count(0)
    page.submit("trade-form", "trade-size", "1")
    page.expect_confirmed("trade ETH-USD")


# ---------------------------------------------------------------------------- the commands


def _get(url: str) -> tuple[int, bytes, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read(), reply.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def test_bulwark_web_serves_the_page_and_the_deployments_config(
    anvil: AnvilNode, deployment_file: Path, bw: Bulwark, w3: Web3
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulwark.cli", "web", "--port", "0",
         "--rpc", anvil.rpc_url, "--deployment", str(deployment_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("BULWARK_")},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert match, line + (proc.stderr.read() if proc.stderr else "")
        url = match.group(1)
        code, body, headers = _get(url + "config.json")
        assert code == 200
        config = json.loads(body)
        assert config["chainId"] == w3.eth.chain_id
        assert config["rpcUrl"] == anvil.rpc_url
        assert config["contracts"] == bw.deployment.contracts
        assert config["collateral"] == {
            "address": bw.token.address,
            "decimals": 6,
            "symbol": "mUSDC",
        }
        assert config["abis"]["ClearingHouse"] == bw.artifacts["ClearingHouse"]["abi"]
        assert config["words"]["hints"] == render._HINTS
        names = {e["name"] for e in config["errors"]}
        assert {"TradeMarginInsufficient", "PoolSharesLocked", "ERC20InsufficientBalance"} <= names
        assert (
            "connect-src 'self' " + anvil.rpc_url.rstrip("/") in headers["Content-Security-Policy"]
        )
        code, body, _ = _get(url)
        assert code == 200 and b"/app.js" in body
        code, body, _ = _get(url + "app.js")
        assert code == 200 and len(body) > 10_000
        assert _get(url + "../pyproject.toml")[0] == 404
        assert _get(url + "dist/app.js")[0] == 404
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 0


def test_a_node_that_went_away_is_shown_on_the_page(
    browser: Any, bw: Bulwark, anvil: AnvilNode
) -> None:
    config = page_config(bw, anvil.rpc_url, bw.artifacts)
    dead = "http://127.0.0.1:1"
    server = PageServer(0, web_dir(), {**config, "rpcUrl": dead})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(server.url)
        expect(tab.get_by_test_id("node-error")).to_contain_text(
            f"cannot read Bulwark from {dead}", timeout=TIMEOUT_MS
        )
        expect(tab.get_by_test_id("connect")).to_have_text("No wallet found")
    finally:
        context.close()
        server.shutdown()
        server.server_close()


def test_bulwark_web_without_a_node_says_so_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_cli_env(monkeypatch)
    assert cli.main(["web", "--port", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a running node" in err[0]
    assert cli.main(["web", "--port", "0", "--rpc", "http://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bulwark: error: cannot reach the node at http://127.0.0.1:1: ConnectionError"]


def test_bulwark_node_deploy_web_starts_chain_and_page(tmp_path: Path) -> None:
    deployment = tmp_path / "d.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulwark.cli", "node", "--port", "0", "--deploy", "--web", "0",
         "--deployment", str(deployment)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("BULWARK_")},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            found = re.search(r"trading page: (http://127\.0\.0\.1:\d+/)", line)
            if found:
                url = found.group(1)
                break
        assert url, proc.stderr.read() if proc.stderr else ""
        config = json.loads(_get(url + "config.json")[1])
        assert config["contracts"] == json.loads(deployment.read_text())["contracts"]
        assert config["chainId"] == 31337
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
