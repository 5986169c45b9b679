"""Roles and parameters: every parameter within hard bounds (ParamOutOfBounds with its arguments), each
change an event, role checks, market listing, and the two-step admin transfer."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import (
    config_tuple,
    configs,
    events,
    one_event,
    reverts,
    risk,
    set_fund_params,
    set_risk,
    tx,
)

from bulwark.chain.contracts import WAD
from bulwark.core import riskmath as rm
from bulwark.devnet.deploy import Deployer, DeployParams, create_address, role
from bulwark.devnet.world import World

ZERO = "0x0000000000000000000000000000000000000000"

MARKET_BOUNDS = [
    # (field in MarketConfig, bad value, solidity field name, min, max): max None = depends on another field
    ("im_ratio", WAD // 200 - 1, "imRatio", WAD // 200, WAD),
    ("im_ratio", WAD + 1, "imRatio", WAD // 200, WAD),
    ("mm_ratio", WAD // 20, "mmRatio", WAD // 400, WAD // 20 - 1),
    ("mm_ratio", WAD // 400 - 1, "mmRatio", WAD // 400, WAD // 20 - 1),
    ("taker_fee", WAD // 100 + 1, "takerFee", 0, WAD // 100),
    ("penalty_ratio", WAD // 40, "penaltyRatio", 0, WAD // 40 - 1),
    ("partial_fraction", WAD // 10 - 1, "partialFraction", WAD // 10, 9 * WAD // 10),
    ("partial_fraction", 9 * WAD // 10 + 1, "partialFraction", WAD // 10, 9 * WAD // 10),
    ("max_funding_rate_per_day", WAD // 10 + 1, "maxFundingRatePerDay", 0, WAD // 10),
    ("skew_scale", 10**15 - 1, "skewScale", 10**15, 10**36),
    ("max_open_interest", 0, "maxOpenInterest", 1, 2**96 - 1),
    ("min_partial_notional", 10**9 * WAD + 1, "minPartialNotional", 0, 10**9 * WAD),
    # at least rewardFloor / mmRatio = 5 / 2.5% = 200: the smallest position pays the keeper's floor
    ("min_position_notional", 200 * WAD - 1, "minPositionNotional", 200 * WAD, 10**9 * WAD),
    ("min_position_notional", 10**9 * WAD + 1, "minPositionNotional", 200 * WAD, 10**9 * WAD),
]

RISK_BOUNDS = [
    ("fund_fee_share", WAD + 1, "fundFeeShare", 0, WAD),
    ("pool_exposure_multiple", WAD // 10 - 1, "poolExposureMultiple", WAD // 10, 20 * WAD),
    ("keeper_share", WAD + 1, "keeperShare", 0, WAD),
    ("reward_ceiling", 10**6 * WAD + 1, "rewardCeiling", 0, 10**6 * WAD),
    ("reward_floor", 1_000 * WAD + 1, "rewardFloor", 0, 1_000 * WAD),
    ("socialize_grace_period", 3_599, "socializeGracePeriod", 3_600, 30 * 86_400),
    ("socialize_grace_period", 30 * 86_400 + 1, "socializeGracePeriod", 3_600, 30 * 86_400),
]


def test_market_params_out_of_bounds_revert_with_arguments(protocol: World) -> None:
    p = protocol
    base = configs(p)[0]
    for attr, bad, field, lo, hi in MARKET_BOUNDS:
        cfg = rm.MarketConfig(**{**base.__dict__, attr: bad})
        with reverts("ParamOutOfBounds", field=field, value=bad, minValue=lo, maxValue=hi):
            tx(p, p.bw.ch.functions.setMarketConfig(0, config_tuple(cfg)), p.admin)
        with reverts("ParamOutOfBounds", field=field):
            tx(p, p.bw.ch.functions.listMarket(f"X{attr}-USD", config_tuple(cfg)), p.admin)


def test_risk_params_out_of_bounds_revert_with_arguments(protocol: World) -> None:
    p = protocol
    for attr, bad, field, lo, hi in RISK_BOUNDS:
        with reverts("ParamOutOfBounds", field=field, value=bad, minValue=lo, maxValue=hi):
            set_risk(p, **{attr: bad})


def test_reward_floor_above_what_a_minimum_position_pays_reverts(protocol: World) -> None:
    p = protocol
    # 7 / 2.5% = 280 > the markets' 250: the smallest accepted position could not pay the floor
    with reverts(
        "ParamOutOfBounds", field="minPositionNotional", value=250 * WAD, minValue=280 * WAD
    ):
        set_risk(p, reward_floor=7 * WAD)


def test_parameter_changes_emit_events(protocol: World) -> None:
    p = protocol
    receipt = set_risk(p, keeper_share=WAD // 4, reward_floor=2 * WAD)
    ev = one_event(receipt, p.bw.ch, "RiskParamsUpdated")["params"]
    assert (ev["keeperShareWad"], ev["rewardFloorWad"]) == (WAD // 4, 2 * WAD)
    assert risk(p).keeper_share == WAD // 4
    cfg = rm.MarketConfig(**{**configs(p)[1].__dict__, "im_ratio": WAD // 10})
    receipt = tx(p, p.bw.ch.functions.setMarketConfig(1, config_tuple(cfg)), p.admin)
    ev = one_event(receipt, p.bw.ch, "MarketConfigured")
    assert ev["marketId"] == 1 and ev["config"]["imRatioWad"] == WAD // 10
    assert configs(p)[1] == cfg


def test_risk_and_guardian_roles_are_enforced(protocol: World) -> None:
    p = protocol
    ch, outsider = p.bw.ch, p.keeper
    cfg = config_tuple(configs(p)[0])
    with reverts(
        "AccessControlUnauthorizedAccount",
        account=outsider.address,
        neededRole=role("RISK_ADMIN_ROLE"),
    ):
        tx(p, ch.functions.setMarketConfig(0, cfg), outsider)
    with reverts("AccessControlUnauthorizedAccount", neededRole=role("RISK_ADMIN_ROLE")):
        tx(p, ch.functions.setRiskParams(tuple(risk(p).__dict__.values())), outsider)
    with reverts("AccessControlUnauthorizedAccount", neededRole=role("RISK_ADMIN_ROLE")):
        tx(p, ch.functions.listMarket("SOL-USD", cfg), outsider)
    with reverts(
        "AccessControlUnauthorizedAccount",
        account=outsider.address,
        neededRole=role("GUARDIAN_ROLE"),
    ):
        tx(p, ch.functions.setReduceOnly(True), outsider)
    with reverts("AccessControlUnauthorizedAccount", neededRole=role("RISK_ADMIN_ROLE")):
        tx(p, p.bw.fund.functions.setParams(86_400, 3_600, WAD // 2, 1, outsider.address), outsider)
    with reverts("AccessControlUnauthorizedAccount", neededRole=role("RISK_ADMIN_ROLE")):
        tx(p, p.bw.pool.functions.setCooldown(0), outsider)
    tx(p, ch.functions.grantRole(role("GUARDIAN_ROLE"), outsider.address), p.admin)
    receipt = tx(p, ch.functions.setReduceOnly(True), outsider)
    assert one_event(receipt, ch, "ReduceOnlySet")["guardian"] == outsider.address
    assert ch.functions.reduceOnly().call() is True


def test_list_market_and_names(protocol: World) -> None:
    p = protocol
    ch = p.bw.ch
    cfg = config_tuple(configs(p)[0])
    receipt = tx(p, ch.functions.listMarket("SOL-USD", cfg), p.admin)
    ev = one_event(receipt, ch, "MarketListed")
    assert (ev["marketId"], ev["name"]) == (2, "SOL-USD")
    assert ch.functions.marketIdOf("SOL-USD").call() == 2
    assert ch.functions.marketName(2).call() == "SOL-USD"
    assert ch.functions.marketCount().call() == 3
    with reverts("MarketNameTaken", name="ETH-USD"):
        tx(p, ch.functions.listMarket("ETH-USD", cfg), p.admin)
    with reverts("MarketUnknown", marketId=2**256 - 1):
        p.bw.call(ch.functions.marketIdOf("DOGE-USD"))
    p.fund_trader(p.traders[0], 1_000)
    with reverts("OracleFeedMissing", marketId=2):  # listed, but no feed yet
        tx(p, ch.functions.trade(2, WAD, 2**256 - 1), p.traders[0])


def test_pool_and_fund_are_named_when_the_clearing_house_is_deployed(
    protocol: World, artifacts: dict[str, Any]
) -> None:
    """The clearing house is given the pool's and the fund's addresses at deployment (the deployer's
    next two creations, predicted): a pool or a fund at any other address refuses to deploy, and the
    clearing house refuses zero or one address for both."""
    p = protocol
    ch, c = p.bw.ch, p.bw.deployment.contracts
    assert ch.functions.pool().call() == p.bw.pool.address
    assert ch.functions.fund().call() == p.bw.fund.address
    d = Deployer(p.bw.w3, p.admin, artifacts)
    token, admin = c["Collateral"], p.admin.address
    with reverts("PoolNotNamedByClearingHouse", clearingHouse=ch.address, named=p.bw.pool.address):
        d.deploy("LiquidityPool", token, ch.address, 3_600, admin)
    with reverts("FundNotNamedByClearingHouse", clearingHouse=ch.address, named=p.bw.fund.address):
        d.deploy("InsuranceFund", token, ch.address, 86_400, 3_600, WAD // 2, 10**12, admin, admin)

    libraries = {name: c[name] for name in ("AdlLogic", "LiquidationLogic", "TradeLogic")}
    args = (token, c["OracleAdapter"])
    params = (DeployParams().risk_tuple(), admin)
    with reverts("AccountsNotDistinct", account=p.lp.address):
        d.deploy("ClearingHouse", *args, p.lp.address, p.lp.address, *params, libraries=libraries)
    with reverts("ZeroAddress"):
        d.deploy("ClearingHouse", *args, ZERO, p.lp.address, *params, libraries=libraries)
    # The prediction the deployment relies on: the address of the signer's next creation.
    predicted = create_address(admin, d.next_nonce())
    assert d.deploy("MockUSDC", admin) == predicted


@pytest.mark.parametrize("contract", ["ch", "fund", "pool", "oracle"])
def test_admin_transfer_is_two_step_with_delay(protocol: World, contract: str) -> None:
    p = protocol
    c = getattr(p.bw, contract)
    new = p.lp
    admin_role = b"\0" * 32
    with reverts("AccessControlEnforcedDefaultAdminRules"):
        tx(p, c.functions.grantRole(admin_role, new.address), p.admin)
    receipt = tx(p, c.functions.beginDefaultAdminTransfer(new.address), p.admin)
    schedule = one_event(receipt, c, "DefaultAdminTransferScheduled")["acceptSchedule"]
    assert c.functions.pendingDefaultAdmin().call() == [new.address, schedule]
    with reverts("AccessControlEnforcedDefaultAdminDelay", schedule=schedule):
        tx(p, c.functions.acceptDefaultAdminTransfer(), new)
    with reverts("AccessControlInvalidDefaultAdmin", defaultAdmin=p.keeper.address):
        tx(p, c.functions.acceptDefaultAdminTransfer(), p.keeper)
    p.warp(int(c.functions.defaultAdminDelay().call()) + 1)
    receipt = tx(p, c.functions.acceptDefaultAdminTransfer(), new)
    assert c.functions.defaultAdmin().call() == new.address
    granted = events(receipt, c, "RoleGranted")
    assert granted and granted[0]["account"] == new.address
    with reverts(
        "AccessControlUnauthorizedAccount", account=p.admin.address, neededRole=admin_role
    ):
        tx(p, c.functions.grantRole(role("RISK_ADMIN_ROLE"), p.keeper.address), p.admin)
    tx(p, c.functions.grantRole(role("RISK_ADMIN_ROLE"), p.keeper.address), new)


def test_fund_and_pool_parameter_bounds(protocol: World) -> None:
    p = protocol
    day = 86_400
    cases = [
        ({"cooldown": day - 1}, "cooldown", day - 1, day, 30 * day),
        ({"cooldown": 30 * day + 1}, "cooldown", 30 * day + 1, day, 30 * day),
        ({"window": 3_599}, "windowDuration", 3_599, 3_600, 7 * day),
        ({"ratio": WAD // 100 - 1}, "windowCapRatio", WAD // 100 - 1, WAD // 100, WAD),
        ({"ratio": WAD + 1}, "windowCapRatio", WAD + 1, WAD // 100, WAD),
        ({"treasury": ZERO}, "treasury", 0, 1, 1),
    ]
    for change, field, value, lo, hi in cases:
        with reverts("FundParamOutOfBounds", field=field, value=value, minValue=lo, maxValue=hi):
            set_fund_params(p, **change)
    receipt = set_fund_params(p, cooldown=2 * day)
    assert one_event(receipt, p.bw.fund, "FundParamsUpdated")["cooldown"] == 2 * day
    with reverts("PoolCooldownOutOfBounds", cooldown=30 * day + 1, maxCooldown=30 * day):
        tx(p, p.bw.pool.functions.setCooldown(30 * day + 1), p.admin)
    receipt = tx(p, p.bw.pool.functions.setCooldown(day), p.admin)
    assert one_event(receipt, p.bw.pool, "CooldownUpdated")["cooldown"] == day
