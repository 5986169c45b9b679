"""Startup and chain checks, and the keeper's state files: the node serves the deployment's chain
(chain id, code at every address, genesis hash), the signer can pay for gas and is not the pool or
the fund, and one lock per signer and chain so that two keepers never share a key's nonces."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from bulwark.chain.contracts import Bulwark
from bulwark.chain.rpc import get_block, rpc_batch
from bulwark.core.errors import BulwarkError
from bulwark.core.logs import get_logger, human, kv
from bulwark.keeper.config import KeeperSettings
from bulwark.keeper.index import AccountIndex
from bulwark.keeper.resilience import ChainReset

log = get_logger()


def startup_checks(
    bw: Bulwark,
    signer: LocalAccount,
    settings: KeeperSettings,
    index: AccountIndex,
    genesis_before: str | None,
) -> tuple[str, bool]:
    """Checks the chain, the contracts and the signer; returns the genesis hash and whether the
    signer holds ``ADL_KEEPER_ROLE``. `genesis_before` is the hash an earlier startup read."""
    d = bw.deployment
    chain_id = int(bw.w3.eth.chain_id)
    if chain_id != d.chain_id:
        raise BulwarkError(
            f"the node is on chain {chain_id} but the deployment is for chain {d.chain_id}"
        )
    addresses = dict(d.contracts) | {f"feed {n}": m.feed for n, m in d.markets.items()}
    codes = rpc_batch(bw.w3, [("eth_getCode", [a, "latest"]) for a in addresses.values()])
    missing = [
        f"{name} at {a}"
        for (name, a), code in zip(addresses.items(), codes, strict=True)
        if not isinstance(code, str) or code in ("0x", "0x0")
    ]
    if missing:
        raise BulwarkError(
            f"no contract code for {', '.join(missing)}: wrong deployment file or chain?"
        )
    balance = int(bw.w3.eth.get_balance(signer.address))
    if balance < settings.min_eth_balance_wei:
        raise BulwarkError(
            f"keeper {signer.address} holds {balance / 1e18:.6f} ETH, needs at least "
            f"{settings.min_eth_balance_wei / 1e18:.6f} ETH for gas"
        )
    genesis = get_block(bw.w3, 0).hash
    if genesis_before is not None and genesis != genesis_before:
        raise ChainReset(
            f"chain reset: the node's genesis is {genesis}, was {genesis_before}; "
            "deploy again and point the keeper at the new deployment"
        )
    index.genesis = genesis
    index.prepare()
    if signer.address in index.protected:
        raise BulwarkError(f"{signer.address} is the pool or fund account and cannot act as keeper")
    adl_role = bool(bw.ch.functions.hasRole(keccak(text="ADL_KEEPER_ROLE"), signer.address).call())
    log.info(
        "startup checks passed",
        extra=kv(
            chain_id=chain_id,
            genesis=genesis,
            keeper=signer.address,
            eth=human(balance),
            clearing_house=bw.ch.address,
            shard=f"{settings.keeper_index}/{settings.keeper_count}",
            roles="ADL_KEEPER_ROLE held: liquidation, cover, socialise and ADL"
            if adl_role
            else "no ADL_KEEPER_ROLE: liquidation, cover and socialise only; ADL is left to "
            "the holders of the role",
        ),
    )
    return genesis, adl_role


def check_chain(bw: Bulwark, genesis: str | None) -> None:
    """The node still serves the deployment's chain: the genesis hash read at startup, and code
    at the clearing house; raises :class:`ChainReset` otherwise."""
    if genesis is None:
        return
    address = bw.ch.address
    block0, code = rpc_batch(
        bw.w3,
        [("eth_getBlockByNumber", ["0x0", False]), ("eth_getCode", [address, "latest"])],
    )
    if not isinstance(code, str) or code in ("0x", "0x0"):
        raise ChainReset(f"chain reset: no ClearingHouse at {address}")
    now = block0.get("hash") if isinstance(block0, dict) else None
    if now != genesis:
        raise ChainReset(f"chain reset: genesis {now} is not {genesis}")


def state_paths(
    state_dir: str, bw: Bulwark, genesis: str | None, signer: str, keyed_checkpoint: bool
) -> tuple[Path, Path | None]:
    """The lock file of this signer on this chain and, when `keyed_checkpoint`, the checkpoint
    keyed by chain, genesis hash, deployment and signer."""
    root = Path(state_dir).expanduser()
    chain = f"{bw.deployment.chain_id}-{(genesis or '0x')[2:14]}"
    lock = root / "locks" / f"{chain}-{signer.lower()}.lock"
    if not keyed_checkpoint:
        return lock, None
    deployment = f"{bw.ch.address[2:12].lower()}-{bw.deployment.deploy_block}"
    return lock, root / "checkpoints" / f"{chain}-{deployment}-{signer[2:10].lower()}.json"


class SignerLock:
    """An ``flock`` on a file per signer and chain, holding the pid (the kernel releases it when
    the process dies)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self._fd: int | None = None

    def acquire(self, path: Path, signer: str, chain_id: int) -> None:
        if self._fd is not None:  # a startup retried after the node came back
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise BulwarkError(
                f"another keeper (pid {holder}) already runs as {signer} on chain "
                f"{chain_id} (lock {path}): two keepers on one key race for its "
                "nonces; give each keeper its own key (docs/keeper.md, Redundancy)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd, self.path = fd, path

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
