// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ClearingHouse} from "../../../contracts/ClearingHouse.sol";
import {InsuranceFund} from "../../../contracts/InsuranceFund.sol";
import {LiquidityPool} from "../../../contracts/LiquidityPool.sol";
import {IClearingHouse} from "../../../contracts/interfaces/IClearingHouse.sol";
import {MockAggregator} from "../../../contracts/mocks/MockAggregator.sol";
import {MockUSDC} from "../../../contracts/mocks/MockUSDC.sol";
import {PositionMath} from "../../../contracts/libraries/PositionMath.sol";
import {Test} from "../utils/Test.sol";
import {Vm} from "../utils/Vm.sol";

/// @title State, actors, ghost sums and the read helpers the invariant handler shares.
/// @notice Every contract call the handler makes is wrapped: an expected revert is checked against the
/// state that explains it, an unexpected one fails the run with its selector, and a success is checked
/// against the per-call invariants (docs/protocol.md, Conservation 3-10). The global sums (1-2) are checked by
/// the invariant test after every call.
abstract contract HandlerBase is Test {
    uint256 internal constant WAD = 1e18;
    uint256 internal constant SCALE = 1e12;
    uint256 internal constant HEARTBEAT = 3600;
    /// @dev Rounding slack per position touched: every fill rounds by at most one wei against the account.
    int256 internal constant DUST = 16;

    ClearingHouse public immutable ch;
    LiquidityPool public immutable pool;
    InsuranceFund public immutable fund;
    MockUSDC public immutable usdc;
    MockAggregator[2] internal feeds;

    address[] public traders;
    address[] public keepers;
    address[] public stakers;
    address[] public lps;
    address[] internal _everyone;

    struct Request {
        uint256 id;
        address owner;
    }

    Request[] internal _requests;

    // ---------------------------------------------------------------- ghost sums

    uint256 public ghostTokensIn; // deposits, stakes, donations, LP deposits
    uint256 public ghostTokensOut; // withdrawals, claims, LP withdrawals
    uint256 public ghostBadDebtRecorded;
    uint256 public ghostBadDebtRepaid; // fund cover, ADL, close haircuts, socialisation
    uint256 public ghostFundPaidWad; // everything coverShortfall paid
    mapping(bytes32 action => uint256) public successes;
    mapping(bytes32 action => uint256) public attempts;

    // ---------------------------------------------------------------- snapshots

    struct FundView {
        int256 margin;
        uint256 available;
        uint256 windowStart;
        uint256 windowCap;
        uint256 windowPaid;
    }

    struct AccountView {
        bool ok; // false when the health view reverted (stale price)
        int256 equity;
        uint256 mmr;
        bool liquidatable;
        bool fresh; // every market it holds has a fresh price
        int256 margin;
    }

    constructor(
        ClearingHouse ch_,
        LiquidityPool pool_,
        InsuranceFund fund_,
        MockUSDC usdc_,
        MockAggregator eth,
        MockAggregator btc
    ) {
        ch = ch_;
        pool = pool_;
        fund = fund_;
        usdc = usdc_;
        feeds[0] = eth;
        feeds[1] = btc;
        for (uint256 i; i < 5; ++i) traders.push(_actor("trader", i));
        for (uint256 i; i < 2; ++i) keepers.push(_actor("keeper", i));
        for (uint256 i; i < 2; ++i) stakers.push(_actor("staker", i));
        for (uint256 i; i < 2; ++i) lps.push(_actor("lp", i));
    }

    function everyone() external view returns (address[] memory) {
        return _everyone;
    }

    function traderList() external view returns (address[] memory) {
        return traders;
    }

    function requestCount() external view returns (uint256) {
        return _requests.length;
    }

    function _actor(string memory role, uint256 i) private returns (address a) {
        a = address(uint160(uint256(keccak256(abi.encode(role, i)))));
        vm.label(a, string.concat(role, _u(i)));
        _everyone.push(a);
    }

    // ---------------------------------------------------------------- picking

    function _pick(address[] storage list, uint256 seed) internal view returns (address) {
        return list[seed % list.length];
    }

    function _count(bytes32 action, bool success) internal {
        ++attempts[action];
        if (success) ++successes[action];
    }

    // ---------------------------------------------------------------- prices

    function _feedPrice(uint256 m) internal view returns (uint256) {
        return uint256(feeds[m].latestAnswer()) * 1e10;
    }

    function _fresh(uint256 m) internal view returns (bool) {
        uint256 updatedAt = feeds[m].latestTimestamp();
        return updatedAt <= block.timestamp && block.timestamp - updatedAt <= HEARTBEAT;
    }

    /// @dev True when every market `account` holds a position in has a fresh price.
    function _freshFor(address account) internal view returns (bool) {
        for (uint256 m; m < 2; ++m) {
            if (ch.positionOf(account, m).sizeWad != 0 && !_fresh(m)) return false;
        }
        return true;
    }

    /// @dev The market a non-bankrupt liquidation of `account` must take first (docs/protocol.md, section
    /// 3): positions the pool's margin can pay on a close before those it cannot, then the larger notional,
    /// at the feed prices (0 if flat).
    function _largestMarket(address account) internal view returns (uint256 best) {
        bool bestPayable;
        uint256 bestNotional;
        for (uint256 m; m < 2; ++m) {
            if (ch.positionOf(account, m).sizeWad == 0) continue;
            (bool payable_, uint256 notional) = _leg(account, m);
            if (bestNotional == 0 || _before(payable_, notional, bestPayable, bestNotional)) {
                (best, bestPayable, bestNotional) = (m, payable_, notional);
            }
        }
    }

    /// @dev Whether a leg (payable, notional) goes before another in a liquidation.
    function _before(bool payableA, uint256 notionalA, bool payableB, uint256 notionalB)
        internal
        pure
        returns (bool)
    {
        return payableA != payableB ? payableA : notionalA > notionalB;
    }

    /// @dev A position's notional at the feed price, and whether the pool's margin can pay its whole close:
    /// its value (uPnL less pending funding) at most the pool's margin. Without a funding index (a stale
    /// price) it counts as payable, so that the order falls back to notional.
    function _leg(address account, uint256 m) internal view returns (bool payable_, uint256 notional) {
        IClearingHouse.Position memory p = ch.positionOf(account, m);
        uint256 price = _feedPrice(m);
        notional = PositionMath.notional(p.sizeWad, price);
        try ch.currentFundingIndexWad(m) returns (int256 index) {
            int256 pending = PositionMath.fundingBasis(p.sizeWad, index) - p.fundingBasisWad;
            int256 value = PositionMath.unrealizedPnl(p.sizeWad, p.openNotionalWad, price) - pending;
            payable_ = value <= ch.marginOf(address(pool));
        } catch {
            payable_ = true;
        }
    }

    // ---------------------------------------------------------------- views that may revert

    function _account(address a) internal view returns (AccountView memory v) {
        v.margin = ch.marginOf(a);
        v.fresh = _freshFor(a);
        try ch.healthOf(a) returns (IClearingHouse.Health memory h) {
            v.ok = true;
            v.equity = h.equityWad;
            v.mmr = h.maintenanceMarginWad;
            v.liquidatable = h.liquidatable;
        } catch {}
    }

    function _fundView() internal view returns (FundView memory f) {
        f.margin = ch.marginOf(address(fund));
        f.available = fund.availableWad();
        f.windowStart = fund.windowStart();
        f.windowCap = fund.windowCapWad();
        f.windowPaid = fund.windowPaidWad();
    }

    /// @dev The most the fund may pay in one settlement starting from `f`, after `inflow` reached it first.
    function _payoutBound(FundView memory f, uint256 inflow) internal view returns (uint256) {
        uint256 assets = uint256(f.margin) + inflow;
        uint256 window = block.timestamp >= f.windowStart + fund.windowDuration()
            ? assets * fund.windowCapRatioWad() / WAD
            : f.windowCap - f.windowPaid;
        return assets < window ? assets : window;
    }

    function _margins() internal view returns (int256[] memory m) {
        m = new int256[](_everyone.length);
        for (uint256 i; i < m.length; ++i) m[i] = ch.marginOf(_everyone[i]);
    }

    function _flat() internal view returns (bool[] memory f) {
        f = new bool[](_everyone.length);
        for (uint256 i; i < f.length; ++i) f[i] = ch.openMarketsOf(_everyone[i]).length == 0;
    }

    /// @dev Invariant 6: an account with no position that did not act never loses margin.
    function _checkBystanders(int256[] memory before, bool[] memory flat, address actor) internal view {
        for (uint256 i; i < before.length; ++i) {
            address a = _everyone[i];
            if (a == actor || !flat[i]) continue;
            assertGe(ch.marginOf(a), before[i], "a flat bystander lost margin");
        }
    }

    // ---------------------------------------------------------------- revert triage

    function _sel(bytes memory reason) internal pure returns (bytes4 s) {
        if (reason.length >= 4) s = bytes4(reason);
    }

    function _unexpected(string memory action, bytes memory reason) internal pure {
        revert(string.concat(action, ": unexpected revert ", _hex(reason)));
    }

    function _hex(bytes memory data) internal pure returns (string memory) {
        bytes memory digits = "0123456789abcdef";
        uint256 n = data.length < 132 ? data.length : 132;
        bytes memory out = new bytes(2 + 2 * n);
        out[0] = "0";
        out[1] = "x";
        for (uint256 i; i < n; ++i) {
            out[2 + 2 * i] = digits[uint8(data[i]) >> 4];
            out[3 + 2 * i] = digits[uint8(data[i]) & 15];
        }
        return string(out);
    }

    // ---------------------------------------------------------------- logs

    function _isCh(Vm.Log memory log, bytes32 topic) internal view returns (bool) {
        return log.emitter == address(ch) && log.topics.length != 0 && log.topics[0] == topic;
    }

    function _topicAddress(Vm.Log memory log, uint256 i) internal pure returns (address) {
        return address(uint160(uint256(log.topics[i])));
    }

    function _abs(int256 x) internal pure returns (uint256) {
        return x >= 0 ? uint256(x) : uint256(-x);
    }

    function _pos(int256 x) internal pure returns (uint256) {
        return x > 0 ? uint256(x) : 0;
    }
}
