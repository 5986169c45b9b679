"""Fund housekeeping: unstake requests of the insurance fund whose claim window has passed are
lapsed (``lapse(requestId)`` returns their shares to staked and releases the assets they held in
reserve, so the fund can pay with them again). Low priority: after a pass's liquidations and bad
debt, at most `lapse_max_per_pass` per pass, and only with `lapse_requests` on.

The requests are read by id: every id issued since the last look (``nextRequestId``) and every one
still open, in one JSON-RPC batch; :func:`decisions.lapsed_requests` picks those due."""

from __future__ import annotations

from bulwark.chain.rpc import BlockRef, Calls, rpc_batch
from bulwark.chain.sender import PendingTx, Simulation
from bulwark.core.logs import get_logger, kv
from bulwark.keeper.accounting import Accounting
from bulwark.keeper.decisions import UnstakeRequestView, lapsed_requests
from bulwark.keeper.parts import Parts
from bulwark.keeper.results import PassResult

log = get_logger()


class Lapser:
    """Lapses expired unstake requests for one keeper; remembers which ids are still open."""

    def __init__(self, parts: Parts, accounting: Accounting) -> None:
        self.parts = parts
        self.accounting = accounting
        self.calls = Calls(parts.bw.fund)
        self.next_id = 0  # ids below this were read once; those still open are in `open`
        self.open: set[int] = set()

    def requests(self, head: BlockRef) -> list[UnstakeRequestView]:
        """The requests issued since the last look and those still open, at `head`."""
        w3, block = self.parts.bw.w3, head.number
        (issued,) = rpc_batch(w3, [self.calls.request("nextRequestId", [], block)])
        ids = sorted(
            self.open | set(range(self.next_id, int(self.calls.decode("nextRequestId", issued))))
        )
        replies = rpc_batch(w3, [self.calls.request("unstakeRequest", [i], block) for i in ids])
        views = []
        for request_id, reply in zip(ids, replies, strict=True):
            owner, ready_at, window, _shares, _assets = self.calls.decode("unstakeRequest", reply)
            views.append(
                UnstakeRequestView(request_id, int(str(owner), 16) != 0, int(ready_at), int(window))
            )
        self.open = {v.request_id for v in views if v.open}
        self.next_id = max([self.next_id, *(i + 1 for i in ids)])
        return views

    def run(self, head: BlockRef, result: PassResult) -> int:
        """Sends ``lapse`` for the requests due at `head` (each simulated first), waits for them;
        returns how many lapsed."""
        p = self.parts
        s = p.settings
        if not s.lapse_requests or p.stopping:
            return 0
        busy = {k[1] for k in p.sender.in_flight() if isinstance(k, tuple) and k[0] == "lapse"}
        due = lapsed_requests(self.requests(head), head.timestamp, busy, s.lapse_max_per_pass)
        sent: list[PendingTx] = []
        for request_id in due:
            if p.stopping:
                break
            fn = p.bw.fund.functions.lapse(request_id)
            try:
                pending = p.sender.send(fn, action="lapse", keys=[("lapse", request_id)])
            except Simulation as sim:
                log.info(
                    "not lapsing: the simulation reverted",
                    extra=kv(request=request_id, error=str(sim.error)),
                )
                continue
            result.transactions.append(pending.hashes[0])
            sent.append(pending)
        before = len(result.lapsed)
        for outcome in p.sender.wait_all(sent, s.receipt_timeout):
            self.accounting.finished(outcome, result)
        return len(result.lapsed) - before
