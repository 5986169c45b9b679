"""The oracle adapter: decimals normalised once, stale/zero/negative answers refused, a secondary feed
bounding the deviation, the L2 sequencer feed and its grace period, configuration bounds."""

from __future__ import annotations

from typing import Any

from helpers import ETH, events, reverts, trade_wad, tx, wad
from web3.contract import Contract

from bulwark.chain.contracts import WAD
from bulwark.devnet.deploy import Deployer, role
from bulwark.devnet.world import World

ZERO = "0x0000000000000000000000000000000000000000"
HEARTBEAT = 3_600


def _aggregator(p: World, decimals: int, answer: int, name: str = "test feed") -> Contract:
    address = Deployer(p.bw.w3, p.admin, p.bw.artifacts).deploy(
        "MockAggregator", decimals, name, answer, p.admin.address
    )
    return p.bw.contract("MockAggregator", address)


def _set_feed(p: World, *args: Any) -> Any:
    return tx(p, p.bw.oracle.functions.setFeed(*args), p.admin)


def _now(p: World) -> int:
    return int(p.bw.w3.eth.get_block("latest")["timestamp"])


def test_price_is_normalised_to_wad(protocol: World) -> None:
    p = protocol
    assert p.bw.oracle.functions.priceWad(ETH).call() == 3_000 * WAD
    p.set_price("ETH-USD", 3_141.59265358)
    assert p.bw.oracle.functions.priceWad(ETH).call() == 314_159_265_358 * 10**10
    feed = _aggregator(p, 18, 2_500 * WAD)
    _set_feed(p, ETH, feed.address, HEARTBEAT, ZERO, 0, 0)
    assert p.bw.oracle.functions.priceWad(ETH).call() == 2_500 * WAD
    six = _aggregator(p, 6, 2_400 * 10**6)
    _set_feed(p, ETH, six.address, HEARTBEAT, ZERO, 0, 0)
    assert p.bw.oracle.functions.priceWad(ETH).call() == 2_400 * WAD


def test_stale_price_reverts_and_blocks_trading(protocol: World) -> None:
    p = protocol
    feed = p.bw.feeds["ETH-USD"]
    updated = int(feed.functions.latestTimestamp().call())
    p.warp(HEARTBEAT + 1)
    with reverts("OracleStalePrice", feed=feed.address, updatedAt=updated, heartbeat=HEARTBEAT):
        p.bw.call(p.bw.oracle.functions.priceWad(ETH))
    p.fund_trader(p.traders[0], 1_000)
    with reverts("OracleStalePrice", feed=feed.address):
        trade_wad(p, p.traders[0], ETH, wad(0.1))
    p.refresh_prices()
    assert p.bw.oracle.functions.priceWad(ETH).call() == 3_000 * WAD


def test_future_dated_answer_is_refused(protocol: World) -> None:
    p = protocol
    feed = p.bw.feeds["ETH-USD"]
    later = _now(p) + 1_000
    tx(p, feed.functions.updateRoundData(3_000 * 10**8, later, later), p.admin)
    with reverts("OracleStalePrice", feed=feed.address, updatedAt=later, heartbeat=HEARTBEAT):
        p.bw.call(p.bw.oracle.functions.priceWad(ETH))


def test_zero_and_negative_answers_revert(protocol: World) -> None:
    p = protocol
    feed = p.bw.feeds["ETH-USD"]
    for answer in (0, -1):
        tx(p, feed.functions.updateAnswer(answer), p.admin)
        with reverts("OracleInvalidPrice", feed=feed.address, answer=answer):
            p.bw.call(p.bw.oracle.functions.priceWad(ETH))


