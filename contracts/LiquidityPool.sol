// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC4626} from "@openzeppelin/contracts/token/ERC20/extensions/ERC4626.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {IClearingHouse} from "./interfaces/IClearingHouse.sol";
import {ILiquidityPool} from "./interfaces/ILiquidityPool.sol";
import {IOracleAdapter} from "./interfaces/IOracleAdapter.sol";
import {FixedPointMath} from "./libraries/FixedPointMath.sol";

/// @dev The clearing house's public `oracle` getter (not part of IClearingHouse).
interface IOracleSource {
    function oracle() external view returns (IOracleAdapter);
}

/// @title Bulwark liquidity pool
/// @notice An ERC-4626 vault over the collateral whose assets are one clearing-house account: the
/// counterparty of every trade. Pool equity = margin + uPnL - funding, each the negative of the traders'
/// totals. Deposits are priced at equity and lock the depositor's shares for a cooldown, so nobody can
/// buy in just before an oracle update the pool gains on and leave just after; exits are priced at
/// min(equity, margin), so an exit never takes a gain the pool has not collected.
contract LiquidityPool is ILiquidityPool, ERC4626, AccessControlDefaultAdminRules, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using FixedPointMath for uint256;
    using FixedPointMath for int256;

    bytes32 public constant RISK_ADMIN_ROLE = keccak256("RISK_ADMIN_ROLE");
    uint256 public constant MAX_COOLDOWN = 30 days;

    IClearingHouse public immutable clearingHouse;
    uint256 internal immutable _tokenScale;
    uint32 public cooldown;
    mapping(address account => uint64) public lockedUntil;

    constructor(IERC20 asset_, IClearingHouse clearingHouse_, uint32 cooldown_, address admin)
        ERC4626(asset_)
        ERC20("Bulwark Liquidity Pool", "bLP")
        AccessControlDefaultAdminRules(1 days, admin)
    {
        address named = clearingHouse_.pool();
        if (named != address(this)) revert PoolNotNamedByClearingHouse(address(clearingHouse_), named);
        clearingHouse = clearingHouse_;
        _tokenScale = 10 ** (18 - ERC20(address(asset_)).decimals());
        _setCooldown(cooldown_);
    }

    function setCooldown(uint32 cooldown_) external onlyRole(RISK_ADMIN_ROLE) {
        _setCooldown(cooldown_);
    }

    // ================================================================ valuation

    /// @notice Pool equity in tokens, rounded down; zero if the pool is under water. Deposits use it.
    function totalAssets() public view override returns (uint256) {
        int256 equity = clearingHouse.poolEquityWad();
        return equity <= 0 ? 0 : uint256(equity) / _tokenScale;
    }

    /// @inheritdoc ILiquidityPool
    function exitAssets() public view returns (uint256) {
        return _exitAssets(clearingHouse.poolEquityWad());
    }

    /// @notice Assets paid for `shares` at the exit price, rounded down.
    function previewRedeem(uint256 shares) public view override returns (uint256) {
        return _toAssetsAtExit(shares, exitAssets());
    }

    /// @notice Shares burned to pay `assets` at the exit price, rounded up.
    function previewWithdraw(uint256 assets) public view override returns (uint256) {
        return Math.mulDiv(assets, totalSupply() + 10 ** _decimalsOffset(), exitAssets() + 1, Math.Rounding.Ceil);
    }

    // ================================================================ limits (never revert)

    /// @notice Zero while the pool is under water or a price is stale; else what its clearing-house
    /// margin (an int112, in the first slot of Ledger.Layout) can still take.
    function maxDeposit(address) public view override returns (uint256) {
        (bool ok, int256 equity) = _equity();
        if (!ok || equity < 0) return 0;
        int256 margin = clearingHouse.marginOf(address(this));
        return (uint256(uint112(type(int112).max)) - margin.positivePart()) / _tokenScale;
    }

    function maxMint(address receiver) public view override returns (uint256) {
        uint256 assets = maxDeposit(receiver);
        return assets == 0 ? 0 : convertToShares(assets);
    }

    /// @notice The owner's shares at the exit price, within what the clearing house lets the pool take out
    /// now (its margin and the exposure cap); zero while locked, while bad debt is outstanding, while the
    /// pool is under water or a price is stale.
    function maxWithdraw(address owner) public view override returns (uint256) {
        (bool open, uint256 exitValue, uint256 limit) = _exitLimits(owner);
        if (!open) return 0;
        return _toAssetsAtExit(balanceOf(owner), exitValue).min(limit);
    }

    /// @notice The most shares `redeem` takes from the owner now: exact, and zero when they would pay
    /// nothing (see `maxWithdraw`).
    function maxRedeem(address owner) public view override returns (uint256) {
        (bool open, uint256 exitValue, uint256 limit) = _exitLimits(owner);
        if (!open) return 0;
        // the largest s with floor(s x (exitValue + 1) / supply) <= limit
        uint256 supply = totalSupply() + 10 ** _decimalsOffset();
        uint256 most = Math.mulDiv(limit + 1, supply, exitValue + 1, Math.Rounding.Ceil) - 1;
        uint256 shares = balanceOf(owner).min(most);
        return _toAssetsAtExit(shares, exitValue) == 0 ? 0 : shares;
    }

    // ================================================================ entry points

    /// @dev A zero amount is a no-op, so a call at a maximum of zero succeeds.
    function deposit(uint256 assets, address receiver) public override nonReentrant returns (uint256) {
        if (assets == 0) return 0;
        _requireSolvent();
        return super.deposit(assets, receiver);
    }

    function mint(uint256 shares, address receiver) public override nonReentrant returns (uint256) {
        if (shares == 0) return 0;
        _requireSolvent();
        return super.mint(shares, receiver);
    }

    /// @dev Checks the owner's shares here and leaves the pool-wide limits to the clearing house, so a
    /// refusal names its reason (`VaultPoolExposure`, `VaultInsufficientMargin`).
    function withdraw(uint256 assets, address receiver, address owner) public override nonReentrant returns (uint256) {
        if (assets == 0) return 0;
        uint256 exitValue = _exitAssets(_requireExitOpen(owner));
        uint256 shares = Math.mulDiv(assets, totalSupply() + 10 ** _decimalsOffset(), exitValue + 1, Math.Rounding.Ceil);
        if (shares > balanceOf(owner)) revert ERC4626ExceededMaxWithdraw(owner, assets, maxWithdraw(owner));
        _withdraw(_msgSender(), receiver, owner, assets, shares);
        return shares;
    }

    function redeem(uint256 shares, address receiver, address owner) public override nonReentrant returns (uint256) {
        if (shares == 0) return 0;
        int256 equity = _requireExitOpen(owner);
        if (shares > balanceOf(owner)) revert ERC4626ExceededMaxRedeem(owner, shares, maxRedeem(owner));
        uint256 assets = _toAssetsAtExit(shares, _exitAssets(equity));
        if (assets == 0) revert PoolRedeemsNothing(shares);
        _withdraw(_msgSender(), receiver, owner, assets, shares);
        return assets;
    }

    // ================================================================ internals

    function _deposit(address caller, address receiver, uint256 assets, uint256 shares) internal override {
        if (caller != receiver) revert PoolReceiverNotCaller(caller, receiver);
        lockedUntil[receiver] = uint64(block.timestamp + cooldown);
        super._deposit(caller, receiver, assets, shares);
        IERC20(asset()).forceApprove(address(clearingHouse), assets);
        clearingHouse.deposit(address(this), assets);
    }

    function _withdraw(address caller, address receiver, address owner, uint256 assets, uint256 shares)
        internal
        override
    {
        if (caller != owner) _spendAllowance(owner, caller, shares);
        _burn(owner, shares);
        // The clearing house checks the exposure cap and bad debt, then pays the receiver directly.
        clearingHouse.withdraw(assets, receiver);
        emit Withdraw(caller, receiver, owner, assets, shares);
    }

    /// @dev Locked shares can be neither transferred nor burned.
    function _update(address from, address to, uint256 value) internal override {
        if (from != address(0) && block.timestamp < lockedUntil[from]) {
            revert PoolSharesLocked(from, lockedUntil[from]);
        }
        super._update(from, to, value);
    }

    function _decimalsOffset() internal pure override returns (uint8) {
        return 6;
    }

    function _exitAssets(int256 equityWad) internal view returns (uint256) {
        int256 margin = clearingHouse.marginOf(address(this));
        int256 value = equityWad < margin ? equityWad : margin;
        return value.positivePart() / _tokenScale;
    }

    function _toAssetsAtExit(uint256 shares, uint256 exitValue) internal view returns (uint256) {
        return Math.mulDiv(shares, exitValue + 1, totalSupply() + 10 ** _decimalsOffset());
    }

    /// @dev Pool equity, or false when a price it needs is stale or invalid.
    function _equity() internal view returns (bool ok, int256 equity) {
        try clearingHouse.poolEquityWad() returns (int256 e) {
            return (true, e);
        } catch {
            return (false, 0);
        }
    }

    /// @dev Whether the owner may exit now, the exit value of all shares, and the most tokens the
    /// clearing house lets the pool withdraw now. Mirrors ClearingHouse.withdraw for the pool: no bad
    /// debt, amount <= margin, and in every market max(long OI, short OI) x price <= k x (equity -
    /// amount), with the same roundings (exposure up, cap down).
    function _exitLimits(address owner) internal view returns (bool open, uint256 exitValue, uint256 limit) {
        if (block.timestamp < lockedUntil[owner] || clearingHouse.totalBadDebtWad() != 0) return (false, 0, 0);
        (bool ok, int256 equity) = _equity();
        if (!ok || equity < 0) return (false, 0, 0);
        exitValue = _exitAssets(equity);
        int256 margin = clearingHouse.marginOf(address(this));
        limit = margin.positivePart() / _tokenScale;
        (ok, limit) = _exposureLimit(equity, limit);
        open = ok;
    }

    /// @dev Lowers `limit` to the largest withdrawal w (whole tokens) with, in every market with open
    /// interest, exposure <= floor((equity - w) x k / 1e18), i.e. equity - w >= ceil(exposure x 1e18 / k).
    function _exposureLimit(int256 equity, uint256 limit) internal view returns (bool ok, uint256) {
        IOracleAdapter oracle = IOracleSource(address(clearingHouse)).oracle();
        uint256 k = clearingHouse.riskParams().poolExposureMultipleWad;
        uint256 n = clearingHouse.marketCount();
        uint256 needed = 0; // the equity the largest exposure needs
        for (uint256 m; m < n; ++m) {
            IClearingHouse.MarketState memory st = clearingHouse.marketState(m);
            uint256 side = uint256(st.longOpenInterestWad).max(st.shortOpenInterestWad);
            if (side == 0) continue;
            try oracle.priceWad(m) returns (uint256 priceWad) {
                uint256 exposure = side.mulWadUp(priceWad);
                needed = needed.max(Math.mulDiv(exposure, 1e18, k, Math.Rounding.Ceil));
            } catch {
                return (false, 0);
            }
        }
        if (needed == 0) return (true, limit);
        if (equity < 0 || uint256(equity) < needed) return (true, 0);
        return (true, limit.min((uint256(equity) - needed) / _tokenScale));
    }

    /// @dev With negative equity the share price is zero and new assets would fill the deficit.
    function _requireSolvent() internal view returns (int256 equity) {
        equity = clearingHouse.poolEquityWad();
        if (equity < 0) revert PoolInsolvent(equity);
    }

    /// @dev Names the reason an exit is closed, instead of the generic ERC-4626 maximum error; returns
    /// the pool's equity.
    function _requireExitOpen(address owner) internal view returns (int256) {
        if (block.timestamp < lockedUntil[owner]) revert PoolSharesLocked(owner, lockedUntil[owner]);
        uint256 debt = clearingHouse.totalBadDebtWad();
        if (debt != 0) revert IClearingHouse.VaultBadDebtOutstanding(debt);
        return _requireSolvent();
    }

    function _setCooldown(uint32 cooldown_) internal {
        if (cooldown_ > MAX_COOLDOWN) revert PoolCooldownOutOfBounds(cooldown_, MAX_COOLDOWN);
        cooldown = cooldown_;
        emit CooldownUpdated(cooldown_);
    }
}
