"""Deploying Bulwark: every contract, wired and configured, and the deployment file.

On a local chain (and on any test network unless real addresses are given) the collateral is a mock
6-decimal USDC and each market's price comes from a mock Chainlink aggregator the deployer feeds.
The default parameters are documented in docs/parameters.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import rlp
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3

from bulwark.chain.contracts import (
    LOCAL_CHAIN_IDS,
    WAD,
    BulwarkError,
    Deployment,
    ErrorDecoder,
    MarketInfo,
    dev_account,
)
from bulwark.chain.sender import Endpoint, TxSender
from bulwark.devnet import compiler

FEED_DECIMALS = 8
DEV_ACCOUNTS = 10
DEV_MINT_TOKENS = 1_000_000
# The keeper account of the local examples (README, docs/keeper.md): on a local chain it receives the
# ADL keeper role unless other ADL keepers are named.
LOCAL_ADL_KEEPERS = (3,)
ADL_KEEPER_ROLE = "ADL_KEEPER_ROLE"


def create_address(deployer: str, nonce: int) -> str:
    """The address of the contract that `deployer`'s transaction with `nonce` creates (CREATE):
    the last 20 bytes of keccak(rlp([deployer, nonce]))."""
    sender = bytes.fromhex(to_checksum_address(deployer)[2:])
    return to_checksum_address(keccak(rlp.encode([sender, nonce]))[12:])


def role(name: str) -> bytes:
    return keccak(text=name)


@dataclass(frozen=True)
class MarketParams:
    name: str
    initial_price: str  # human units, e.g. "3000"
    im_ratio: int = WAD // 20  # 5%: up to 20x
    mm_ratio: int = WAD // 40  # 2.5%
    taker_fee: int = 5 * WAD // 10_000  # 0.05%
    penalty_ratio: int = WAD // 100  # 1% of the closed notional
    partial_fraction: int = WAD // 2  # a partial liquidation closes half
    max_funding_rate_per_day: int = 3 * WAD // 1000  # 0.3% a day at full skew
    skew_scale: int = 10_000 * WAD  # base units
    max_open_interest: int = 100_000 * WAD  # base units per side
    min_partial_notional: int = 10_000 * WAD  # quote
    # quote; at least reward_floor / mm_ratio (200 here) so the smallest position's maintenance
    # margin pays the keeper's floor from the account itself
    min_position_notional: int = 250 * WAD
    heartbeat: int = 3600

    def config_tuple(self) -> tuple[int, ...]:
        return (
            self.im_ratio,
            self.mm_ratio,
            self.taker_fee,
            self.penalty_ratio,
            self.partial_fraction,
            self.max_funding_rate_per_day,
            self.skew_scale,
            self.max_open_interest,
            self.min_partial_notional,
            self.min_position_notional,
        )


@dataclass(frozen=True)
class DeployParams:
    markets: Sequence[MarketParams] = (
        MarketParams("ETH-USD", "3000", skew_scale=10_000 * WAD, max_open_interest=100_000 * WAD),
        MarketParams("BTC-USD", "60000", skew_scale=500 * WAD, max_open_interest=5_000 * WAD),
    )
    fund_fee_share: int = WAD // 5  # 20% of taker fees to the insurance fund
    pool_exposure_multiple: int = 3 * WAD  # |pool size| x price <= 3 x pool equity
    keeper_share: int = WAD // 5  # 20% of the penalty
    reward_floor: int = 5 * WAD  # $5
    reward_ceiling: int = 1_000 * WAD  # $1,000
    socialize_grace_period: int = 24 * 3600
    pool_cooldown: int = 4 * 24 * 3600  # as Hyperliquid's HLP
    fund_cooldown: int = 7 * 24 * 3600
    fund_window: int = 24 * 3600
    fund_window_cap_ratio: int = WAD // 2  # at most half the fund per day
    fund_cap_tokens: int = 10_000_000  # human units
    extra: Mapping[str, Any] = field(default_factory=dict)

    def risk_tuple(self) -> tuple[int, ...]:
        return (
            self.fund_fee_share,
            self.pool_exposure_multiple,
            self.keeper_share,
            self.socialize_grace_period,
            self.reward_floor,
            self.reward_ceiling,
        )


class Deployer:
    """Deploys and configures contracts from one signer, each transaction sent and waited for by
    the one sender (:meth:`bulwark.chain.sender.TxSender.transact`)."""

    def __init__(
        self,
        w3: Web3,
        signer: LocalAccount,
        artifacts: Mapping[str, Any] | None = None,
        on_sent: Callable[[str], None] | None = None,
    ):
        self.w3 = w3
        self.signer = signer
        self.on_sent = on_sent  # told the action of each transaction once it is mined
        self.artifacts = dict(
            artifacts if artifacts is not None else compiler.deployable_artifacts()
        )
        self.sender = TxSender(
            Endpoint(w3, ErrorDecoder.from_artifacts(self.artifacts)), signer, log_sends=False
        )
        self.gas_used: dict[str, int] = {}

    def deploy(self, name: str, *args: Any, libraries: Mapping[str, str] | None = None) -> str:
        art = self.artifacts[name]
        bytecode = link(art["bytecode"], art.get("linkReferences") or {}, libraries or {})
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=bytecode)
        receipt = self._send(factory.constructor(*args), f"deploy {name}")
        address = receipt["contractAddress"]
        if not address:
            raise BulwarkError(f"deploying {name} produced no contract")
        return to_checksum_address(address)

    def next_nonce(self) -> int:
        """The nonce of this signer's next transaction: each is waited for, so none is in flight."""
        return int(self.w3.eth.get_transaction_count(self.signer.address, "pending"))

    def transact(self, name: str, address: str, method: str, *args: Any) -> Any:
        contract = self.w3.eth.contract(
            address=to_checksum_address(address), abi=self.artifacts[name]["abi"]
        )
        return self._send(getattr(contract.functions, method)(*args), f"{name}.{method}")

    def _send(self, fn: Any, action: str) -> Any:
        receipt = self.sender.transact(fn, action=action, timeout=180)
        self.gas_used[action] = receipt["gasUsed"]
        if self.on_sent is not None:
            self.on_sent(action)
        return receipt


