// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {Console} from "../utils/Console.sol";
import {Fixture} from "../utils/Fixture.sol";
import {Handler} from "./Handler.sol";

/// @title The ten conservation invariants of docs/protocol.md, after every call of a random sequence over every
/// entry point. Invariants 1-3 (sums) are checked here; 3-10 per call inside the handler, which reverts
/// (and so fails the run) on the first broken one.
contract ConservationInvariantTest is Fixture {
    Handler internal handler;
    uint256 internal tokensAtStart;

    function setUp() public {
        deployProtocol();
        handler = new Handler(ch, pool, fund, usdc, ethFeed, btcFeed);
        ethFeed.grantRole(ethFeed.FEEDER_ROLE(), address(handler));
        btcFeed.grantRole(btcFeed.FEEDER_ROLE(), address(handler));
        address[] memory all = handler.everyone();
        for (uint256 i; i < all.length; ++i) usdc.mint(all[i], 1e15 * USDC);
        handler.approveAll();

        address lp = handler.lps(0);
        vm.prank(lp);
        pool.deposit(1_000_000 * USDC, lp);
        address staker = handler.stakers(0);
        vm.prank(staker);
        fund.deposit(20_000 * USDC, staker);
        for (uint256 i; i < 5; ++i) {
            address trader = handler.traders(i);
            vm.prank(trader);
            ch.deposit(trader, (10_000 + 10_000 * i) * USDC);
        }
        ch.grantRole(ch.ADL_KEEPER_ROLE(), handler.keepers(0)); // the ADL keeper; keepers(1) is not one
        ch.grantRole(ch.RISK_ADMIN_ROLE(), address(handler)); // switches ADL policies (setAdlPolicy)
        tokensAtStart = usdc.balanceOf(address(ch));
        // Open books from the start, both sides of both markets at 5-12x, so that a few price moves
        // already reach liquidation, bankruptcy and ADL.
        _open(0, ETH, 30e18);
        _open(1, ETH, -60e18);
        _open(2, BTC, 4e18);
        _open(3, BTC, -5e18);
        _open(4, ETH, 60e18);
        _open(4, BTC, -3e18);

        targetContract(address(handler));
        bytes4[] memory selectors = new bytes4[](23);
        selectors[0] = handler.deposit.selector;
        selectors[1] = handler.withdraw.selector;
        selectors[2] = handler.trade.selector;
        selectors[3] = handler.movePrice.selector;
        selectors[4] = handler.warp.selector;
        selectors[5] = handler.liquidate.selector;
        selectors[6] = handler.liquidateBatch.selector;
        selectors[7] = handler.stake.selector;
        selectors[8] = handler.requestUnstake.selector;
        selectors[9] = handler.claim.selector;
        selectors[10] = handler.donate.selector;
        selectors[11] = handler.lpDeposit.selector;
        selectors[12] = handler.lpWithdraw.selector;
        selectors[13] = handler.coverBadDebt.selector;
        selectors[14] = handler.socializeBadDebt.selector;
        selectors[15] = handler.autoDeleverage.selector;
        selectors[16] = handler.lapse.selector;
        selectors[17] = handler.lpExitAtMax.selector;
        selectors[18] = handler.staleClaim.selector;
        selectors[19] = handler.tradeDust.selector;
        selectors[20] = handler.hedgedPair.selector;
        selectors[21] = handler.adlAnyCaller.selector;
        selectors[22] = handler.setAdlPolicy.selector;
        targetSelector(FuzzSelector(address(handler), selectors));
    }

    /// @notice Every conservation law after every call (one campaign checks them all, so each call costs
    /// one set of checks; a failure names the law it broke).
    function invariant_conservation() public view {
        _vaultBalancePlusBadDebtEqualsMargins();
        _poolMirrorsTraders();
        _uPnlAndFundingSumToZero();
        _fundNeverNegativeAndWithinWindow();
        _badDebtBook();
        _marginsBackedByTokens();
    }

    // ---------------------------------------------------------------- 1. vault

    /// @notice token balance (WAD) + outstanding bad debt == sum of every margin, pool and fund included;
    /// and the token balance is exactly what the ghost sums say went in and out.
    function _vaultBalancePlusBadDebtEqualsMargins() internal view {
        address[] memory all = handler.everyone();
        int256 margins = ch.marginOf(address(pool)) + ch.marginOf(address(fund));
        for (uint256 i; i < all.length; ++i) margins += ch.marginOf(all[i]);
        uint256 balance = usdc.balanceOf(address(ch));
        assertEq(int256(balance * SCALE + ch.totalBadDebtWad()), margins, "balance + bad debt != sum of margins");
        assertEq(balance, tokensAtStart + handler.ghostTokensIn() - handler.ghostTokensOut(), "token ghost sum");
    }

    // ---------------------------------------------------------------- 2. zero sums

    /// @notice The pool is the exact mirror of the traders: the running sums equal the traders' totals.
    function _poolMirrorsTraders() internal view {
        address[] memory ts = handler.traderList();
        for (uint256 m; m < 2; ++m) {
            IClearingHouse.MarketState memory st = ch.marketState(m);
            int256 size;
            int256 openNotional;
            int256 basis;
            uint256 longOi;
            uint256 shortOi;
            for (uint256 i; i < ts.length; ++i) {
                IClearingHouse.Position memory p = ch.positionOf(ts[i], m);
                size += p.sizeWad;
                openNotional += p.openNotionalWad;
                basis += p.fundingBasisWad;
                if (p.sizeWad > 0) longOi += uint256(int256(p.sizeWad));
                else shortOi += uint256(-int256(p.sizeWad));
            }
            assertEq(size, st.sumSizeWad, "sum of sizes");
            assertEq(openNotional, st.sumOpenNotionalWad, "sum of open notionals");
            assertEq(basis, st.sumFundingBasisWad, "sum of funding bases");
            assertEq(longOi, st.longOpenInterestWad, "long open interest");
            assertEq(shortOi, st.shortOpenInterestWad, "short open interest");
            assertEq(ch.positionOf(address(pool), m).sizeWad, int256(0), "the pool holds no stored position");
            assertEq(ch.positionOf(address(fund), m).sizeWad, int256(0), "the fund holds no position");
        }
    }

    /// @notice Sum of uPnL and of pending funding over every position, the pool's included, is zero up to
    /// one wei of rounding per position (each mark rounds toward -infinity on its own).
    function _uPnlAndFundingSumToZero() internal view {
        address[] memory ts = handler.traderList();
        for (uint256 m; m < 2; ++m) {
            uint256 price = uint256(feedOf(m).latestAnswer()) * 1e10;
            IClearingHouse.MarketState memory st = ch.marketState(m);
            int256 index = st.cumFundingWad; // settled index: exact for every basis
            int256 pnlSum = -(_mulFloor(st.sumSizeWad, int256(price)) - st.sumOpenNotionalWad);
            int256 fundingSum = -(_mulFloor(st.sumSizeWad, index) - st.sumFundingBasisWad);
            for (uint256 i; i < ts.length; ++i) {
                IClearingHouse.Position memory p = ch.positionOf(ts[i], m);
                pnlSum += _mulFloor(p.sizeWad, int256(price)) - p.openNotionalWad;
                fundingSum += _mulFloor(p.sizeWad, index) - p.fundingBasisWad;
            }
            assertLe(_absI(pnlSum), ts.length + 1, "sum of uPnL is not zero");
            assertLe(_absI(fundingSum), ts.length + 1, "sum of pending funding is not zero");
        }
    }

    // ---------------------------------------------------------------- 1b. claims backed by tokens

    /// @notice Nobody is ever paid with tokens that back another account's margin. The pool and the fund
    /// never go negative (the pool pays profit and funding only from what it holds), nor does any flat
    /// account; so the only negative margins are open traders' (secured by their positions). And while no
    /// bad debt is outstanding, no trader is under water and every price is fresh, the tokens cover every
    /// account's withdrawable claim at once: flat accounts their margin, open traders
    /// min(margin, equity - initial margin), the pool min(margin, equity), the fund its margin.
    function _marginsBackedByTokens() internal view {
        assertGe(ch.marginOf(address(pool)), int256(0), "the pool's margin went negative");
        assertGe(ch.marginOf(address(fund)), int256(0), "the fund's margin went negative");
        address[] memory all = handler.everyone();
        for (uint256 i; i < all.length; ++i) {
            if (ch.openMarketsOf(all[i]).length == 0) assertGe(ch.marginOf(all[i]), int256(0), "a flat account owes");
        }
        if (ch.totalBadDebtWad() != 0) return;
        (bool fresh, uint256 claims) = _claims(all);
        if (!fresh) return;
        assertLe(claims, usdc.balanceOf(address(ch)) * SCALE, "withdrawable claims exceed the tokens");
    }

    /// @dev Sum of every withdrawable claim; false when a price is stale or a trader is under water.
    function _claims(address[] memory all) internal view returns (bool, uint256 claims) {
        try ch.poolEquityWad() returns (int256 poolEquity) {
            int256 poolMargin = ch.marginOf(address(pool));
            claims = _posI(poolMargin < poolEquity ? poolMargin : poolEquity) + uint256(ch.marginOf(address(fund)));
        } catch {
            return (false, 0);
        }
        for (uint256 i; i < all.length; ++i) {
            int256 margin = ch.marginOf(all[i]);
            if (ch.openMarketsOf(all[i]).length == 0) {
                claims += _posI(margin);
                continue;
            }
            try ch.healthOf(all[i]) returns (IClearingHouse.Health memory h) {
                if (h.equityWad < 0) return (false, 0); // an uncollectable loss: the pool's valuation question
                int256 free = h.equityWad - int256(h.initialMarginWad);
                claims += _posI(margin < free ? margin : free);
            } catch {
                return (false, 0);
            }
        }
        return (true, claims);
    }

    function _posI(int256 x) internal pure returns (uint256) {
        return x > 0 ? uint256(x) : 0;
    }

    // ---------------------------------------------------------------- 3. fund, bad-debt book

    function _fundNeverNegativeAndWithinWindow() internal view {
        assertGe(ch.marginOf(address(fund)), int256(0), "fund assets negative");
        assertLe(fund.windowPaidWad(), fund.windowCapWad(), "window paid above its cap");
        assertEq(fund.totalAssets(), uint256(ch.marginOf(address(fund))) / SCALE, "fund assets != its margin");
        assertLe(fund.availableWad(), fund.freeAssetsWad(), "the fund promises more than its free assets");
        // A payout spared to matured requests is borne by the other shares: the claims fit in the margin.
        uint256 owed;
        for (uint256 id; id < fund.nextRequestId(); ++id) owed += fund.claimable(id);
        assertLe(owed, fund.totalAssets(), "open requests may claim more than the fund holds");
        assertLe(fund.shareAssets(), fund.totalAssets(), "shares priced above the margin");
    }

    function _badDebtBook() internal view {
        uint256 sum;
        for (uint256 m; m < 2; ++m) {
            sum += ch.badDebtOf(m, IClearingHouse.Side.Long) + ch.badDebtOf(m, IClearingHouse.Side.Short);
        }
        uint256 total = ch.totalBadDebtWad();
        assertEq(sum, total, "per-market bad debt != total");
        assertEq(total, handler.ghostBadDebtRecorded() - handler.ghostBadDebtRepaid(), "bad debt ghost sum");
        assertTrue((ch.badDebtSince() != 0) == (total != 0), "badDebtSince out of step");
        // The flag a withdrawal checks: the top byte of the layout's first slot (Ledger.Layout, after the
        // three access-control slots).
        uint256 flag = uint256(vm.load(address(ch), bytes32(uint256(3)))) >> 248;
        assertEq(flag, total != 0 ? 1 : 0, "badDebtOutstanding out of step");
    }

    /// @notice Once per run: how often each path actually ran, printed (-vv) and, when
    /// BULWARK_INVARIANT_LOG names a file under out/, appended to it as one line of JSON, so the test
    /// command can check that the campaign reached every path it claims to check.
    function afterInvariant() public {
        bytes32[21] memory names = [
            bytes32("trade"),
            "hedgedPair",
            "adlAnyCaller",
            "liquidate",
            "liquidateBatch",
            "partial",
            "bankrupt",
            "adl",
            "adlStep",
            "closeHaircut",
            "coverBadDebt",
            "socialize",
            "claim",
            "withdraw",
            "lpWithdraw",
            "stake",
            "gap",
            "lapse",
            "lpExitAtMax",
            "adlPolicy",
            "adlProRata"
        ];
        string memory line = "{";
        for (uint256 i; i < names.length; ++i) {
            string memory name = string(abi.encodePacked(names[i]));
            name = _trimZeros(name);
            uint256 n = handler.successes(names[i]);
            Console.log(name, n);
            line = string.concat(line, i == 0 ? "" : ", ", "\"", name, "\": ", vm.toString(n));
        }
        string memory path = vm.envOr("BULWARK_INVARIANT_LOG", string(""));
        if (bytes(path).length != 0) vm.writeLine(path, string.concat(line, "}"));
    }

    function _trimZeros(string memory s) internal pure returns (string memory) {
        bytes memory b = bytes(s);
        uint256 n;
        while (n < b.length && b[n] != 0) ++n;
        bytes memory out = new bytes(n);
        for (uint256 i; i < n; ++i) out[i] = b[i];
        return string(out);
    }

    function _open(uint256 trader, uint256 marketId, int256 sizeWad) internal {
        openPosition(handler.traders(trader), marketId, sizeWad);
    }

    function _mulFloor(int256 a, int256 b) internal pure returns (int256) {
        int256 p = a * b;
        int256 q = p / int256(WAD);
        if (p % int256(WAD) != 0 && p < 0) --q;
        return q;
    }

    function _absI(int256 x) internal pure returns (uint256) {
        return x >= 0 ? uint256(x) : uint256(-x);
    }
}
