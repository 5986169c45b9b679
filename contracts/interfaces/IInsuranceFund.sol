// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title The insurance fund: an ERC-4626 vault whose assets are its account in the clearing house.
/// @notice Inflows are liquidation padding, the fee share and donations, all credited to the fund's
/// clearing-house margin. The only outflow besides stakers' claims is `coverShortfall`, which the
/// clearing house calls when it settles a bankrupt account or outstanding bad debt.
interface IInsuranceFund {
    /// @notice An unstake request: shares held in escrow until `readyAt`.
    struct UnstakeRequest {
        address owner;
        uint64 readyAt;
        uint256 shares;
        uint256 assetsAtRequest;
    }

    /// @notice The clearing house asked for `shortfallWad` and the fund paid `paidWad`.
    event ShortfallCovered(uint256 shortfallWad, uint256 paidWad, uint256 windowPaidWad, uint256 windowCapWad);
    /// @notice `owner` locked `shares` worth `assets` tokens, claimable from `readyAt`.
    event UnstakeRequested(uint256 indexed requestId, address indexed owner, uint256 shares, uint256 assets, uint64 readyAt);
    /// @notice A request was claimed: `assets` paid, `forfeited` left to the remaining stakers.
    event UnstakeClaimed(uint256 indexed requestId, address indexed owner, uint256 shares, uint256 assets, uint256 forfeited);
    /// @notice `assets` tokens above the cap were swept to the treasury.
    event SurplusSwept(address indexed treasury, uint256 assets);
    /// @notice Someone gave `assets` tokens to the fund without taking shares.
    event Donated(address indexed donor, uint256 assets);
    /// @notice Fund parameters changed.
    event FundParamsUpdated(uint32 cooldown, uint32 windowDuration, uint64 windowCapRatioWad, uint256 capAssets, address treasury);

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
    /// @notice Assets do not exceed the cap: nothing to sweep.
    error FundBelowCap(uint256 assets, uint256 capAssets);
    /// @notice A fund parameter lies outside its hard bounds.
    error FundParamOutOfBounds(bytes32 field, uint256 value, uint256 minValue, uint256 maxValue);

    /// @notice Pays up to `shortfallWad` from the fund's margin, limited by what is available and by the
    /// per-window cap. Returns what it paid; the clearing house moves the margin.
    function coverShortfall(uint256 shortfallWad) external returns (uint256 paidWad);

    /// @notice What the fund could pay now: min(its margin, what the current window still allows).
    function availableWad() external view returns (uint256);

    /// @notice What the current window still allows to be paid out.
    function windowRemainingWad() external view returns (uint256);

    /// @notice The fund's assets in WAD (its clearing-house margin).
    function assetsWad() external view returns (uint256);
}
