"""`bulwark accounts ...`: many funded test accounts in a keystore folder, picked by index.

``accounts create N`` writes N new encrypted keys (password from $BULWARK_KEYSTORE_PASSWORD) to the
keystore folder as ``key-0000-0xADDRESS.json`` ..., numbered after the ones already there, and on a
local chain gives each ETH for gas (Anvil's ``anvil_setBalance``) and mock USDC (minted by the
deployer, dev account 0). Every command then signs with key I given ``--account-index I``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.types import RPCEndpoint

from bulwark.chain import contracts as chain
from bulwark.chain.contracts import LOCAL_CHAIN_IDS, Bulwark, BulwarkError
from bulwark.chain.rpc import Calls, RpcFailure, result_error, rpc_batch
from bulwark.cli.args import (
    DEFAULT_KEYSTORE_DIR,
    ENV_KEYSTORE_DIR,
    ENV_KEYSTORE_PASSWORD,
    EXIT_OK,
    UsageError,
)
from bulwark.cli.context import Context, parse_address, send, token_info
from bulwark.cli.render import table, tokens, tokens_exact, tx_info, wad
from bulwark.core import paths, units

ENV_PASSWORD = ENV_KEYSTORE_PASSWORD
KEY_FILE = re.compile(r"key-(\d{4,})-(0x[0-9a-fA-F]{40})\.json")
# Test keys on a test chain: a light scrypt (2^14) so that hundreds unlock quickly.
SCRYPT_N = 2**14
MAX_CREATE = 10_000


def keystore_dir(ctx: Context) -> Path:
    given = getattr(ctx.args, "keystore_dir", None) or os.environ.get(ENV_KEYSTORE_DIR)
    return Path(given) if given else paths.project_root() / DEFAULT_KEYSTORE_DIR


def key_files(folder: Path) -> list[tuple[int, str, Path]]:
    """(index, address, file) of every key in the folder, by index."""
    if not folder.is_dir():
        return []
    found = []
    for file in folder.iterdir():
        match = KEY_FILE.fullmatch(file.name)
        if match:
            found.append((int(match[1]), to_checksum_address(match[2]), file))
    return sorted(found)


def account_at(ctx: Context, text: str) -> LocalAccount:
    """The signer for ``--account-index I``."""
    try:
        if not (text.isascii() and text.strip().isdigit()):
            raise ValueError
        index = int(text)
    except ValueError:
        raise UsageError(f"bulwark: --account-index must be a whole number, got {text!r}") from None
    folder = keystore_dir(ctx)
    keys = {i: file for i, _address, file in key_files(folder)}
    if index not in keys:
        have = f"keys 0 to {max(keys)}" if keys else "no keys"
        raise BulwarkError(
            f"--account-index {index}: the keystore folder {folder} holds {have}; "
            "`bulwark accounts create N` makes more"
        )
    return chain.account_from_keystore(keys[index], os.environ.get(ENV_PASSWORD))


def _password() -> str:
    password = os.environ.get(ENV_PASSWORD)
    if not password:
        raise BulwarkError(f"set {ENV_PASSWORD}: the new keys are encrypted with it")
    return password


def _local(ctx: Context, w3: Web3, what: str) -> None:
    if w3.eth.chain_id not in LOCAL_CHAIN_IDS:
        raise BulwarkError(
            f"{what} works on a local chain only (31337 or 1337), not chain {w3.eth.chain_id}"
        )


def _amount(text: str, decimals: int, what: str) -> int:
    return units.parse_units(text, decimals, what, allow_zero=True)


def fund_address(
    ctx: Context, bw: Bulwark, address: str, eth_wei: int, usdc_tokens: int
) -> dict[str, Any]:
    """Tops an address up on a local chain: ETH by setting its balance, mock USDC minted."""
    w3 = bw.w3
    if eth_wei:
        balance = int(w3.eth.get_balance(to_checksum_address(address)))
        w3.provider.make_request(RPCEndpoint("anvil_setBalance"), [address, hex(balance + eth_wei)])
    receipt = None
    if usdc_tokens:
        minter = chain.dev_account(0)
        receipt = send(bw, bw.token.functions.mint(address, usdc_tokens), minter, action="mint")
    return tx_info(receipt) if receipt else {}


def cmd_accounts_create(ctx: Context) -> int:
    a = ctx.args
    if not 0 < a.count <= MAX_CREATE:
        raise UsageError(f"bulwark accounts create: N must be from 1 to {MAX_CREATE:,}")
    bw = ctx.bulwark()
    _local(ctx, bw.w3, "`bulwark accounts create`")
    decimals, symbol = token_info(bw)
    eth_wei = _amount(a.eth, 18, "--eth")
    usdc = _amount(a.usdc, decimals, "--usdc")
    password = _password()
    folder = keystore_dir(ctx)
    folder.mkdir(parents=True, exist_ok=True)
    existing = key_files(folder)
    start = existing[-1][0] + 1 if existing else 0
    created = []
    for index in range(start, start + a.count):
        acct: LocalAccount = Account.create()
        keystore = Account.encrypt(acct.key, password, kdf="scrypt", iterations=SCRYPT_N)
        file = folder / f"key-{index:04d}-{acct.address}.json"
        file.write_text(json.dumps(keystore))
        file.chmod(0o600)
        fund_address(ctx, bw, acct.address, eth_wei, usdc)
        created.append({"index": index, "address": acct.address, "file": str(file)})
    rows = [[str(c["index"]), str(c["address"])] for c in created]
    lines = [
        f"created {a.count} keys in {folder} (password: ${ENV_PASSWORD}), each funded with "
        f"{units.format_units(eth_wei, 18, group=True)} ETH and {tokens(bw, usdc)} {symbol}",
        *table(["INDEX", "ADDRESS"], rows[:20]),
    ]
    if len(rows) > 20:
        lines.append(f"  ... and {len(rows) - 20} more (`bulwark accounts list`)")
    lines.append(f"sign with one: `bulwark account --account-index {start}`")
    ctx.report(
        {
            "keystore_dir": str(folder),
            "eth": units.format_units(eth_wei, 18),
            "usdc": tokens_exact(bw, usdc),
            "created": created,
        },
        lines,
    )
    return EXIT_OK


def cmd_accounts_list(ctx: Context) -> int:
    folder = keystore_dir(ctx)
    keys = key_files(folder)
    bw = ctx.bulwark()
    _, symbol = token_info(bw)
    rows = []
    data = []
    if keys:
        token, ch = Calls(bw.token), Calls(bw.ch)
        requests: list[tuple[str, list[Any]]] = []
        for _i, address, _f in keys:
            requests += [
                ("eth_getBalance", [address, "latest"]),
                token.request("balanceOf", [address], "latest"),
                ch.request("marginOf", [address], "latest"),
            ]
        answers = rpc_batch(bw.w3, requests)
        for n, (index, address, file) in enumerate(keys):
            balance, wallet_reply, margin_reply = answers[3 * n : 3 * n + 3]
            if isinstance(balance, RpcFailure):
                raise result_error(balance)
            eth = int(balance, 16)
            wallet = int(token.decode("balanceOf", wallet_reply))
            margin = int(ch.decode("marginOf", margin_reply))
            rows.append(
                [
                    str(index),
                    address,
                    units.format_units(eth, 18, 4, group=True),
                    tokens(bw, wallet),
                    wad(margin),
                ]
            )
            data.append(
                {
                    "index": index,
                    "address": address,
                    "file": str(file),
                    "eth": units.format_units(eth, 18),
                    "wallet": tokens_exact(bw, wallet),
                    "margin": units.format_wad(margin),
                }
            )
    lines = [f"{len(keys)} keys in {folder}"]
    if rows:
        lines += table(["INDEX", "ADDRESS", "ETH", f"WALLET {symbol}", "MARGIN"], rows)
    ctx.report({"keystore_dir": str(folder), "accounts": data}, lines)
    return EXIT_OK


def cmd_accounts_fund(ctx: Context) -> int:
    a = ctx.args
    address = parse_address(a.address)
    bw = ctx.bulwark()
    _local(ctx, bw.w3, "`bulwark accounts fund`")
    decimals, symbol = token_info(bw)
    eth_wei = _amount(a.eth, 18, "--eth")
    usdc = _amount(a.usdc, decimals, "--usdc")
    info = fund_address(ctx, bw, address, eth_wei, usdc)
    eth_now = int(bw.w3.eth.get_balance(to_checksum_address(address)))
    wallet = int(bw.call(bw.token.functions.balanceOf(address)))
    ctx.report(
        {
            "address": address,
            "eth_added": units.format_units(eth_wei, 18),
            "usdc_added": tokens_exact(bw, usdc),
            "eth": units.format_units(eth_now, 18),
            "wallet": tokens_exact(bw, wallet),
            **info,
        },
        [
            f"funded {address}: +{units.format_units(eth_wei, 18, group=True)} ETH, "
            f"+{tokens(bw, usdc)} {symbol}; it holds "
            f"{units.format_units(eth_now, 18, 4, group=True)} ETH and {tokens(bw, wallet)} {symbol}"
        ],
    )
    return EXIT_OK
