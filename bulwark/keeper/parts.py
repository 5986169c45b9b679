"""What the keeper's working parts share: the deployment, the signer, the settings, the sender, the
account index, the metrics, the log throttle and the stop flag. The daemon builds one
:class:`Parts` and hands it to each part (accounting, liquidation, bad debt, lapses)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount

from bulwark.chain.contracts import Bulwark
from bulwark.chain.sender import Call, TxSender
from bulwark.core.logs import Throttle
from bulwark.keeper.config import KeeperSettings
from bulwark.keeper.index import AccountIndex
from bulwark.keeper.metrics import KeeperMetrics


@dataclass
class Parts:
    bw: Bulwark
    signer: LocalAccount
    settings: KeeperSettings
    sender: TxSender
    index: AccountIndex
    metrics: KeeperMetrics
    repeats: Throttle
    stop: threading.Event = field(default_factory=threading.Event)
    # autoDeleverage needs ADL_KEEPER_ROLE; read at startup (a keeper driven without its startup
    # checks tries, and a refused simulation is logged like any other)
    adl_role: bool = True

    @property
    def stopping(self) -> bool:
        return self.stop.is_set()

    def call(self, fn: str, args: list[Any]) -> Call:
        """A call of the clearing house's `fn`, encoded once."""
        return Call(self.bw.ch.address, self.index.calls.data(fn, args))

    def market_names(self) -> dict[int, str]:
        """Market id to the deployment's name for it."""
        return {m.id: n for n, m in self.bw.deployment.markets.items()}