def link(
    bytecode: str, link_references: Mapping[str, Mapping[str, Any]], libraries: Mapping[str, str]
) -> str:
    """Writes library addresses into the placeholders solc left in `bytecode`."""
    code = bytecode[2:] if bytecode.startswith("0x") else bytecode
    for _source, libs in link_references.items():
        for lib, spots in libs.items():
            if lib not in libraries:
                raise BulwarkError(f"bytecode needs library {lib}, which was not deployed")
            address = libraries[lib].lower().removeprefix("0x")
            for spot in spots:
                start = int(spot["start"]) * 2
                code = code[:start] + address + code[start + 40 :]
    return "0x" + code


def _to_units(human: str, decimals: int) -> int:
    from decimal import Decimal

    return int(Decimal(human) * (10**decimals))


def deploy_all(
    w3: Web3,
    signer: LocalAccount,
    params: DeployParams | None = None,
    *,
    collateral: str | None = None,
    feeds: Mapping[str, str] | None = None,
    mint_dev_accounts: bool | None = None,
    adl_keepers: Sequence[str] | None = None,
    on_sent: Callable[[str], None] | None = None,
) -> Deployment:
    """Deploys and wires every contract; returns the deployment (not yet saved). `on_sent` is told
    each transaction's action once it is mined (the command line's progress).

    `autoDeleverage` is restricted to ADL_KEEPER_ROLE: the deployer holds it, and so does every address
    in `adl_keepers` (by default, on a local chain, the dev account the examples run the keeper as)."""
    params = params or DeployParams()
    chain_id = w3.eth.chain_id
    local = chain_id in LOCAL_CHAIN_IDS
    d = Deployer(w3, signer, on_sent=on_sent)
    admin = signer.address
    start_block = w3.eth.block_number

    token = collateral or d.deploy("MockUSDC", admin)
    decimals = int(
        w3.eth.contract(address=to_checksum_address(token), abi=d.artifacts["MockUSDC"]["abi"])
        .functions.decimals()
        .call()
    )
    oracle = d.deploy("OracleAdapter", admin)
    d.transact("OracleAdapter", oracle, "grantRole", role("RISK_ADMIN_ROLE"), admin)
    libraries = {name: d.deploy(name) for name in ("AdlLogic", "LiquidationLogic", "TradeLogic")}
    # The clearing house holds the pool's and the fund's addresses for good (the fund's immutable):
    # they are the addresses of the deployer's next two creations, and each constructor checks that
    # the clearing house names it.
    nonce = d.next_nonce()
    pool_at, fund_at = create_address(admin, nonce + 1), create_address(admin, nonce + 2)
    ch = d.deploy(
        "ClearingHouse",
        token,
        oracle,
        pool_at,
        fund_at,
        params.risk_tuple(),
        admin,
        libraries=libraries,
    )
    pool = d.deploy("LiquidityPool", token, ch, params.pool_cooldown, admin)
    fund = d.deploy(
        "InsuranceFund",
        token,
        ch,
        params.fund_cooldown,
        params.fund_window,
        params.fund_window_cap_ratio,
        params.fund_cap_tokens * 10**decimals,
        admin,  # treasury
        admin,
    )
    # The clearing house reads prices from its own copy of the feeds, which the adapter writes from
    # now on with every change (setFeed below included).
    d.transact("OracleAdapter", oracle, "bindClearingHouse", ch)
    for contract, address in (
        ("ClearingHouse", ch),
        ("LiquidityPool", pool),
        ("InsuranceFund", fund),
    ):
        d.transact(contract, address, "grantRole", role("RISK_ADMIN_ROLE"), admin)
    d.transact("ClearingHouse", ch, "grantRole", role("GUARDIAN_ROLE"), admin)
    if adl_keepers is None:
        adl_keepers = [dev_account(i).address for i in LOCAL_ADL_KEEPERS] if local else []
    for keeper in dict.fromkeys([admin, *adl_keepers]):
        d.transact(
            "ClearingHouse", ch, "grantRole", role(ADL_KEEPER_ROLE), to_checksum_address(keeper)
        )

    markets: dict[str, MarketInfo] = {}
    for market_id, m in enumerate(params.markets):
        feed = (feeds or {}).get(m.name)
        if feed is None:
            answer = _to_units(m.initial_price, FEED_DECIMALS)
            feed = d.deploy(
                "MockAggregator", FEED_DECIMALS, m.name.replace("-", " / "), answer, admin
            )
        zero = "0x0000000000000000000000000000000000000000"
        d.transact("OracleAdapter", oracle, "setFeed", market_id, feed, m.heartbeat, zero, 0, 0)
        d.transact("ClearingHouse", ch, "listMarket", m.name, m.config_tuple())
        markets[m.name] = MarketInfo(market_id, to_checksum_address(feed))

    if mint_dev_accounts if mint_dev_accounts is not None else (local and collateral is None):
        for i in range(DEV_ACCOUNTS):
            d.transact(
                "MockUSDC", token, "mint", dev_account(i).address, DEV_MINT_TOKENS * 10**decimals
            )

    return Deployment(
        chain_id=chain_id,
        deploy_block=start_block + 1,
        contracts={
            "Collateral": to_checksum_address(token),
            "OracleAdapter": oracle,
            **libraries,
            "ClearingHouse": ch,
            "LiquidityPool": pool,
            "InsuranceFund": fund,
        },
        markets=markets,
        collateral_decimals=decimals,
        local=local,
    )


