// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC4626} from "@openzeppelin/contracts/token/ERC20/extensions/ERC4626.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IClearingHouse} from "./interfaces/IClearingHouse.sol";

/// @title Bulwark liquidity pool
/// @notice An ERC-4626 vault over the collateral whose assets are one clearing-house account: the
/// counterparty of every trade. Pool equity = margin + uPnL - funding, each the negative of the traders'
/// totals. Deposits lock the depositor's shares for a cooldown, so nobody can buy in just before an oracle
/// update the pool gains on and leave just after.
contract LiquidityPool is ERC4626, AccessControlDefaultAdminRules, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    bytes32 public constant RISK_ADMIN_ROLE = keccak256("RISK_ADMIN_ROLE");
    uint256 public constant MAX_COOLDOWN = 30 days;

    IClearingHouse public immutable clearingHouse;
    uint256 internal immutable _tokenScale;
    uint32 public cooldown;
    mapping(address account => uint64) public lockedUntil;

    event CooldownUpdated(uint32 cooldown);

    /// @notice Shares of `account` are locked until `until`.
    error PoolSharesLocked(address account, uint256 until);
    /// @notice Deposits lock the receiver's shares, so only the receiver may deposit for itself.
    error PoolReceiverNotCaller(address caller, address receiver);
    error PoolCooldownOutOfBounds(uint256 cooldown, uint256 maxCooldown);
    /// @notice Pool equity is negative: a deposit would only fill the deficit, so deposits wait until
    /// trader profits are realised against it or the deficit is made good.
    error PoolInsolvent(int256 equityWad);

    constructor(IERC20 asset_, IClearingHouse clearingHouse_, uint32 cooldown_, address admin)
        ERC4626(asset_)
        ERC20("Bulwark Liquidity Pool", "bLP")
        AccessControlDefaultAdminRules(1 days, admin)
    {
        clearingHouse = clearingHouse_;
        _tokenScale = 10 ** (18 - ERC20(address(asset_)).decimals());
        _setCooldown(cooldown_);
    }

    function setCooldown(uint32 cooldown_) external onlyRole(RISK_ADMIN_ROLE) {
        _setCooldown(cooldown_);
    }

    /// @notice Pool equity in tokens, rounded down; zero if the pool is under water.
    function totalAssets() public view override returns (uint256) {
        int256 equity = clearingHouse.poolEquityWad();
        return equity <= 0 ? 0 : uint256(equity) / _tokenScale;
    }

    function maxWithdraw(address owner) public view override returns (uint256) {
        return _exitOpen(owner) ? super.maxWithdraw(owner) : 0;
    }

    function maxRedeem(address owner) public view override returns (uint256) {
        return _exitOpen(owner) ? super.maxRedeem(owner) : 0;
    }

    /// @notice Nothing while the pool's equity is negative (see `PoolInsolvent`).
    function maxDeposit(address receiver) public view override returns (uint256) {
        return clearingHouse.poolEquityWad() < 0 ? 0 : super.maxDeposit(receiver);
    }

    function maxMint(address receiver) public view override returns (uint256) {
        return clearingHouse.poolEquityWad() < 0 ? 0 : super.maxMint(receiver);
    }

    function deposit(uint256 assets, address receiver) public override nonReentrant returns (uint256) {
        _requireSolvent();
        return super.deposit(assets, receiver);
    }

    function mint(uint256 shares, address receiver) public override nonReentrant returns (uint256) {
        _requireSolvent();
        return super.mint(shares, receiver);
    }

    function withdraw(uint256 assets, address receiver, address owner) public override nonReentrant returns (uint256) {
        _requireExitOpen(owner);
        return super.withdraw(assets, receiver, owner);
    }

    function redeem(uint256 shares, address receiver, address owner) public override nonReentrant returns (uint256) {
        _requireExitOpen(owner);
        return super.redeem(shares, receiver, owner);
    }

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

    /// @dev With negative equity the share price is zero and new assets would fill the deficit.
    function _requireSolvent() internal view {
        int256 equity = clearingHouse.poolEquityWad();
        if (equity < 0) revert PoolInsolvent(equity);
    }

    /// @dev Names the reason an exit is closed, instead of the generic ERC-4626 maximum error.
    function _requireExitOpen(address owner) internal view {
        if (block.timestamp < lockedUntil[owner]) revert PoolSharesLocked(owner, lockedUntil[owner]);
        uint256 debt = clearingHouse.totalBadDebtWad();
        if (debt != 0) revert IClearingHouse.VaultBadDebtOutstanding(debt);
    }

    function _exitOpen(address owner) internal view returns (bool) {
        return block.timestamp >= lockedUntil[owner] && clearingHouse.totalBadDebtWad() == 0;
    }

    function _setCooldown(uint32 cooldown_) internal {
        if (cooldown_ > MAX_COOLDOWN) revert PoolCooldownOutOfBounds(cooldown_, MAX_COOLDOWN);
        cooldown = cooldown_;
        emit CooldownUpdated(cooldown_);
    }
}
