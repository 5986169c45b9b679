"""`bulwark node`, `bulwark compile` and `bulwark deploy`."""

from __future__ import annotations

import signal
import threading
from typing import Any

from web3 import Web3

from bulwark.chain import contracts as chain
from bulwark.chain.contracts import BulwarkError, Deployment
from bulwark.cli.args import ENV_RPC, EXIT_OK, UsageError
from bulwark.cli.context import Context, load_artifacts, load_deployment, parse_address
from bulwark.cli.render import table
from bulwark.core import paths, units
from bulwark.core.progress import Progress
from bulwark.devnet import compiler

# ---------------------------------------------------------------------------- node, compile, deploy


def cmd_node(ctx: Context) -> int:
    from bulwark.devnet.deploy import deploy_all
    from bulwark.devnet.node import AnvilError, AnvilNode

    a = ctx.args
    block_time = float(a.block_time) if a.block_time is not None else None
    node = AnvilNode(port=a.port, host=a.host, state_file=a.state, block_time=block_time)
    try:
        node.start()
    except AnvilError as exc:
        raise BulwarkError(
            f"could not start Anvil on {a.host}:{a.port}: {_anvil_reason(exc)}"
        ) from None
    ctx.node = node
    w3 = chain.connect(node.rpc_url)
    info: dict[str, Any] = {
        "rpc_url": node.rpc_url,
        "chain_id": w3.eth.chain_id,
        "pid": node.pid,
        "deployment": None,
    }
    seed_lines: list[str] = []
    if a.deploy:
        deployment = deploy_all(w3, chain.dev_account(0))
        path = deployment.save(ctx.deployment_path(deployment.chain_id))
        info["deployment"] = str(path)
        info["contracts"] = deployment.contracts
        info["seed"], seed_lines = _seed(w3, deployment, seed=not a.no_seed)
    lines = [
        f"Anvil is listening on {node.rpc_url} (chain id {info['chain_id']}, pid {node.pid})",
        f"  export {ENV_RPC}={node.rpc_url}",
    ]
    if info["deployment"]:
        lines.append(f"  Bulwark deployed; deployment file {info['deployment']}")
        lines.append(
            f"  mock USDC {info['contracts']['Collateral']}: 1,000,000 to each dev account"
        )
        lines += [f"  {line}" for line in seed_lines]
    lines.append("  dev accounts (Anvil's well-known test keys; never use them on a real network):")
    for i in range(10):
        acct = chain.dev_account(i)
        lines.append(f"    {i}  {acct.address}  0x{bytes(acct.key).hex()}")
    if a.web is not None:
        info["web_url"] = _serve_page(ctx, w3, node.rpc_url, a.web)
        lines.append(f"  trading page: {info['web_url']} (open it in a browser with a wallet)")
    lines.append("Ctrl-C stops the node.")
    # The handlers go in, and the try begins, before the node is announced: a Ctrl-C sent as soon
    # as the address is printed still stops the node cleanly.
    _stop_on_sigterm()
    try:
        ctx.report(info, lines)
        code = node.wait()
    except KeyboardInterrupt:
        node.stop()
        ctx.node = None
        ctx.note("node stopped")
        return EXIT_OK
    ctx.node = None
    raise BulwarkError(f"Anvil exited by itself with code {code}")


def _serve_page(ctx: Context, w3: Any, rpc_url: str, port: int) -> str:
    """Serves the trading page for this node's deployment (`bulwark web`) from a daemon thread."""
    from bulwark.cli.web import start_page

    path = ctx.deployment_path(w3.eth.chain_id)
    if not path.is_file():
        raise BulwarkError(f"--web needs a deployment: add --deploy (no deployment file {path})")
    bw = chain.Bulwark(w3, load_deployment(path), load_artifacts())
    return start_page(bw, rpc_url, port, ctx.note).url