# ---------------------------------------------------------------------------- a usable local market

SEED_POOL_ACCOUNT = 8  # Anvil dev account that seeds the liquidity pool on a local chain
SEED_FUND_ACCOUNT = 9  # and the one that makes the first insurance-fund stake
SEED_POOL_TOKENS = 500_000
SEED_FUND_TOKENS = 50_000


@dataclass(frozen=True)
class Seed:
    """What :func:`seed_local` put in: who, how much (human units), and the shares it got."""

    pool_account: str
    pool_tokens: int
    pool_shares: int
    fund_account: str
    fund_tokens: int
    fund_shares: int
    share_decimals: int


def seed_local(
    w3: Web3,
    deployment: Deployment,
    artifacts: Mapping[str, Any] | None = None,
    *,
    pool_tokens: int = SEED_POOL_TOKENS,
    fund_tokens: int = SEED_FUND_TOKENS,
) -> Seed:
    """Deposits into the pool and stakes in the fund from two dev accounts of a local chain.

    A fresh pool holds nothing, so its exposure cap (a multiple of its equity) refuses every trade;
    a first stake made before any fee reaches the fund prices its shares at one token each. The
    dev accounts hold mock USDC minted by :func:`deploy_all`.
    """
    if deployment.chain_id not in LOCAL_CHAIN_IDS:
        raise BulwarkError(
            "the pool and the fund are seeded from dev accounts on local chains only"
        )
    arts = dict(artifacts if artifacts is not None else compiler.deployable_artifacts())
    token = deployment.contracts["Collateral"]
    scale = 10**deployment.collateral_decimals
    shares: list[int] = []
    accounts: list[str] = []
    for index, contract, amount in (
        (SEED_POOL_ACCOUNT, "LiquidityPool", pool_tokens),
        (SEED_FUND_ACCOUNT, "InsuranceFund", fund_tokens),
    ):
        who = dev_account(index)
        target = deployment.contracts[contract]
        d = Deployer(w3, who, arts)
        d.transact("MockUSDC", token, "approve", target, amount * scale)
        d.transact(contract, target, "deposit", amount * scale, who.address)
        vault = w3.eth.contract(address=to_checksum_address(target), abi=arts[contract]["abi"])
        shares.append(int(vault.functions.balanceOf(who.address).call()))
        accounts.append(who.address)
    fund = w3.eth.contract(
        address=to_checksum_address(deployment.contracts["InsuranceFund"]),
        abi=arts["InsuranceFund"]["abi"],
    )
    return Seed(
        pool_account=accounts[0],
        pool_tokens=pool_tokens,
        pool_shares=shares[0],
        fund_account=accounts[1],
        fund_tokens=fund_tokens,
        fund_shares=shares[1],
        share_decimals=int(fund.functions.decimals().call()),
    )


def grant_adl_keeper(w3: Web3, admin: LocalAccount, deployment: Deployment, keeper: str) -> None:
    """Lets `keeper` call autoDeleverage (the admin holds the role's admin, the default admin role)."""
    ch = deployment.contracts["ClearingHouse"]
    d = Deployer(w3, admin, compiler.deployable_artifacts())
    d.transact("ClearingHouse", ch, "grantRole", role(ADL_KEEPER_ROLE), to_checksum_address(keeper))
