// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {AttackBase} from "./AttackBase.sol";

/// @title Dust accounts farming the keeper reward floor out of the insurance fund.
/// @notice The attack: many accounts of one owner each deposit 1 micro-USDC and open about 6.5e9 wei of ETH
/// (about $0.00002) at the maximum leverage; a 3% move puts them below maintenance margin and below the
/// reward floor, and the owner's second address liquidates them. Before the fix the fund paid the $5 floor
/// for each as shortfall: 15 accounts took 75 USDC out of a 200 USDC fund. Must hold: for every position the
/// contracts accept, hedged pairs included, liquidating one's own accounts costs more than the fund pays.
contract DustRewardFarmAttackTest is AttackBase {
    uint256 internal constant ACCOUNTS = 15;
    int256 internal constant DUST_SIZE = 6.5e9; // wei of ETH: a notional of about $0.00002

    uint256 internal spentTokens; // everything the attacker's addresses put in

    function setUp() public {
        setUpProtocol(1_000_000 * USDC, 200 * USDC);
    }

    /// @dev One of the attacker's throwaway accounts.
    function dust(uint256 i) internal pure returns (address) {
        return address(uint160(0xD0570000 + i));
    }

    function depositAs(address who, uint256 tokens) internal {
        fundAccount(who, tokens);
        spentTokens += tokens;
    }

    /// @dev Opens `size` as `who`; false when the clearing house refuses it.
    function tryOpen(address who, int256 size) internal returns (bool ok) {
        vm.prank(who);
        try ch.trade(ETH, size, size > 0 ? type(uint256).max : 0) {
            ok = true;
        } catch {}
    }

    function tryLiquidate(address account) internal {
        vm.prank(attacker2);
        try ch.liquidate(account, ETH) {} catch {}
    }

    /// @dev Everything the attacker's addresses can take out now, in tokens.
    function withdrawAll(address[] memory accounts) internal returns (uint256 out) {
        for (uint256 i; i < accounts.length; ++i) {
            int256 margin = ch.marginOf(accounts[i]);
            if (margin < int256(SCALE) || ch.openMarketsOf(accounts[i]).length != 0) continue;
            uint256 tokens = uint256(margin) / SCALE;
            vm.prank(accounts[i]);
            try ch.withdraw(tokens, accounts[i]) {
                out += tokens;
            } catch {}
        }
    }

    function attackerAccounts(uint256 n) internal view returns (address[] memory a) {
        a = new address[](n + 1);
        for (uint256 i; i < n; ++i) a[i] = dust(i);
        a[n] = attacker2;
    }

    /// @notice The issue's numbers: 15 long dust accounts with 1 micro-USDC each, ETH -3%, self-liquidated.
    function test_dustRewardFarm_fifteenDustAccounts_fundPaysNothing() public {
        uint256 fundBefore = fundMargin();
        for (uint256 i; i < ACCOUNTS; ++i) {
            depositAs(dust(i), 1);
            tryOpen(dust(i), DUST_SIZE);
        }
        setPrice(ETH, 2910); // -3%
        for (uint256 i; i < ACCOUNTS; ++i) tryLiquidate(dust(i));

        uint256 out = withdrawAll(attackerAccounts(ACCOUNTS));
        assertLe(out, spentTokens, "the attacker took more out than it put in");
        assertGe(fundMargin(), fundBefore, "the fund paid for dust accounts");
        assertEq(ch.totalBadDebtWad(), 0, "dust accounts left bad debt");
    }

    /// @notice A long and a short dust account of one owner: whichever way the price moves, one leg can be
    /// self-liquidated while the other gains; the fund must pay nothing for either.
    function test_dustRewardFarm_hedgedDustPairs_eitherDirection_fundPaysNothing() public {
        uint256 fundBefore = fundMargin();
        for (uint256 i; i < ACCOUNTS; ++i) {
            depositAs(dust(2 * i), 1);
            depositAs(dust(2 * i + 1), 1);
            tryOpen(dust(2 * i), DUST_SIZE);
            tryOpen(dust(2 * i + 1), -DUST_SIZE);
        }
        setPrice(ETH, 3090); // +3%: the shorts fall
        for (uint256 i; i < ACCOUNTS; ++i) tryLiquidate(dust(2 * i + 1));
        for (uint256 i; i < ACCOUNTS; ++i) {
            if (ch.positionOf(dust(2 * i), ETH).sizeWad != 0) closeAll(dust(2 * i), ETH);
        }
        uint256 out = withdrawAll(attackerAccounts(2 * ACCOUNTS));
        assertLe(out, spentTokens, "the hedged pairs took more out than they put in");
        assertGe(fundMargin(), fundBefore, "the fund paid for a hedged dust pair");
    }

    /// @notice Every position the contracts accept, hedged: a long and a short of the same size at the
    /// maximum leverage, a move in either direction short of the losing leg's bankruptcy price, the losing
    /// leg liquidated by the owner's other address, the winner closed. The fund pays nothing and the owner
    /// ends with less than it put in. (A move past the bankruptcy price in one step is the gap risk that
    /// docs/security.md describes: the fund then pays the negative equity, never a keeper reward.)
    function testFuzz_dustRewardFarm_anyAcceptedHedgedPair_costsMoreThanItEarns(
        uint256 sizeSeed,
        uint256 moveSeed,
        bool up
    ) public {
        // log-uniform from the smallest size 1 micro-USDC can carry at 20x (about 6.5e9 wei) to 100 ETH
        uint256 base = 6e9 << bound(sizeSeed % 64, 0, 33);
        int256 size = int256(base + (sizeSeed >> 8) % base);
        uint256 moveBps = bound(moveSeed, 260, 480); // past maintenance (2.5%), short of bankruptcy (5%)
        uint256 notional = uint256(size) * 3000;
        // the initial margin and the fee, rounded up to whole tokens: the maximum leverage
        uint256 tokens = (notional / 20 + notional / 2000 + 2 + SCALE - 1) / SCALE;
        address longLeg = dust(0);
        address shortLeg = dust(1);
        depositAs(longLeg, tokens);
        depositAs(shortLeg, tokens);
        if (!tryOpen(longLeg, size) || !tryOpen(shortLeg, -size)) return; // refused: nothing to farm
        uint256 fundBefore = fundMargin();

        uint256 price = up ? 3000 * (10_000 + moveBps) / 10_000 : 3000 * (10_000 - moveBps) / 10_000;
        setPrice(ETH, price);
        (address loser, address winner) = up ? (shortLeg, longLeg) : (longLeg, shortLeg);
        tryLiquidate(loser);
        if (ch.positionOf(winner, ETH).sizeWad != 0) closeAll(winner, ETH);
        if (ch.positionOf(loser, ETH).sizeWad != 0) closeAll(loser, ETH);

        assertGe(fundMargin(), fundBefore, "the fund paid for a self-liquidated hedged pair");
        address[] memory mine = new address[](3);
        (mine[0], mine[1], mine[2]) = (longLeg, shortLeg, attacker2);
        uint256 out = withdrawAll(mine);
        assertLe(out, spentTokens, "self-liquidation earned more than it cost");
    }
}

