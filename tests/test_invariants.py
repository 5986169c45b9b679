"""The conservation check itself: it passes on an honest book and fails, naming the law, when the
state is corrupted behind the contracts' back (tokens minted straight to the vault, a margin or a
position slot rewritten with anvil_setStorageAt)."""

from __future__ import annotations

import pytest
from eth_utils.crypto import keccak

from bulwark.chain.contracts import WAD
from bulwark.devnet.world import USDC, World
from bulwark.keeper import invariants

ETH = 0
LAYOUT_SLOTS = 64  # where to look for the accounts mapping of the clearing house's storage


@pytest.fixture
def book(protocol: World) -> World:
    """Two traders on both markets, one liquidity provider, one staker, one deposit-only account."""
    p = protocol
    p.seed_pool(200_000)
    p.stake(10_000)
    a, b, idle = p.traders[:3]
    for t in (a, b, idle):
        p.fund_trader(t, 5_000)
    p.trade(a, "ETH-USD", 2)
    p.trade(b, "ETH-USD", -1.5)
    p.trade(b, "BTC-USD", 0.05)
    p.set_price("ETH-USD", 3_100)
    return p


def _slot(*words: int | str) -> int:
    data = b"".join(
        bytes.fromhex(w[2:].rjust(64, "0")) if isinstance(w, str) else w.to_bytes(32, "big")
        for w in words
    )
    return int.from_bytes(keccak(data), "big")


def _storage(p: World, slot: int) -> int:
    raw = p.bw.w3.eth.get_storage_at(p.bw.ch.address, slot)
    return int.from_bytes(raw, "big")


def _set_storage(p: World, slot: int, value: int) -> None:
    p.bw.w3.provider.make_request(  # type: ignore[arg-type]
        "anvil_setStorageAt", [p.bw.ch.address, hex(slot), "0x" + value.to_bytes(32, "big").hex()]
    )


def _accounts_base(p: World, account: str) -> int:
    """The storage slot of the accounts mapping: the one whose entry for `account` holds its margin
    (an int128 in the low half of the slot, next to the open-markets bits)."""
    margin = p.bw.ch.functions.marginOf(account).call()
    for base in range(LAYOUT_SLOTS):
        word = _storage(p, _slot(account, base))
        low = word & (2**128 - 1)
        if word and (low - 2**128 if low >= 2**127 else low) == margin:
            return base
    raise AssertionError("accounts mapping not found in the clearing house's storage")


def test_an_honest_book_is_conserved(book: World) -> None:
    # given trades, a price move, pool and fund deposits, when the check runs, then it passes
    report = invariants.check(book.bw)
    assert report.ok, report.as_dict()
    assert report.vault_gap_wad == 0 and report.mirror_errors == []
    # and it found every account that holds margin by itself: the traders, idle ones included
    known = invariants.known_accounts(book.bw)
    assert {t.address for t in book.traders[:3]} <= known
    margins = [book.bw.ch.functions.marginOf(a).call() for a in known]
    pool, fund = book.bw.pool.address, book.bw.fund.address
    margins += [book.bw.ch.functions.marginOf(a).call() for a in {pool, fund} - known]
    assert report.margin_sum_wad == sum(margins) > 0
    assert (
        report.token_balance_wad
        == book.bw.token.functions.balanceOf(book.bw.ch.address).call() * book.bw.token_scale
    )


def test_tokens_minted_to_the_vault_break_conservation(book: World) -> None:
    # given an honest book, when someone mints tokens straight to the clearing house
    before = invariants.check(book.bw)
    block = book.bw.w3.eth.block_number
    book.bw.send(book.bw.token.functions.mint(book.bw.ch.address, 7 * USDC), book.admin)

    # then the check fails by exactly the tokens that no margin accounts for
    report = invariants.check(book.bw)
    assert not report.ok
    assert report.vault_gap_wad == 7 * WAD and report.mirror_errors == []
    assert report.token_balance_wad == before.token_balance_wad + 7 * WAD
    # while the state before the mint, read at its block, still passes
    assert invariants.check(book.bw, block=block).ok


def test_a_rewritten_margin_breaks_conservation(book: World) -> None:
    # given a trader's margin slot found in the clearing house's storage
    trader = book.traders[0].address
    slot = _slot(trader, _accounts_base(book, trader))
    word = _storage(book, slot)

    # when its margin is raised by one wei behind the contract's back
    _set_storage(book, slot, word + 1)
    assert book.bw.ch.functions.marginOf(trader).call() == (word & (2**128 - 1)) + 1

    # then the check fails by that wei, and passes again once it is put back
    report = invariants.check(book.bw)
    assert not report.ok and report.vault_gap_wad == -1 and report.mirror_errors == []
    _set_storage(book, slot, word)
    assert invariants.check(book.bw).ok


def test_a_flat_account_that_owes_fails_the_check(book: World) -> None:
    # given the deposit-only trader's margin slot
    idle = book.traders[2].address
    slot = _slot(idle, _accounts_base(book, idle))
    word = _storage(book, slot)
    assert word >> 128 == 0  # no open market

    # when its margin is set to -1 wei behind the contract's back (a debt nobody recorded)
    _set_storage(book, slot, 2**128 - 1)

    # then the check names the account, and passes again once the margin is put back
    report = invariants.check(book.bw)
    assert not report.ok and report.mirror_errors == []
    assert report.owing == [f"{idle} holds no position and owes 1 wei"]
    _set_storage(book, slot, word)
    assert invariants.check(book.bw).ok


def test_a_rewritten_position_breaks_the_pool_mirror(book: World) -> None:
    # given a trader's ETH position slot (the positions mapping follows the accounts mapping)
    trader = book.traders[0].address
    positions = _accounts_base(book, trader) + 1
    slot = _slot(ETH, _slot(trader, positions))
    size = book.bw.ch.functions.positionOf(trader, ETH).call()[0]
    word = _storage(book, slot)
    assert word & (2**88 - 1) == size > 0  # int88 size in the low bits, the rest above

    # when its size grows by one wei behind the contract's back
    _set_storage(book, slot, word + 1)
    assert book.bw.ch.functions.positionOf(trader, ETH).call()[0] == size + 1

    # then the check names the market and the sums that no longer match
    report = invariants.check(book.bw)
    assert not report.ok and report.vault_gap_wad == 0
    assert any(e.startswith("market 0: sum of trader size") for e in report.mirror_errors)
    assert any(e.startswith("market 0: open interest") for e in report.mirror_errors)
    assert not any(e.startswith("market 1") for e in report.mirror_errors)


def test_leaving_out_an_account_with_margin_fails(book: World) -> None:
    # given the accounts the events name, when one holding margin is left out, then the sum is short
    known = invariants.known_accounts(book.bw)
    idle = book.traders[2].address
    assert invariants.check(book.bw, known).ok
    report = invariants.check(book.bw, known - {idle})
    assert not report.ok and report.vault_gap_wad == 5_000 * WAD
