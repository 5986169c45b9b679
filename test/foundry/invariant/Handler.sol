// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC4626} from "@openzeppelin/contracts/token/ERC20/extensions/ERC4626.sol";

import {ClearingHouse} from "../../../contracts/ClearingHouse.sol";
import {InsuranceFund} from "../../../contracts/InsuranceFund.sol";
import {LiquidityPool} from "../../../contracts/LiquidityPool.sol";
import {ILiquidityPool} from "../../../contracts/interfaces/ILiquidityPool.sol";
import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {IInsuranceFund} from "../../../contracts/interfaces/IInsuranceFund.sol";
import {IOracleAdapter} from "../../../contracts/interfaces/IOracleAdapter.sol";
import {MockAggregator} from "../../../contracts/mocks/MockAggregator.sol";
import {MockUSDC} from "../../../contracts/mocks/MockUSDC.sol";
import {Vm} from "../utils/Vm.sol";
import {AdlChecks} from "./AdlChecks.sol";

/// @title The invariant handler: every entry point of the protocol, with bounded inputs.
/// @notice Traders deposit, withdraw, open, increase, reduce, flip and close, open dust positions and
/// hedged pairs; prices move by steps and by gaps; time passes (sometimes without a price update, leaving
/// the feeds stale); keepers liquidate one account or a batch; stakers stake, request, claim and donate
/// (1 micro-USDC included); LPs deposit and withdraw; anyone covers or socialises bad debt; the ADL keeper
/// deleverages, and anyone else tries to, on any target.
contract Handler is AdlChecks {
    uint256 internal constant MAX_TOKENS = 1e15 * 1e6;

    constructor(
        ClearingHouse ch_,
        LiquidityPool pool_,
        InsuranceFund fund_,
        MockUSDC usdc_,
        MockAggregator eth,
        MockAggregator btc
    ) AdlChecks(ch_, pool_, fund_, usdc_, eth, btc) {}

    /// @notice Mints and approves for every actor; called once by the test (the token's owner mints).
    function approveAll() external {
        for (uint256 i; i < _everyone.length; ++i) {
            vm.startPrank(_everyone[i]);
            usdc.approve(address(ch), type(uint256).max);
            usdc.approve(address(pool), type(uint256).max);
            usdc.approve(address(fund), type(uint256).max);
            vm.stopPrank();
        }
    }

    // ================================================================ vault

    function deposit(uint256 actorSeed, uint256 amountSeed) external {
        address a = _pick(traders, actorSeed);
        uint256 amount = bound(amountSeed, 1_000e6, 100_000e6);
        int256 before = ch.marginOf(a);
        vm.prank(a);
        ch.deposit(a, amount); // a deposit has no reason to fail
        ghostTokensIn += amount;
        assertEq(ch.marginOf(a), before + int256(amount * SCALE), "deposit credit");
        _count("deposit", true);
    }

    function withdraw(uint256 actorSeed, uint256 amountSeed) external {
        address a = actorSeed % 3 == 0 ? _pick(keepers, actorSeed / 3) : _pick(traders, actorSeed / 3);
        int256 margin = ch.marginOf(a);
        if (margin < int256(SCALE)) return;
        uint256 amount = bound(amountSeed, 1, uint256(margin) / SCALE);
        uint256 debt = ch.totalBadDebtWad();
        uint256 balanceBefore = usdc.balanceOf(a);
        vm.prank(a);
        try ch.withdraw(amount, a) {
            assertEq(debt, 0, "withdrawal while bad debt is outstanding");
            assertTrue(_freshFor(a), "withdrawal priced on a stale feed");
            assertEq(usdc.balanceOf(a) - balanceBefore, amount, "withdrawn tokens");
            assertEq(ch.marginOf(a), margin - int256(amount * SCALE), "withdrawal debit");
            ghostTokensOut += amount;
            _count("withdraw", true);
        } catch (bytes memory reason) {
            bytes4 s = _sel(reason);
            if (s == IClearingHouse.VaultBadDebtOutstanding.selector) assertGt(debt, 0, "bad debt revert");
            else if (s == IClearingHouse.VaultBelowInitialMargin.selector) assertTrue(!_flatNow(a), "imr on flat");
            else if (s != IOracleAdapter.OracleStalePrice.selector || _freshFor(a)) _unexpected("withdraw", reason);
            _count("withdraw", false);
        }
    }

    // ================================================================ trading

    /// @notice mode 0: open or add at a leverage of 1-25x; 1: reduce; 2: flip through zero; 3: close.
    function trade(uint256 actorSeed, uint256 marketSeed, uint256 modeSeed, uint256 sizeSeed) external {
        address a = _pick(traders, actorSeed);
        uint256 m = marketSeed % 2;
        int256 old = ch.positionOf(a, m).sizeWad;
        int256 delta = _tradeDelta(a, m, old, old == 0 ? 0 : modeSeed % 4, sizeSeed);
        if (delta == 0) return;
        _trade(a, m, old, delta);
    }

    function _tradeDelta(address a, uint256 m, int256 old, uint256 mode, uint256 seed) internal view returns (int256) {
        if (mode == 3) return -old;
        if (mode == 1) return -old * int256(bound(seed, 1, 99)) / 100;
        if (mode == 2) return -old - old * int256(bound(seed, 10, 150)) / 100;
        AccountView memory v = _account(a);
        if (!v.ok || v.equity <= 0) return 0;
        uint256 notional = uint256(v.equity) * bound(seed, 1, 25);
        int256 size = int256(notional * WAD / _feedPrice(m));
        return (seed >> 128) & 1 == 0 ? size : -size;
    }

    function _trade(address a, uint256 m, int256 old, int256 delta) internal {
        AdlContext memory ctx = _adlContext(m, old);
        vm.recordLogs();
        vm.prank(a);
        try ch.trade(m, delta, delta > 0 ? type(uint256).max : 0) {
            assertTrue(_fresh(m) && _freshFor(a), "trade on a stale price");
            _checkCloseHaircut(vm.getRecordedLogs(), ctx, old, delta);
            _checkTradeHealth(a, old, old + delta);
            _checkTradeBounds(m, old, old + delta);
            _count("trade", true);
        } catch (bytes memory reason) {
            bytes4 s = _sel(reason);
            bool allowed = s == IClearingHouse.TradeMarginInsufficient.selector
                || s == IClearingHouse.TradeOpenInterestCap.selector
                || s == IClearingHouse.TradePoolExposureCap.selector
                || s == IClearingHouse.TradeWouldBankrupt.selector
                || (s == IClearingHouse.TradePositionBelowMinimum.selector && _belowMinimum(m, old + delta))
                || (s == IOracleAdapter.OracleStalePrice.selector && !(_fresh(0) && _fresh(1)));
            if (!allowed) _unexpected("trade", reason);
            _count("trade", false);
        }
    }

    /// @dev A position the trade would leave neither flat nor at the market's minimum notional.
    function _belowMinimum(uint256 m, int256 size) internal view returns (bool) {
        return size != 0 && _abs(size) * _feedPrice(m) < uint256(ch.marketConfig(m).minPositionNotionalWad) * WAD + WAD;
    }

    /// @dev Every accepted position is flat or at least the minimum notional (so its maintenance margin
    /// pays the keeper's floor), and a trade that is not a pure reduction leaves the pool's exposure in its
    /// market, max(long, short open interest) x price, within k x pool equity: no sequence of trades,
    /// hedge legs included, takes it past the cap.
    function _checkTradeBounds(uint256 m, int256 old, int256 next) internal view {
        uint256 minimum = ch.marketConfig(m).minPositionNotionalWad;
        if (next != 0) assertGe(_abs(next) * _feedPrice(m) / WAD + 1, minimum, "a dust position was accepted");
        bool reducing = (old > 0 && next >= 0 && next < old) || (old < 0 && next <= 0 && next > old);
        if (reducing) return;
        IClearingHouse.MarketState memory st = ch.marketState(m);
        uint256 side = st.longOpenInterestWad > st.shortOpenInterestWad ? st.longOpenInterestWad : st.shortOpenInterestWad;
        uint256 cap = _pos(ch.poolEquityWad()) * ch.riskParams().poolExposureMultipleWad / WAD;
        assertLe(side * _feedPrice(m) / WAD, cap, "a trade took the pool's exposure past its cap");
    }

    /// @notice Dust: a position of 1 wei up to about the minimum notional, opened or left by a reduction.
    function tradeDust(uint256 actorSeed, uint256 marketSeed, uint256 sizeSeed) external {
        address a = _pick(traders, actorSeed);
        uint256 m = marketSeed % 2;
        int256 old = ch.positionOf(a, m).sizeWad;
        uint256 minSize = uint256(ch.marketConfig(m).minPositionNotionalWad) * WAD / _feedPrice(m);
        int256 target = int256(bound(sizeSeed >> 1, 1, minSize + minSize / 10));
        if (sizeSeed & 1 == 1) target = -target;
        if (target == old) return;
        _trade(a, m, old, target - old);
    }

    /// @notice A hedged pair: one trader opens long, another the same size short (each within the caps),
    /// and one time in two one of the legs is closed again, as the exposure-cap bypass did.
    function hedgedPair(uint256 seed, uint256 sizeSeed) external {
        address longLeg = _pick(traders, seed);
        address shortLeg = _pick(traders, (seed >> 8) + 1 + seed % traders.length);
        if (longLeg == shortLeg) return;
        uint256 m = (seed >> 16) % 2;
        AccountView memory v = _account(longLeg);
        AccountView memory w = _account(shortLeg);
        if (!v.ok || !w.ok || v.equity <= 0 || w.equity <= 0) return;
        uint256 equity = uint256(v.equity < w.equity ? v.equity : w.equity);
        int256 size = int256(equity * bound(sizeSeed, 1, 15) * WAD / _feedPrice(m));
        _trade(longLeg, m, ch.positionOf(longLeg, m).sizeWad, size);
        _trade(shortLeg, m, ch.positionOf(shortLeg, m).sizeWad, -size);
        if ((seed >> 24) % 2 == 0) return;
        address closer = (seed >> 25) % 2 == 0 ? shortLeg : longLeg;
        int256 held = ch.positionOf(closer, m).sizeWad;
        if (held != 0) _trade(closer, m, held, -held);
        _count("hedgedPair", true);
    }

    /// @dev A risk-adding trade leaves equity at or above the initial margin; a reduction leaves it >= 0.
    function _checkTradeHealth(address a, int256 old, int256 next) internal view {
        IClearingHouse.Health memory h = ch.healthOf(a);
        bool reducing = (old > 0 && next >= 0 && next < old) || (old < 0 && next <= 0 && next > old);
        if (reducing) assertGe(h.equityWad, int256(0), "a reduction left negative equity");
        else assertGe(h.equityWad, int256(h.initialMarginWad), "a risk-adding trade below initial margin");
    }

    // ================================================================ prices and time

    /// @notice A step of up to 15% either way, or (gap) up to 60%, published now.
    function movePrice(uint256 marketSeed, uint256 moveSeed, bool gap) external {
        uint256 m = marketSeed % 2;
        int256 maxBps = gap ? int256(6000) : int256(1500);
        int256 bps = bound(int256(moveSeed), -maxBps, maxBps);
        uint256 price = uint256(feeds[m].latestAnswer());
        uint256 next = price * uint256(10_000 + bps) / 10_000;
        uint256 base = m == 0 ? 3000e8 : 60_000e8;
        if (next < base / 10) next = base / 10;
        if (next > base * 10) next = base * 10;
        feeds[m].updateAnswer(int256(next));
        _count(gap ? bytes32("gap") : bytes32("move"), true);
    }

    /// @notice Lets up to three days pass; one time in four the feeds are not refreshed (stale).
    function warp(uint256 secondsSeed, uint256 refreshSeed) external {
        vm.warp(block.timestamp + bound(secondsSeed, 1, 3 days));
        if (refreshSeed % 4 != 0) {
            feeds[0].updateAnswer(feeds[0].latestAnswer());
            feeds[1].updateAnswer(feeds[1].latestAnswer());
        }
        _count("warp", true);
    }

    // ================================================================ liquidation

    /// @notice Two times in three the keeper looks for a liquidatable account first, as a keeper does.
    function liquidate(uint256 accountSeed, uint256 marketSeed, uint256 keeperSeed) external {
        address account = _pick(traders, accountSeed);
        uint256 m = marketSeed % 2;
        if (accountSeed % 3 != 0) (account, m) = _findLiquidatable(accountSeed, m);
        address keeper = keeperSeed % 4 == 0 ? _pick(traders, keeperSeed / 4) : _pick(keepers, keeperSeed / 4);
        if (keeper == account) keeper = keepers[0];
        _liquidate(account, m, keeper);
    }

    function _findLiquidatable(uint256 seed, uint256 m) internal view returns (address, uint256) {
        for (uint256 k; k < traders.length; ++k) {
            address a = traders[(seed % traders.length + k) % traders.length];
            AccountView memory v = _account(a);
            if (!v.liquidatable) continue;
            return (a, _largestMarket(a)); // outside bankruptcy the first in the liquidation order goes first
        }
        return (traders[seed % traders.length], m);
    }

    function _liquidate(address account, uint256 m, address keeper) internal {
        AccountView[] memory before = new AccountView[](1);
        before[0] = _account(account);
        address[] memory who = new address[](1);
        who[0] = account;
        FundView memory f = _fundView();
        int256 keeperBefore = ch.marginOf(keeper);
        uint256 debtBefore = ch.totalBadDebtWad();
        (int256[] memory margins, bool[] memory flat) = (_margins(), _flat());
        vm.recordLogs();
        vm.prank(keeper);
        try ch.liquidate(account, m) {
            Totals memory t = _checkLiquidationLogs(vm.getRecordedLogs(), before, who);
            assertEq(t.count, 1, "one liquidation per call");
            assertEq(ch.marginOf(keeper), keeperBefore + int256(t.rewards), "keeper credited once, the reward");
            assertEq(ch.totalBadDebtWad(), debtBefore + t.badDebt, "bad debt added");
            _checkFundAfter(f, t);
            _checkBystanders(margins, flat, keeper);
            _count("liquidate", true);
        } catch (bytes memory reason) {
            _liquidationReverted(reason, before[0], account, m);
            _count("liquidate", false);
        }
    }

    /// @dev A liquidatable account with a position in the market and a fresh price must be liquidatable.
    function _liquidationReverted(bytes memory reason, AccountView memory v, address account, uint256 m)
        internal
        view
    {
        bytes4 s = _sel(reason);
        int256 size = ch.positionOf(account, m).sizeWad;
        if (s == IClearingHouse.LiquidationAccountHealthy.selector) {
            assertTrue(v.ok && !v.liquidatable, "liveness: a liquidatable account was called healthy");
        } else if (s == IClearingHouse.LiquidationNoPosition.selector) {
            assertTrue(size == 0, "liveness: NoPosition for an open position");
        } else if (s == IClearingHouse.LiquidationNotFirstPosition.selector) {
            (bool payableNamed, uint256 named) = _leg(account, m);
            (bool payableOther, uint256 other) = _leg(account, 1 - m);
            assertTrue(
                ch.positionOf(account, 1 - m).sizeWad != 0 && _before(payableOther, other, payableNamed, named),
                "liveness: NotLargestPosition for the first in the order"
            );
        } else if (s != IOracleAdapter.OracleStalePrice.selector || v.fresh) {
            _unexpected("liquidate", reason);
        }
    }

    /// @notice Every trader once (in a market it holds, else any) plus one entry for an unknown market, in
    /// one batch: the failing entries are skipped and the batch itself never reverts. Accounts appear once
    /// so that each liquidation can be checked against the state before the batch.
    function liquidateBatch(uint256 keeperSeed) external {
        address keeper = _pick(keepers, keeperSeed);
        uint256 n = traders.length;
        address[] memory accounts = new address[](n + 1);
        uint256[] memory markets = new uint256[](n + 1);
        AccountView[] memory before = new AccountView[](n + 1);
        for (uint256 i; i < n; ++i) {
            accounts[i] = traders[i];
            bool random = (keeperSeed >> (8 + i)) & 7 == 0;
            markets[i] = random ? (keeperSeed >> (16 + i)) & 1 : _largestMarket(traders[i]);
            before[i] = _account(accounts[i]);
        }
        accounts[n] = traders[keeperSeed % n];
        markets[n] = 7; // MarketUnknown: the griefing entry
        before[n] = before[keeperSeed % n];
        FundView memory f = _fundView();
        int256 keeperBefore = ch.marginOf(keeper);
        uint256 debtBefore = ch.totalBadDebtWad();
        vm.recordLogs();
        vm.prank(keeper);
        uint256 done = ch.liquidateBatch(accounts, markets); // must never revert
        Totals memory t = _checkLiquidationLogs(vm.getRecordedLogs(), before, accounts);
        assertEq(done, t.count, "batch count != Liquidated events");
        assertEq(ch.marginOf(keeper), keeperBefore + int256(t.rewards), "keeper credited once per liquidation");
        assertEq(ch.totalBadDebtWad(), debtBefore + t.badDebt, "bad debt added");
        _checkFundAfter(f, t);
        _count("liquidateBatch", done != 0);
    }

    // ================================================================ insurance fund

    function stake(uint256 actorSeed, uint256 amountSeed) external {
        address a = _pick(stakers, actorSeed);
        uint256 amount = bound(amountSeed, 1e6, 50_000e6);
        uint256 preview;
        try fund.previewDeposit(amount) returns (uint256 p) {
            preview = p;
        } catch {}
        vm.prank(a);
        try fund.deposit(amount, a) returns (uint256 shares) {
            assertEq(shares, preview, "stake minted other than previewed");
            ghostTokensIn += amount;
            _count("stake", true);
        } catch (bytes memory reason) {
            if (_sel(reason) != ERC4626.ERC4626ExceededMaxDeposit.selector) _unexpected("stake", reason);
            _count("stake", false);
        }
    }

    function requestUnstake(uint256 actorSeed, uint256 sharesSeed) external {
        address a = _pick(stakers, actorSeed);
        uint256 balance = fund.balanceOf(a);
        if (balance == 0) return;
        uint256 shares = bound(sharesSeed, 1, balance);
        vm.prank(a);
        uint256 id = fund.requestUnstake(shares); // nothing may block a request
        _requests.push(Request(id, a));
        _count("requestUnstake", true);
    }

    /// @notice Invariant 7: a claim pays min(value at request, value now plus the losses paid since its
    /// cooldown ended), exactly what `claimable` said; only inside its claim window; none while bad debt is
    /// outstanding. A request past its window lapses instead (stale claims).
    function claim(uint256 requestSeed) external {
        if (_requests.length == 0) return;
        uint256 k = requestSeed % _requests.length;
        Request memory r = _requests[k];
        IInsuranceFund.UnstakeRequest memory u = fund.unstakeRequest(r.id);
        uint256 endsAt = uint256(u.readyAt) + u.claimWindow;
        uint256 valueNow = fund.convertToAssets(u.shares);
        uint256 owed = fund.claimable(r.id);
        uint256 debt = ch.totalBadDebtWad();
        uint256 balanceBefore = usdc.balanceOf(r.owner);
        vm.prank(r.owner);
        try fund.claim(r.id) returns (uint256 paid) {
            assertGe(block.timestamp, u.readyAt, "claimed inside the cooldown");
            assertLt(block.timestamp, endsAt, "claimed after the claim window");
            assertLe(paid, u.assetsAtRequest, "claim above the value at request");
            assertGe(paid, valueNow < u.assetsAtRequest ? valueNow : u.assetsAtRequest, "claim below min");
            assertEq(paid, owed, "claim != claimable");
            if (paid != 0) assertEq(debt, 0, "fund claim paid while bad debt is outstanding");
            assertEq(usdc.balanceOf(r.owner) - balanceBefore, paid, "claim tokens");
            ghostTokensOut += paid;
            _dropRequest(k);
            _count("claim", true);
        } catch (bytes memory reason) {
            bytes4 s = _sel(reason);
            if (s == IInsuranceFund.FundCooldownActive.selector) assertLt(block.timestamp, u.readyAt, "cooldown");
            else if (s == IInsuranceFund.FundClaimWindowPassed.selector) assertGe(block.timestamp, endsAt, "window");
            else if (s == IClearingHouse.VaultBadDebtOutstanding.selector) assertGt(debt, 0, "bad debt revert");
            else _unexpected("claim", reason);
            _count("claim", false);
        }
    }

    /// @notice Anyone lapses a request whose claim window passed: the shares go back to the owner.
    function lapse(uint256 requestSeed, uint256 callerSeed) external {
        if (_requests.length == 0) return;
        uint256 k = requestSeed % _requests.length;
        Request memory r = _requests[k];
        IInsuranceFund.UnstakeRequest memory u = fund.unstakeRequest(r.id);
        uint256 endsAt = uint256(u.readyAt) + u.claimWindow;
        uint256 held = fund.balanceOf(r.owner);
        uint256 reserved = fund.reservedAssets();
        vm.prank(_pick(keepers, callerSeed));
        try fund.lapse(r.id) {
            assertGe(block.timestamp, endsAt, "lapsed inside the claim window");
            assertEq(fund.balanceOf(r.owner), held + u.shares, "lapsed shares not returned");
            assertEq(fund.reservedAssets(), reserved - u.assetsAtRequest, "reserve not released");
            _dropRequest(k);
            _count("lapse", true);
        } catch (bytes memory reason) {
            if (_sel(reason) != IInsuranceFund.FundClaimWindowOpen.selector) _unexpected("lapse", reason);
            assertLt(block.timestamp, endsAt, "window open");
            _count("lapse", false);
        }
    }

    /// @notice A stale claim: time runs to (or past) a request's window end, prices are republished,
    /// the owner tries to claim (refused) and a keeper lapses it.
    function staleClaim(uint256 requestSeed, uint256 lateSeed) external {
        // One call in four: running time to a window's end lapses requests that could have been claimed.
        if (_requests.length == 0 || lateSeed % 4 != 0) return;
        Request memory r = _requests[requestSeed % _requests.length];
        IInsuranceFund.UnstakeRequest memory u = fund.unstakeRequest(r.id);
        uint256 endsAt = uint256(u.readyAt) + u.claimWindow;
        if (block.timestamp < endsAt) vm.warp(endsAt + bound(lateSeed >> 2, 0, 1 days));
        feeds[0].updateAnswer(feeds[0].latestAnswer());
        feeds[1].updateAnswer(feeds[1].latestAnswer());
        vm.prank(r.owner);
        try fund.claim(r.id) {
            fail("a claim past its window succeeded");
        } catch (bytes memory reason) {
            if (_sel(reason) != IInsuranceFund.FundClaimWindowPassed.selector) _unexpected("staleClaim", reason);
        }
        _count("staleClaim", true);
        this.lapse(requestSeed, lateSeed);
    }

    function _dropRequest(uint256 k) internal {
        _requests[k] = _requests[_requests.length - 1];
        _requests.pop();
    }

    function donate(uint256 actorSeed, uint256 amountSeed) external {
        address a = _pick(stakers, actorSeed);
        // one time in four the 1 micro-USDC that once switched ADL off
        uint256 amount = amountSeed % 4 == 0 ? 1 : bound(amountSeed, 1, 20_000e6);
        int256 before = ch.marginOf(address(fund));
        uint256 supply = fund.totalSupply();
        vm.prank(a);
        fund.donate(amount);
        assertEq(ch.marginOf(address(fund)), before + int256(amount * SCALE), "donation credit");
        assertEq(fund.totalSupply(), supply, "a donation minted shares");
        ghostTokensIn += amount;
        _count("donate", true);
    }

    // ================================================================ liquidity pool

    /// @notice An LP deposit is worth what was paid (to rounding) and is refused into a pool under water.
    function lpDeposit(uint256 actorSeed, uint256 amountSeed) external {
        address a = _pick(lps, actorSeed);
        uint256 amount = bound(amountSeed, 1_000e6, 500_000e6);
        int256 equity;
        try ch.poolEquityWad() returns (int256 e) {
            equity = e;
        } catch {}
        vm.prank(a);
        try pool.deposit(amount, a) returns (uint256 shares) {
            assertGe(equity, int256(0), "LP deposit into a pool under water");
            // Minting rounds down by less than one share: worth more than dust once LPs who left at
            // min(equity, margin) left unrealised gains behind a small supply.
            uint256 oneShare = pool.convertToAssets(1) + 1;
            assertApproxEq(pool.convertToAssets(shares), amount, amount / 10_000 + oneShare, "LP deposit lost value");
            ghostTokensIn += amount;
            assertEq(pool.lockedUntil(a), block.timestamp + pool.cooldown(), "deposit lock");
            _count("lpDeposit", true);
        } catch (bytes memory reason) {
            bytes4 s = _sel(reason);
            bool allowed = s == IOracleAdapter.OracleStalePrice.selector
                || (s == ILiquidityPool.PoolInsolvent.selector && equity < 0);
            if (!allowed) _unexpected("lpDeposit", reason);
            _count("lpDeposit", false);
        }
    }

    function lpWithdraw(uint256 actorSeed, uint256 amountSeed) external {
        address a = _pick(lps, actorSeed);
        uint256 assets;
        try pool.previewRedeem(pool.balanceOf(a)) returns (uint256 v) {
            assets = v;
        } catch {
            return; // stale price: the pool cannot value its shares
        }
        if (assets == 0) return;
        uint256 amount = bound(amountSeed, 1, assets);
        uint256 debt = ch.totalBadDebtWad();
        uint256 lockedUntil = pool.lockedUntil(a);
        int256 equity = ch.poolEquityWad();
        vm.prank(a);
        try pool.withdraw(amount, a, a) {
            assertEq(debt, 0, "LP withdrawal while bad debt is outstanding");
            assertGe(block.timestamp, lockedUntil, "LP withdrawal inside the lock");
            ghostTokensOut += amount;
            _count("lpWithdraw", true);
        } catch (bytes memory reason) {
            bytes4 s = _sel(reason);
            bool allowed = (s == ILiquidityPool.PoolSharesLocked.selector && block.timestamp < lockedUntil)
                || (s == IClearingHouse.VaultBadDebtOutstanding.selector && debt != 0)
                || (s == ILiquidityPool.PoolInsolvent.selector && equity < 0)
                || s == IClearingHouse.VaultPoolExposure.selector
                || s == IClearingHouse.VaultInsufficientMargin.selector
                // The exposure check prices every market with open interest, also one whose sums are
                // zero (a book matched at one price), which previewRedeem's pool equity skips.
                || (s == IOracleAdapter.OracleStalePrice.selector && !(_fresh(0) && _fresh(1)));
            if (!allowed) _unexpected("lpWithdraw", reason);
            _count("lpWithdraw", false);
        }
    }

    /// @notice Exits at the maximum: `maxRedeem` (or `maxWithdraw`) never reverts, a call at it succeeds
    /// and pays what the preview said, at a price never above min(equity, margin) per share.
    function lpExitAtMax(uint256 actorSeed, bool byShares) external {
        address a = _pick(lps, actorSeed);
        uint256 most = byShares ? pool.maxRedeem(a) : pool.maxWithdraw(a);
        if (most == 0) return;
        uint256 preview = byShares ? pool.previewRedeem(most) : pool.previewWithdraw(most);
        int256 equity = ch.poolEquityWad();
        int256 poolMargin = ch.marginOf(address(pool));
        uint256 supply = pool.totalSupply();
        uint256 balanceBefore = usdc.balanceOf(a);
        uint256 sharesBefore = pool.balanceOf(a);
        vm.prank(a);
        uint256 result = byShares ? pool.redeem(most, a, a) : pool.withdraw(most, a, a); // must not revert
        assertEq(result, preview, "exit at max differs from its preview");
        uint256 paid = usdc.balanceOf(a) - balanceBefore;
        uint256 burned = sharesBefore - pool.balanceOf(a);
        assertEq(paid, byShares ? result : most, "exit tokens");
        uint256 exitValue = _pos(equity < poolMargin ? equity : poolMargin);
        assertLe(paid * SCALE * (supply + 1e6), (exitValue + SCALE) * burned, "exit above min(equity, margin)");
        ghostTokensOut += paid;
        _count("lpExitAtMax", true);
    }
}
