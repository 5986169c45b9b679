// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title The liquidity pool: an ERC-4626 vault whose assets are the pool's account in the clearing house,
/// the counterparty of every trade.
/// @notice Deposits are priced at the pool's equity (margin + the traders' losses - their profits + the
/// funding they owe); exits at the lower of its equity and its margin, so an exit never takes an
/// unrealised gain (collectable or not: a bankrupt trader's loss is counted in full until liquidated)
/// and a round trip never profits. Deposits lock the depositor's shares for a cooldown. The max views
/// never revert and are exact: a call at the maximum succeeds, one unit more reverts. A zero amount is
/// a no-op.
interface ILiquidityPool {
    /// @notice The cooldown of future deposits changed.
    event CooldownUpdated(uint32 cooldown);

    /// @notice The clearing house names `named` as its pool, not the contract being deployed: the
    /// pool's address was mispredicted (see the clearing house's constructor).
    error PoolNotNamedByClearingHouse(address clearingHouse, address named);
    /// @notice Shares of `account` are locked until `until`.
    error PoolSharesLocked(address account, uint256 until);
    /// @notice Deposits lock the receiver's shares, so only the receiver may deposit for itself.
    error PoolReceiverNotCaller(address caller, address receiver);
    /// @notice The cooldown lies outside its hard bounds.
    error PoolCooldownOutOfBounds(uint256 cooldown, uint256 maxCooldown);
    /// @notice Pool equity is negative: a deposit would only fill the deficit and an exit would be worth
    /// nothing, so both wait until trader profits are realised against it or the deficit is made good.
    error PoolInsolvent(int256 equityWad);
    /// @notice Redeeming `shares` would pay nothing (they are worth less than one token unit at the exit
    /// price).
    error PoolRedeemsNothing(uint256 shares);

    /// @notice What the pool's shares are worth at exit, in tokens: min(equity, margin), rounded down,
    /// zero if negative. Reverts on a stale price, like `totalAssets`.
    function exitAssets() external view returns (uint256);
}
