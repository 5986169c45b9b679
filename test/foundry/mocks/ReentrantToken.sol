// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice Called by `ReentrantToken` on every transfer to or from the registered hook.
interface ITokenHook {
    function onTokenTransfer(address from, address to, uint256 amount) external;
}

/// @title A 6-decimal ERC-20 that hands control to a hook contract in the middle of every transfer that
/// touches it (as ERC-777 or a malicious token would), before balances move.
contract ReentrantToken is ERC20 {
    address public hook;

    constructor() ERC20("Reentrant USD", "rUSD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function setHook(address hook_) external {
        hook = hook_;
    }

    function _update(address from, address to, uint256 value) internal override {
        address h = hook;
        if (h != address(0) && from != address(0) && to != address(0) && (from == h || to == h)) {
            ITokenHook(h).onTokenTransfer(from, to, value);
        }
        super._update(from, to, value);
    }
}

/// @title The attacker behind the hook: on each transfer it re-enters the call it was given and records
/// what came back.
contract ReentrantAttacker is ITokenHook {
    address public target;
    bytes public reentry;
    bool public reentered;
    bool public reentrySucceeded;
    bytes public reentryRevert;

    function arm(address target_, bytes calldata reentry_) external {
        target = target_;
        reentry = reentry_;
        reentered = false;
    }

    function disarm() external {
        target = address(0);
    }

    function onTokenTransfer(address, address, uint256) external {
        if (target == address(0) || reentered) return;
        reentered = true;
        (bool ok, bytes memory ret) = target.call(reentry);
        reentrySucceeded = ok;
        reentryRevert = ret;
    }

    /// @notice Lets the test act as this contract (approve, deposit, trade...).
    function exec(address to, bytes calldata data) external returns (bytes memory) {
        (bool ok, bytes memory ret) = to.call(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }
}