def test_secondary_feed_bounds_the_deviation(protocol: World) -> None:
    p = protocol
    primary = p.bw.feeds["ETH-USD"]
    secondary = _aggregator(p, 18, 3_000 * WAD)
    receipt = _set_feed(p, ETH, primary.address, HEARTBEAT, secondary.address, 600, WAD // 100)
    ev = events(receipt, p.bw.oracle, "FeedConfigured")[0]
    assert (ev["secondary"], ev["secondaryHeartbeat"], ev["maxDeviationWad"]) == (
        secondary.address,
        600,
        WAD // 100,
    )
    tx(p, secondary.functions.updateAnswer(3_029 * WAD), p.admin)  # 0.967%
    assert p.bw.oracle.functions.priceWad(ETH).call() == 3_000 * WAD  # the primary sets the price
    tx(p, secondary.functions.updateAnswer(3_031 * WAD), p.admin)  # 1.033%
    deviation = 31 * WAD // 3_000
    with reverts(
        "OracleDeviationTooLarge",
        primaryWad=3_000 * WAD,
        secondaryWad=3_031 * WAD,
        deviationWad=deviation,
        maxWad=WAD // 100,
    ):
        p.bw.call(p.bw.oracle.functions.priceWad(ETH))
    tx(p, secondary.functions.updateAnswer(3_000 * WAD), p.admin)
    p.warp(601)  # the secondary's own heartbeat is shorter
    with reverts("OracleStalePrice", feed=secondary.address, heartbeat=600):
        p.bw.call(p.bw.oracle.functions.priceWad(ETH))


def test_sequencer_down_and_grace_period(protocol: World) -> None:
    p = protocol
    sequencer = _aggregator(p, 0, 0, "L2 sequencer uptime")
    started = int(sequencer.functions.latestRoundData().call()[2])
    tx(p, p.bw.oracle.functions.setSequencerFeed(sequencer.address, 600), p.admin)
    with reverts("OracleSequencerGracePeriod", startedAt=started, gracePeriod=600):
        p.bw.call(p.bw.oracle.functions.priceWad(ETH))
    p.warp(601)
    assert p.bw.oracle.functions.priceWad(ETH).call() == 3_000 * WAD
    tx(p, sequencer.functions.updateAnswer(1), p.admin)
    with reverts("OracleSequencerDown"):
        p.bw.call(p.bw.oracle.functions.priceWad(ETH))
    tx(p, sequencer.functions.updateAnswer(0), p.admin)  # back up: a fresh grace period
    with reverts("OracleSequencerGracePeriod", gracePeriod=600):
        p.bw.call(p.bw.oracle.functions.priceWad(ETH))
    later = _now(p) + 100  # a start time in the future or zero is a restart, not a panic
    tx(p, sequencer.functions.updateRoundData(0, later, later), p.admin)
    with reverts("OracleSequencerGracePeriod", startedAt=later, gracePeriod=600):
        p.bw.call(p.bw.oracle.functions.priceWad(ETH))
    tx(p, sequencer.functions.updateRoundData(0, 0, _now(p)), p.admin)
    with reverts("OracleSequencerGracePeriod", startedAt=0, gracePeriod=600):
        p.bw.call(p.bw.oracle.functions.priceWad(ETH))
    tx(p, p.bw.oracle.functions.setSequencerFeed(ZERO, 0), p.admin)
    assert p.bw.oracle.functions.priceWad(ETH).call() == 3_000 * WAD


def test_feed_configuration_bounds(protocol: World) -> None:
    p = protocol
    primary = p.bw.feeds["ETH-USD"].address
    oracle = p.bw.oracle
    with reverts("OracleFeedMissing", marketId=ETH):
        _set_feed(p, ETH, ZERO, HEARTBEAT, ZERO, 0, 0)
    with reverts("OracleFeedMissing", marketId=9):
        p.bw.call(oracle.functions.priceWad(9))
    with reverts(
        "OracleConfigOutOfBounds",
        field="primaryHeartbeat",
        value=5,
        minValue=10,
        maxValue=2 * 86_400,
    ):
        _set_feed(p, ETH, primary, 5, ZERO, 0, 0)
    with reverts(
        "OracleConfigOutOfBounds",
        field="maxDeviation",
        value=WAD // 2,
        minValue=1,
        maxValue=WAD // 5,
    ):
        _set_feed(p, ETH, primary, HEARTBEAT, primary, HEARTBEAT, WAD // 2)
    with reverts("OracleConfigOutOfBounds", field="secondaryHeartbeat", value=0):
        _set_feed(p, ETH, primary, HEARTBEAT, primary, 0, WAD // 100)
    wide = _aggregator(p, 19, 1)
    with reverts("OracleConfigOutOfBounds", field="decimals", value=19, minValue=0, maxValue=18):
        _set_feed(p, ETH, wide.address, HEARTBEAT, ZERO, 0, 0)
    with reverts("OracleConfigOutOfBounds", field="sequencerGracePeriod", value=86_401):
        tx(p, oracle.functions.setSequencerFeed(primary, 86_401), p.admin)
    with reverts(
        "AccessControlUnauthorizedAccount",
        account=p.keeper.address,
        neededRole=role("RISK_ADMIN_ROLE"),
    ):
        tx(p, oracle.functions.setFeed(ETH, primary, HEARTBEAT, ZERO, 0, 0), p.keeper)


def test_mock_feed_only_takes_answers_from_the_feeder(protocol: World) -> None:
    p = protocol
    feed = p.bw.feeds["ETH-USD"]
    with reverts(
        "AccessControlUnauthorizedAccount", account=p.keeper.address, neededRole=role("FEEDER_ROLE")
    ):
        tx(p, feed.functions.updateAnswer(1), p.keeper)
    receipt = tx(p, feed.functions.updateAnswer(2_999 * 10**8), p.admin)
    round_id = feed.functions.latestRound().call()
    assert events(receipt, feed, "AnswerUpdated")[0]["current"] == 2_999 * 10**8
    assert events(receipt, feed, "NewRound")[0]["roundId"] == round_id
    assert feed.functions.getRoundData(round_id).call()[1] == 2_999 * 10**8
    with reverts("MockAggregatorUnknownRound", roundId=round_id + 1):
        p.bw.call(feed.functions.getRoundData(round_id + 1))
