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
import {IInsuranceFund} from "./interfaces/IInsuranceFund.sol";
import {FixedPointMath} from "./libraries/FixedPointMath.sol";

/// @title Bulwark insurance fund
/// @notice Stakers' capital behind liquidation shortfalls. Its assets are its clearing-house margin;
/// padding and the fee share arrive there directly. Payouts go only to shortfalls, at most what is
/// available and at most a cap per window. Unstaking is request, cooldown, claim, paying
/// min(value at request, value at claim): stakers bear losses in the cooldown and forfeit gains.
contract InsuranceFund is IInsuranceFund, ERC4626, AccessControlDefaultAdminRules, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using FixedPointMath for uint256;

    bytes32 public constant RISK_ADMIN_ROLE = keccak256("RISK_ADMIN_ROLE");

    IClearingHouse public immutable clearingHouse;
    uint256 internal immutable _tokenScale;

    uint32 public cooldown;
    uint32 public windowDuration;
    uint64 public windowCapRatioWad;
    uint256 public capAssets;
    address public treasury;

    uint64 public windowStart;
    uint256 public windowCapWad;
    uint256 public windowPaidWad;

    uint256 public nextRequestId;
    mapping(uint256 requestId => UnstakeRequest) internal _requests;

    constructor(
        IERC20 asset_,
        IClearingHouse clearingHouse_,
        uint32 cooldown_,
        uint32 windowDuration_,
        uint64 windowCapRatioWad_,
        uint256 capAssets_,
        address treasury_,
        address admin
    ) ERC4626(asset_) ERC20("Bulwark Insurance Fund", "bIF") AccessControlDefaultAdminRules(1 days, admin) {
        clearingHouse = clearingHouse_;
        _tokenScale = 10 ** (18 - ERC20(address(asset_)).decimals());
        _setParams(cooldown_, windowDuration_, windowCapRatioWad_, capAssets_, treasury_);
    }

    function setParams(
        uint32 cooldown_,
        uint32 windowDuration_,
        uint64 windowCapRatioWad_,
        uint256 capAssets_,
        address treasury_
    ) external onlyRole(RISK_ADMIN_ROLE) {
        _setParams(cooldown_, windowDuration_, windowCapRatioWad_, capAssets_, treasury_);
    }

    // ================================================================ ERC-4626

    /// @notice The fund's clearing-house margin in tokens, rounded down.
    function totalAssets() public view override returns (uint256) {
        return assetsWad() / _tokenScale;
    }

    /// @notice Staking stops at the cap.
    function maxDeposit(address) public view override returns (uint256) {
        uint256 assets = totalAssets();
        return assets >= capAssets ? 0 : capAssets - assets;
    }

    function maxMint(address receiver) public view override returns (uint256) {
        return convertToShares(maxDeposit(receiver));
    }

    function maxWithdraw(address) public pure override returns (uint256) {
        return 0;
    }

    function maxRedeem(address) public pure override returns (uint256) {
        return 0;
    }

    function deposit(uint256 assets, address receiver) public override nonReentrant returns (uint256) {
        return super.deposit(assets, receiver);
    }

    function mint(uint256 shares, address receiver) public override nonReentrant returns (uint256) {
        return super.mint(shares, receiver);
    }

    function withdraw(uint256, address, address) public pure override returns (uint256) {
        revert FundUseRequestUnstake();
    }

    function redeem(uint256, address, address) public pure override returns (uint256) {
        revert FundUseRequestUnstake();
    }

    // ================================================================ unstaking

    /// @notice Locks `shares` in escrow and records what they are worth now.
    function requestUnstake(uint256 shares) external nonReentrant returns (uint256 requestId) {
        if (shares == 0) revert FundZeroShares();
        uint256 assets = previewRedeem(shares);
        _transfer(msg.sender, address(this), shares);
        uint64 readyAt = uint64(block.timestamp + cooldown);
        requestId = nextRequestId++;
        _requests[requestId] = UnstakeRequest(msg.sender, readyAt, shares, assets);
        emit UnstakeRequested(requestId, msg.sender, shares, assets, readyAt);
    }

    /// @notice Pays min(value at request, value now) for a request whose cooldown has passed.
    function claim(uint256 requestId) external nonReentrant returns (uint256 assets) {
        UnstakeRequest memory r = _requests[requestId];
        if (r.owner == address(0)) revert FundUnknownRequest(requestId);
        if (r.owner != msg.sender) revert FundNotRequestOwner(requestId, msg.sender);
        if (block.timestamp < r.readyAt) revert FundCooldownActive(requestId, r.readyAt);
        uint256 valueNow = convertToAssets(r.shares);
        assets = valueNow.min(r.assetsAtRequest);
        delete _requests[requestId];
        _burn(address(this), r.shares);
        if (assets != 0) clearingHouse.withdraw(assets, r.owner);
        emit UnstakeClaimed(requestId, r.owner, r.shares, assets, valueNow - assets);
    }

    function unstakeRequest(uint256 requestId) external view returns (UnstakeRequest memory) {
        return _requests[requestId];
    }

    // ================================================================ inflows and outflows

    /// @notice Gives `assets` tokens to the fund without taking shares.
    function donate(uint256 assets) external nonReentrant {
        IERC20(asset()).safeTransferFrom(msg.sender, address(this), assets);
        IERC20(asset()).forceApprove(address(clearingHouse), assets);
        clearingHouse.deposit(address(this), assets);
        emit Donated(msg.sender, assets);
    }

    /// @inheritdoc IInsuranceFund
    function coverShortfall(uint256 shortfallWad) external returns (uint256 paidWad) {
        if (msg.sender != address(clearingHouse)) revert FundUnauthorized(msg.sender);
        _rollWindow();
        uint256 remaining = windowCapWad - windowPaidWad;
        paidWad = shortfallWad.min(assetsWad()).min(remaining);
        windowPaidWad += paidWad;
        emit ShortfallCovered(shortfallWad, paidWad, windowPaidWad, windowCapWad);
    }

    /// @notice Sends the assets above the cap to the treasury; anyone may call.
    function sweepSurplus() external nonReentrant returns (uint256 amount) {
        uint256 assets = totalAssets();
        if (assets <= capAssets) revert FundBelowCap(assets, capAssets);
        amount = assets - capAssets;
        clearingHouse.withdraw(amount, treasury);
        emit SurplusSwept(treasury, amount);
    }

    // ================================================================ views

    /// @inheritdoc IInsuranceFund
    function assetsWad() public view returns (uint256) {
        int256 margin = clearingHouse.marginOf(address(this));
        return margin > 0 ? uint256(margin) : 0;
    }

    /// @inheritdoc IInsuranceFund
    function availableWad() external view returns (uint256) {
        return assetsWad().min(windowRemainingWad());
    }

    /// @inheritdoc IInsuranceFund
    function windowRemainingWad() public view returns (uint256) {
        if (block.timestamp >= uint256(windowStart) + windowDuration) {
            return assetsWad().mulWadDown(windowCapRatioWad);
        }
        return windowCapWad - windowPaidWad;
    }

    // ================================================================ internals

    function _deposit(address caller, address receiver, uint256 assets, uint256 shares) internal override {
        super._deposit(caller, receiver, assets, shares);
        IERC20(asset()).forceApprove(address(clearingHouse), assets);
        clearingHouse.deposit(address(this), assets);
    }

    function _decimalsOffset() internal pure override returns (uint8) {
        return 6;
    }

    function _rollWindow() internal {
        if (block.timestamp < uint256(windowStart) + windowDuration) return;
        windowStart = uint64(block.timestamp);
        windowCapWad = assetsWad().mulWadDown(windowCapRatioWad);
        windowPaidWad = 0;
    }

    function _setParams(
        uint32 cooldown_,
        uint32 windowDuration_,
        uint64 windowCapRatioWad_,
        uint256 capAssets_,
        address treasury_
    ) internal {
        _check("cooldown", cooldown_, 1 days, 30 days);
        _check("windowDuration", windowDuration_, 1 hours, 7 days);
        _check("windowCapRatio", windowCapRatioWad_, 0.01e18, 1e18);
        _check("treasury", treasury_ == address(0) ? 0 : 1, 1, 1);
        cooldown = cooldown_;
        windowDuration = windowDuration_;
        windowCapRatioWad = windowCapRatioWad_;
        capAssets = capAssets_;
        treasury = treasury_;
        emit FundParamsUpdated(cooldown_, windowDuration_, windowCapRatioWad_, capAssets_, treasury_);
    }

    function _check(bytes32 field, uint256 value, uint256 minValue, uint256 maxValue) internal pure {
        if (value < minValue || value > maxValue) revert FundParamOutOfBounds(field, value, minValue, maxValue);
    }
}
