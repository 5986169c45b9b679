// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC4626} from "@openzeppelin/contracts/token/ERC20/extensions/ERC4626.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IClearingHouse} from "./interfaces/IClearingHouse.sol";
import {IInsuranceFund} from "./interfaces/IInsuranceFund.sol";
import {FixedPointMath} from "./libraries/FixedPointMath.sol";

/// @title Bulwark insurance fund
/// @notice Stakers' capital behind liquidation shortfalls. Its assets are its clearing-house margin;
/// padding and the fee share arrive there directly. Payouts go only to shortfalls, at most what is
/// available and at most a cap per window. Unstaking is request, cooldown, claim within the claim window,
/// paying min(value at request, value at claim): stakers bear losses in the cooldown and forfeit gains.
/// Shares whose owner can leave within the current payout window never back a payout: the promise
/// (available, window cap) is computed on the free assets, the margin less the values at request of the
/// requests that mature by the window's end; a loss paid after a request's cooldown is added back to its
/// claim, so claiming before or after a payout pays the same. The other shares bear that loss: the
/// add-back is a liability (`sparedWad`) deducted from the assets shares are priced on.
contract InsuranceFund is IInsuranceFund, ERC4626, AccessControlDefaultAdminRules, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using FixedPointMath for uint256;
    using Checkpoints for Checkpoints.Trace208;

    bytes32 public constant RISK_ADMIN_ROLE = keccak256("RISK_ADMIN_ROLE");
    uint32 public constant DEFAULT_CLAIM_WINDOW = 7 days;
    uint32 public constant MIN_CLAIM_WINDOW = 1 days;
    uint32 public constant MAX_CLAIM_WINDOW = 30 days;

    IClearingHouse public immutable clearingHouse;
    uint256 internal immutable _tokenScale;

    uint32 public cooldown;
    uint32 public windowDuration;
    uint64 public windowCapRatioWad;
    uint256 public capAssets;
    address public treasury;

    /// @dev The current payout window in one slot: what a payout and `availableWad` read and write.
    /// The cap is bounded by 2^96 - 1 WAD (79 billion tokens), the largest promise a window makes.
    struct Window {
        uint64 start;
        uint96 capWad;
        uint96 paidWad;
    }

    Window internal _window;

    uint256 public nextRequestId;
    mapping(uint256 requestId => UnstakeRequest) internal _requests;
    uint32 public claimWindow;
    /// @dev Cumulative values at request (tokens) of every request ever made, by `readyAt` (never
    /// decreasing): with the released assets, what the open requests maturing by a given time may claim.
    Checkpoints.Trace208 internal _reserveByReadyAt;
    /// @dev Cumulative values at request (tokens) and escrowed shares of the requests claimed or lapsed
    /// (all of them matured), in one slot.
    struct Released {
        uint128 assets;
        uint128 shares;
    }

    Released internal _released;
    /// @dev Cumulative payouts per bearing share (WAD assets x 1e18 / shares), by time: what a request is
    /// spared after its cooldown. Written only while a request is open.
    Checkpoints.Trace208 internal _lossPerShare;
    /// @dev Cumulative escrowed shares of every request ever made, by `readyAt`: with the released
    /// shares, the shares of the open requests that have matured (claims and lapses come after `readyAt`).
    Checkpoints.Trace208 internal _sharesByReadyAt;
    /// @inheritdoc IInsuranceFund
    uint256 public sparedWad;

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
        address named = address(clearingHouse_.fund());
        if (named != address(this)) revert FundNotNamedByClearingHouse(address(clearingHouse_), named);
        clearingHouse = clearingHouse_;
        _tokenScale = 10 ** (18 - ERC20(address(asset_)).decimals());
        _setParams(cooldown_, windowDuration_, windowCapRatioWad_, capAssets_, treasury_);
        _setClaimWindow(DEFAULT_CLAIM_WINDOW);
    }

    /// @notice Sets the claim window of requests made from now on, within [1 day, 30 days].
    function setClaimWindow(uint32 claimWindow_) external onlyRole(RISK_ADMIN_ROLE) {
        _setClaimWindow(claimWindow_);
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

    /// @notice The fund's clearing-house margin in tokens, rounded down. Shares are priced on
    /// `shareAssets` (the margin less what matured requests are spared).
    function totalAssets() public view override returns (uint256) {
        return assetsWad() / _tokenScale;
    }

    /// @notice Staking stops at the cap (and at what a clearing-house margin can hold). Never reverts.
    /// Zero while a spared liability is not below the margin: the shares are then priced at zero.
    function maxDeposit(address) public view override returns (uint256) {
        uint256 spared = sparedWad;
        if (spared != 0 && assetsWad() <= spared) return 0;
        uint256 assets = totalAssets();
        uint256 room = assets >= capAssets ? 0 : capAssets - assets;
        return room.min(_marginRoomTokens());
    }

    function maxMint(address receiver) public view override returns (uint256) {
        return convertToShares(maxDeposit(receiver));
    }

    /// @notice Zero: shares leave only through `requestUnstake` and `claim`.
    function maxWithdraw(address) public pure override returns (uint256) {
        return 0;
    }

    /// @notice Zero: shares leave only through `requestUnstake` and `claim`.
    function maxRedeem(address) public pure override returns (uint256) {
        return 0;
    }

    /// @dev A zero amount is a no-op, so a call at a maximum of zero succeeds.
    function deposit(uint256 assets, address receiver) public override nonReentrant returns (uint256) {
        if (assets == 0) return 0;
        return super.deposit(assets, receiver);
    }

    function mint(uint256 shares, address receiver) public override nonReentrant returns (uint256) {
        if (shares == 0) return 0;
        return super.mint(shares, receiver);
    }

    function withdraw(uint256 assets, address, address) public pure override returns (uint256) {
        if (assets != 0) revert FundUseRequestUnstake();
        return 0;
    }

    function redeem(uint256 shares, address, address) public pure override returns (uint256) {
        if (shares != 0) revert FundUseRequestUnstake();
        return 0;
    }

    // ================================================================ unstaking

    /// @inheritdoc IInsuranceFund
    function requestUnstake(uint256 shares) external nonReentrant returns (uint256 requestId) {
        if (shares == 0) revert FundZeroShares();
        uint256 assets = previewRedeem(shares);
        _transfer(msg.sender, address(this), shares);
        // Requests mature in the order they are made, even after the cooldown is shortened.
        (, uint48 lastReadyAt, uint208 reserved) = _reserveByReadyAt.latestCheckpoint();
        uint64 readyAt = uint64(uint256(lastReadyAt).max(block.timestamp + cooldown));
        _reserveByReadyAt.push(uint48(readyAt), reserved + uint208(assets));
        _sharesByReadyAt.push(uint48(readyAt), _sharesByReadyAt.latest() + uint208(shares));
        uint32 window = claimWindow;
        requestId = nextRequestId++;
        _requests[requestId] = UnstakeRequest(msg.sender, readyAt, window, shares, assets);
        emit UnstakeRequested(requestId, msg.sender, shares, assets, readyAt, readyAt + window);
    }

    /// @inheritdoc IInsuranceFund
    function claim(uint256 requestId) external nonReentrant returns (uint256 assets) {
        UnstakeRequest memory r = _requests[requestId];
        if (r.owner == address(0)) revert FundUnknownRequest(requestId);
        if (r.owner != msg.sender) revert FundNotRequestOwner(requestId, msg.sender);
        if (block.timestamp < r.readyAt) revert FundCooldownActive(requestId, r.readyAt);
        uint256 endsAt = uint256(r.readyAt) + r.claimWindow;
        if (block.timestamp >= endsAt) revert FundClaimWindowPassed(requestId, endsAt);
        (uint256 entitled, uint256 ownSparedWad) = _entitlement(r);
        assets = entitled.min(r.assetsAtRequest);
        delete _requests[requestId];
        _release(r, ownSparedWad);
        _burn(address(this), r.shares);
        if (assets != 0) clearingHouse.withdraw(assets, r.owner);
        emit UnstakeClaimed(requestId, r.owner, r.shares, assets, entitled - assets);
    }

    /// @inheritdoc IInsuranceFund
    function lapse(uint256 requestId) external nonReentrant {
        UnstakeRequest memory r = _requests[requestId];
        if (r.owner == address(0)) revert FundUnknownRequest(requestId);
        uint256 endsAt = uint256(r.readyAt) + r.claimWindow;
        if (block.timestamp < endsAt) revert FundClaimWindowOpen(requestId, endsAt);
        (, uint256 ownSparedWad) = _entitlement(r);
        delete _requests[requestId];
        _release(r, ownSparedWad); // what it was spared goes back to the stakers
        _transfer(address(this), r.owner, r.shares);
        emit UnstakeLapsed(requestId, r.owner, r.shares, msg.sender);
    }

    /// @inheritdoc IInsuranceFund
    function claimable(uint256 requestId) external view returns (uint256) {
        UnstakeRequest memory r = _requests[requestId];
        if (r.owner == address(0)) return 0;
        (uint256 entitled,) = _entitlement(r);
        return entitled.min(r.assetsAtRequest);
    }

    /// @inheritdoc IInsuranceFund
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
        Window memory w = _currentWindow();
        paidWad = shortfallWad.min(freeAssetsWad()).min(w.capWad - w.paidWad);
        w.paidWad += uint96(paidWad); // at most capWad - paidWad
        _window = w;
        if (paidWad != 0 && balanceOf(address(this)) != 0) _recordLoss(paidWad);
        emit ShortfallCovered(shortfallWad, paidWad, w.paidWad, w.capWad);
    }

    /// @notice Sends the assets above the cap to the treasury; anyone may call. What open requests may
    /// claim is never swept.
    function sweepSurplus() external nonReentrant returns (uint256 amount) {
        uint256 assets = totalAssets();
        uint256 floor_ = capAssets.max(reservedAssets());
        if (assets <= floor_) revert FundBelowCap(assets, floor_);
        amount = assets - floor_;
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
    function freeAssetsWad() public view returns (uint256) {
        // Every open request holds escrowed shares: none escrowed, nothing reserved.
        if (balanceOf(address(this)) == 0) return assetsWad();
        uint256 windowEnd = uint256(_window.start) + windowDuration;
        uint256 horizon = block.timestamp < windowEnd ? windowEnd : block.timestamp + windowDuration;
        uint256 due = (_reserveByReadyAt.upperLookupRecent(uint48(horizon)) - _released.assets) * _tokenScale;
        uint256 assets = assetsWad();
        return assets > due ? assets - due : 0;
    }

    /// @inheritdoc IInsuranceFund
    function shareAssets() public view returns (uint256) {
        uint256 assets = assetsWad();
        uint256 spared = sparedWad;
        return assets > spared ? (assets - spared) / _tokenScale : 0;
    }

    /// @inheritdoc IInsuranceFund
    function reservedAssets() public view returns (uint256) {
        return _reserveByReadyAt.latest() - _released.assets;
    }

    /// @inheritdoc IInsuranceFund
    function availableWad() external view returns (uint256) {
        return freeAssetsWad().min(windowRemainingWad());
    }

    /// @inheritdoc IInsuranceFund
    function windowRemainingWad() public view returns (uint256) {
        Window memory w = _window;
        if (block.timestamp >= uint256(w.start) + windowDuration) return _newWindowCap();
        return w.capWad - w.paidWad;
    }

    /// @notice Start of the current payout window.
    function windowStart() external view returns (uint64) {
        return _window.start;
    }

    /// @notice What the current window may pay in all (WAD).
    function windowCapWad() external view returns (uint256) {
        return _window.capWad;
    }

    /// @notice What the current window has paid (WAD).
    function windowPaidWad() external view returns (uint256) {
        return _window.paidWad;
    }

    // ================================================================ internals

    /// @dev What a request is owed before the cap at its value at request (tokens, rounded down): its
    /// shares' value now plus `ownSparedWad`, what the payouts made from its `readyAt` on would have taken
    /// from them (WAD, rounded down; zero before `readyAt`).
    function _entitlement(UnstakeRequest memory r) internal view returns (uint256 assets, uint256 ownSparedWad) {
        uint256 perShare = _lossPerShare.latest() - _lossPerShare.upperLookupRecent(uint48(r.readyAt - 1));
        ownSparedWad = Math.mulDiv(r.shares, perShare, 1e18);
        assets = convertToAssets(r.shares) + ownSparedWad / _tokenScale;
    }

    /// @dev A claimed or lapsed request leaves the reserve, the matured shares and the spared liability.
    function _release(UnstakeRequest memory r, uint256 ownSparedWad) internal {
        Released memory released = _released;
        // Cumulative shares reach 2^128 after 3.4e26 tokens of 6 decimals have left (3.4e14 of 18).
        _released = Released(
            released.assets + SafeCast.toUint128(r.assetsAtRequest), released.shares + SafeCast.toUint128(r.shares)
        );
        // Each loss added at least the request's part, rounded up; the floor here keeps dust, never underflows.
        if (ownSparedWad != 0) sparedWad -= ownSparedWad.min(sparedWad);
    }

    /// @dev A payout of `paidWad` is borne by the shares not spared it (supply + virtual shares less the
    /// escrowed shares of the matured open requests): each loses ceil(paidWad / bearing). What the matured
    /// requests' shares would lose is added to the spared liability (rounded up), which share pricing
    /// deducts, so their value stays and the bearing shares lose the whole payout.
    function _recordLoss(uint256 paidWad) internal {
        uint256 matured = _sharesByReadyAt.upperLookupRecent(uint48(block.timestamp)) - _released.shares;
        uint256 bearing = totalSupply() + 10 ** _decimalsOffset() - matured;
        uint256 perShare = Math.mulDiv(paidWad, 1e18, bearing, Math.Rounding.Ceil);
        _lossPerShare.push(uint48(block.timestamp), uint208(_lossPerShare.latest() + perShare));
        if (matured != 0) sparedWad += Math.mulDiv(matured, perShare, 1e18, Math.Rounding.Ceil);
    }

    /// @dev Shares are priced on `shareAssets`: the spared liability is owed to matured requests only.
    function _convertToShares(uint256 assets, Math.Rounding rounding) internal view override returns (uint256) {
        return Math.mulDiv(assets, totalSupply() + 10 ** _decimalsOffset(), shareAssets() + 1, rounding);
    }

    function _convertToAssets(uint256 shares, Math.Rounding rounding) internal view override returns (uint256) {
        return Math.mulDiv(shares, shareAssets() + 1, totalSupply() + 10 ** _decimalsOffset(), rounding);
    }

    /// @dev Tokens the fund's clearing-house margin (an int112, in the first slot of Ledger.Layout) can still take.
    function _marginRoomTokens() internal view returns (uint256) {
        int256 margin = clearingHouse.marginOf(address(this));
        uint256 used = margin > 0 ? uint256(margin) : 0;
        return (uint256(uint112(type(int112).max)) - used) / _tokenScale;
    }

    function _deposit(address caller, address receiver, uint256 assets, uint256 shares) internal override {
        super._deposit(caller, receiver, assets, shares);
        IERC20(asset()).forceApprove(address(clearingHouse), assets);
        clearingHouse.deposit(address(this), assets);
    }

    function _decimalsOffset() internal pure override returns (uint8) {
        return 6;
    }

    /// @dev The window a payout now falls in: the stored one, or a new one starting now once it has ended.
    function _currentWindow() internal view returns (Window memory w) {
        w = _window;
        if (block.timestamp < uint256(w.start) + windowDuration) return w;
        w = Window(uint64(block.timestamp), uint96(_newWindowCap()), 0);
    }

    /// @dev The cap of a window starting now: the ratio of the free assets, within what the slot holds.
    function _newWindowCap() internal view returns (uint256) {
        return freeAssetsWad().mulWadDown(windowCapRatioWad).min(type(uint96).max);
    }

    function _setParams(
        uint32 cooldown_,
        uint32 windowDuration_,
        uint64 windowCapRatioWad_,
        uint256 capAssets_,
        address treasury_
    ) internal {
        _check("windowDuration", windowDuration_, 1 hours, 7 days);
        // A request made inside a window matures after it ends, so the window's promise cannot shrink.
        _check("cooldown", cooldown_, uint256(windowDuration_).max(1 days), 30 days);
        _check("windowCapRatio", windowCapRatioWad_, 0.01e18, 1e18);
        _check("treasury", treasury_ == address(0) ? 0 : 1, 1, 1);
        cooldown = cooldown_;
        windowDuration = windowDuration_;
        windowCapRatioWad = windowCapRatioWad_;
        capAssets = capAssets_;
        treasury = treasury_;
        emit FundParamsUpdated(cooldown_, windowDuration_, windowCapRatioWad_, capAssets_, treasury_);
    }

    function _setClaimWindow(uint32 claimWindow_) internal {
        _check("claimWindow", claimWindow_, MIN_CLAIM_WINDOW, MAX_CLAIM_WINDOW);
        claimWindow = claimWindow_;
        emit ClaimWindowUpdated(claimWindow_);
    }

    function _check(bytes32 field, uint256 value, uint256 minValue, uint256 maxValue) internal pure {
        if (value < minValue || value > maxValue) revert FundParamOutOfBounds(field, value, minValue, maxValue);
    }
}