/// @title The minimum position notional and its hard bound against the reward floor.
contract MinPositionBoundsTest is AttackBase {
    function setUp() public {
        setUpProtocol(1_000_000 * USDC, 200 * USDC);
    }

    /// @notice A trade may leave a position flat or at least the minimum, never between.
    function test_trade_leavesDustPosition_reverts() public {
        fundAccount(alice, 1_000 * USDC);
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(IClearingHouse.TradePositionBelowMinimum.selector, ETH, 240 * WAD, MIN_POSITION)
        );
        ch.trade(ETH, 0.08e18, type(uint256).max); // 240 < 250
        openPosition(alice, ETH, 0.1e18); // 300
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(IClearingHouse.TradePositionBelowMinimum.selector, ETH, 150 * WAD, MIN_POSITION)
        );
        ch.trade(ETH, -0.05e18, 0); // reduce to 150
        openPosition(alice, ETH, -0.1e18); // a full close is always allowed
        assertEq(ch.positionOf(alice, ETH).sizeWad, int256(0), "closed");
    }

    /// @notice minPositionNotional x mmRatio >= rewardFloor, whoever lists or reconfigures a market.
    function test_listMarket_minPositionBelowTheFloorsNotional_reverts() public {
        IClearingHouse.MarketConfig memory c = marketConfig(10_000 * WAD, 100_000 * WAD);
        c.minPositionNotionalWad = uint128(199 * WAD); // 199 x 2.5% < 5
        vm.expectRevert(
            abi.encodeWithSelector(
                IClearingHouse.ParamOutOfBounds.selector, bytes32("minPositionNotional"), 199 * WAD, 200 * WAD, 1e9 * WAD
            )
        );
        ch.listMarket("SOL-USD", c);
        c.minPositionNotionalWad = uint128(200 * WAD);
        vm.expectRevert(abi.encodeWithSelector(IClearingHouse.MarketNameTaken.selector, "ETH-USD"));
        ch.listMarket("ETH-USD", c); // the bound itself passes; only the name is refused
    }

    /// @notice Raising the floor above what a listed market's minimum position can pay is refused.
    function test_setRiskParams_floorAboveAMarketsMinimum_reverts() public {
        IClearingHouse.RiskParams memory r = riskParams();
        r.rewardFloorWad = uint128(7 * WAD); // needs 280 at 2.5%; the markets have 250
        vm.expectRevert(
            abi.encodeWithSelector(
                IClearingHouse.ParamOutOfBounds.selector, bytes32("minPositionNotional"), MIN_POSITION, 280 * WAD, 1e9 * WAD
            )
        );
        ch.setRiskParams(r);
    }
}
