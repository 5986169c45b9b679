// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title The insurance fund: an ERC-4626 vault whose assets are its account in the clearing house.
/// @notice Inflows are liquidation padding, the fee share and donations, all credited to the fund's
/// clearing-house margin. The only outflow besides stakers' claims is `coverShortfall`, which the
/// clearing house calls when it settles a bankrupt account or outstanding bad debt.
/// Unstaking is request, cooldown, claim within the claim window: a request not claimed in its window
/// lapses and its shares return to staked. The fund promises payouts only from its free assets: its
/// margin less what the open requests maturing by the end of the current payout window may claim (their
/// value at request), so shares whose owner can leave in the window never back a payout; a request made
/// inside a window matures after it (the cooldown is never shorter than the window). Losses paid after a
/// request's cooldown are not charged to that request: the other shares bear them in full, and what the
/// matured requests were spared is a liability (`sparedWad`) deducted from the assets shares are priced
/// on (`shareAssets`), so what the open requests may claim never exceeds the fund's margin.
interface IInsuranceFund {
    /// @notice An unstake request: shares held in escrow, claimable from `readyAt` for `claimWindow`
    /// seconds, for at most `assetsAtRequest` tokens.
    struct UnstakeRequest {
        address owner;
        uint64 readyAt;
        uint32 claimWindow;
        uint256 shares;
        uint256 assetsAtRequest;
    }

    /// @notice The clearing house asked for `shortfallWad` and the fund paid `paidWad`.
    event ShortfallCovered(uint256 shortfallWad, uint256 paidWad, uint256 windowPaidWad, uint256 windowCapWad);
    /// @notice `owner` locked `shares` worth `assets` tokens, claimable from `readyAt` until `claimUntil`.
    event UnstakeRequested(
        uint256 indexed requestId, address indexed owner, uint256 shares, uint256 assets, uint64 readyAt, uint64 claimUntil
    );
    /// @notice A request was claimed: `assets` paid, `forfeited` (gains above the value at request) left
    /// to the remaining stakers.
    event UnstakeClaimed(uint256 indexed requestId, address indexed owner, uint256 shares, uint256 assets, uint256 forfeited);
    /// @notice A request's claim window passed unclaimed: `caller` returned its `shares` to `owner`.
    event UnstakeLapsed(uint256 indexed requestId, address indexed owner, uint256 shares, address caller);
    /// @notice `assets` tokens above the cap were swept to the treasury.
    event SurplusSwept(address indexed treasury, uint256 assets);
    /// @notice Someone gave `assets` tokens to the fund without taking shares.
    event Donated(address indexed donor, uint256 assets);
    /// @notice Fund parameters changed.
    event FundParamsUpdated(uint32 cooldown, uint32 windowDuration, uint64 windowCapRatioWad, uint256 capAssets, address treasury);
    /// @notice The claim window of new requests changed.
    event ClaimWindowUpdated(uint32 claimWindow);

    /// @notice The clearing house names `named` as its fund, not the contract being deployed: the fund's
    /// address was mispredicted (see the clearing house's constructor).
    error FundNotNamedByClearingHouse(address clearingHouse, address named);
    /// @notice Only the clearing house may draw on the fund.
    error FundUnauthorized(address caller);
    /// @notice Shares leave the fund only through request-then-claim.
    error FundUseRequestUnstake();
    /// @notice Nothing to request.
    error FundZeroShares();
    /// @notice No such open request.
    error FundUnknownRequest(uint256 requestId);
    /// @notice Only the request's owner may claim it.
    error FundNotRequestOwner(uint256 requestId, address caller);
    /// @notice The cooldown of the request has not passed.
    error FundCooldownActive(uint256 requestId, uint256 readyAt);
    /// @notice The request was not claimed within its window, which ended at `endedAt`: it can only lapse.
    error FundClaimWindowPassed(uint256 requestId, uint256 endedAt);
    /// @notice The request can still be claimed until `endsAt`: it cannot lapse yet.
    error FundClaimWindowOpen(uint256 requestId, uint256 endsAt);
    /// @notice Assets do not exceed the cap (nor what open requests may claim): nothing to sweep.
    error FundBelowCap(uint256 assets, uint256 capAssets);
    /// @notice A fund parameter lies outside its hard bounds.
    error FundParamOutOfBounds(bytes32 field, uint256 value, uint256 minValue, uint256 maxValue);

    /// @notice Pays up to `shortfallWad` from the fund's free assets, limited by the per-window cap.
    /// Returns what it paid; the clearing house moves the margin.
    function coverShortfall(uint256 shortfallWad) external returns (uint256 paidWad);

    /// @notice Locks `shares` in escrow and records what they are worth now (the most the claim pays).
    function requestUnstake(uint256 shares) external returns (uint256 requestId);

    /// @notice Pays the owner of a request whose cooldown has passed, within its claim window:
    /// min(value at request, value now plus what the losses paid since the cooldown ended would have
    /// taken from its shares), and releases that part of `sparedWad`.
    function claim(uint256 requestId) external returns (uint256 assets);

    /// @notice Returns the escrowed shares of a request whose claim window has passed to its owner (they
    /// are staked again). Anyone may call it: it moves nothing but the owner's own shares, and it releases
    /// the reserve the request held out of the fund's promise and its part of `sparedWad` to the stakers.
    function lapse(uint256 requestId) external;

    /// @notice What `claim(requestId)` would pay now, in tokens (zero for an unknown request).
    function claimable(uint256 requestId) external view returns (uint256 assets);

    /// @notice The request `requestId` (all zero once claimed or lapsed).
    function unstakeRequest(uint256 requestId) external view returns (UnstakeRequest memory);

    /// @notice What the fund could pay now: min(its free assets, what the current window still allows).
    function availableWad() external view returns (uint256);

    /// @notice What the current window still allows to be paid out.
    function windowRemainingWad() external view returns (uint256);

    /// @notice The fund's assets in WAD (its clearing-house margin).
    function assetsWad() external view returns (uint256);

    /// @notice Assets that back the fund's promise: its margin less the values at request of the open
    /// requests that mature by the end of the current window (or of a window opened now).
    function freeAssetsWad() external view returns (uint256);

    /// @notice What payouts made after the matured open requests' cooldowns would have taken from their
    /// shares (WAD, rounded up per payout): added back to their claims, borne by the other shares.
    function sparedWad() external view returns (uint256);

    /// @notice The assets shares are priced on (tokens, rounded down): the margin less `sparedWad`, zero
    /// if the liability is not below it.
    function shareAssets() external view returns (uint256);

    /// @notice Sum of all open requests' values at request, in tokens: the most they can claim.
    function reservedAssets() external view returns (uint256);
}