def _anvil_reason(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "rror" in ln or "in use" in ln:
            return ln
    return lines[-1] if lines else type(exc).__name__


def _stop_on_sigterm() -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    # A shell starts background jobs with SIGINT ignored, and Python then leaves it so.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def cmd_compile(ctx: Context) -> int:
    try:
        artifacts = compiler.compile_contracts(force=ctx.args.force)
    except compiler.CompileError as exc:
        raise BulwarkError(f"compilation failed:\n{exc}") from None
    sizes = {name: compiler.deployed_size(a) for name, a in sorted(artifacts.items())}
    over = [n for n, s in sizes.items() if s > compiler.CODE_SIZE_LIMIT]
    rows = [
        [n, f"{s:,}", f"{compiler.CODE_SIZE_LIMIT - s:,}", "OVER THE LIMIT" if n in over else ""]
        for n, s in sizes.items()
        if s > 0
    ]
    lines = table(["CONTRACT", "BYTES", "TO SPARE", ""], rows)
    lines.append(
        f"{len(artifacts)} artifacts in {paths.build_dir()} "
        f"(limit {compiler.CODE_SIZE_LIMIT:,} bytes)"
    )
    ctx.report(
        {
            "build_dir": str(paths.build_dir()),
            "limit": compiler.CODE_SIZE_LIMIT,
            "sizes": sizes,
            "over_limit": over,
        },
        lines,
    )
    if over:
        raise BulwarkError(
            f"over the {compiler.CODE_SIZE_LIMIT:,}-byte code limit: {', '.join(over)}"
        )
    return EXIT_OK


def cmd_deploy(ctx: Context) -> int:
    from bulwark.devnet.deploy import deploy_all

    a = ctx.args
    feeds: dict[str, str] = {}
    for item in a.feed:
        name, eq, address = item.partition("=")
        if not eq:
            raise UsageError(f"bulwark deploy: --feed wants MARKET=ADDRESS, got {item!r}")
        feeds[name.strip().upper()] = parse_address(address.strip(), f"--feed {name}")
    collateral = parse_address(a.collateral, "--collateral") if a.collateral else None
    adl_keepers = [parse_address(k, "--adl-keeper") for k in a.adl_keeper] if a.adl_keeper else None
    embedded = ctx.rpc_url() is None
    w3 = ctx.web3(embedded=True)
    signer = ctx.signer(default_dev=0)
    load_artifacts()
    with Progress(None, ctx.err, "deploy") as progress:
        deployment = deploy_all(
            w3,
            signer,
            collateral=collateral,
            feeds=feeds or None,
            adl_keepers=adl_keepers,
            on_sent=lambda action: progress.advance(action),
        )
    data: dict[str, Any] = {
        "chain_id": deployment.chain_id,
        "deploy_block": deployment.deploy_block,
        "contracts": deployment.contracts,
        "deployer": signer.address,
        "markets": {n: {"id": m.id, "feed": m.feed} for n, m in deployment.markets.items()},
        "deployment_file": None,
        "embedded": embedded,
    }
    lines = [f"Bulwark deployed on chain {deployment.chain_id} by {signer.address}"]
    lines += table(["CONTRACT", "ADDRESS"], [[k, v] for k, v in deployment.contracts.items()])
    lines += table(
        ["MARKET", "ID", "FEED"], [[n, str(m.id), m.feed] for n, m in deployment.markets.items()]
    )
    if embedded:
        lines.append(
            "This was an embedded Anvil, gone when this command ends: no deployment file was "
            "written. For a chain that stays: `bulwark node --deploy`, or "
            "`bulwark node` then `bulwark deploy --rpc URL`."
        )
    else:
        path = deployment.save(ctx.deployment_path(deployment.chain_id))
        data["deployment_file"] = str(path)
        lines.append(f"deployment file: {path}")
        if deployment.local and collateral is None:
            lines.append("each of Anvil's 10 dev accounts holds 1,000,000 mock USDC")
    if embedded:
        data["seed"], seed_lines = None, list[str]()
    elif deployment.local and collateral is None:
        data["seed"], seed_lines = _seed(w3, deployment, seed=not a.no_seed)
    else:
        data["seed"], seed_lines = None, _next_steps()
    lines += seed_lines
    ctx.report(data, lines)
    return EXIT_OK


def _seed(
    w3: Web3, deployment: Deployment, *, seed: bool
) -> tuple[dict[str, Any] | None, list[str]]:
    """Seeds the pool and the fund of a local deployment (unless --no-seed): its JSON and lines."""
    from bulwark.devnet.deploy import SEED_FUND_ACCOUNT, SEED_POOL_ACCOUNT, seed_local

    if not seed:
        return None, ["the pool and the fund were left empty (--no-seed):", *_next_steps()[1:]]
    s = seed_local(w3, deployment, load_artifacts())
    sd = s.share_decimals
    data = {
        "pool": {"account": s.pool_account, "amount": str(s.pool_tokens),
                 "shares": units.format_units(s.pool_shares, sd)},
        "fund": {"account": s.fund_account, "amount": str(s.fund_tokens),
                 "shares": units.format_units(s.fund_shares, sd)},
    }  # fmt: skip
    return data, [
        f"seeded the liquidity pool with {s.pool_tokens:,} mock USDC from dev account "
        f"{SEED_POOL_ACCOUNT} and the insurance fund with {s.fund_tokens:,} from dev account "
        f"{SEED_FUND_ACCOUNT} ({units.format_units(s.fund_shares, sd, group=True)} fund shares: "
        "one per token)",
        "ready to trade: `bulwark trade deposit 10000 --dev-account 4`, then "
        "`bulwark trade open ETH-USD 2.5 --dev-account 4`",
    ]


def _next_steps() -> list[str]:
    return [
        "next: the pool and the fund start empty, and every trade fails the pool's exposure cap "
        "(3 x its equity) until someone deposits:",
        "  `bulwark pool deposit AMOUNT` provides the liquidity that takes the other side of trades",
        "  `bulwark fund stake AMOUNT` makes the first insurance-fund stake",
    ]
