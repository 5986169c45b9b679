"""`bulwark web`: the trading page for wallet users, served on 127.0.0.1.

The page is static (web/index.html, web/style.css and one script bundled from web/src by esbuild)
plus ``/config.json``, made here at start from the deployment file and the build artifacts: the
chain, the RPC URL, the addresses, the ABIs and the error words of bulwark/core/errors.json. The page
reads the chain from that RPC URL and sends transactions through the browser's wallet; this
server never signs anything and never leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bulwark.chain.contracts import Bulwark, BulwarkError
from bulwark.cli.args import EXIT_OK
from bulwark.cli.context import Context, load_artifacts, token_info
from bulwark.core import paths

DEFAULT_WEB_PORT = 8600
HOST = "127.0.0.1"

# URL path -> (file under web/, content type). Nothing else is served.
_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/app.js": ("dist/app.js", "text/javascript; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}

# The ABIs the page calls, by the name it uses; the collateral and the feeds are standard
# interfaces, read from the mock contracts' artifacts.
_ABIS = {
    "ClearingHouse": "ClearingHouse",
    "LiquidityPool": "LiquidityPool",
    "InsuranceFund": "InsuranceFund",
    "OracleAdapter": "OracleAdapter",
    "Collateral": "MockUSDC",
    "Aggregator": "MockAggregator",
}


def web_dir() -> Path:
    """``web/`` of the project (or of the repository this package came from)."""
    return paths.toolchain_file("web/index.html").parent


def bundle_is_current(web: Path) -> bool:
    bundle = web / "dist" / "app.js"
    if not bundle.is_file():
        return False
    built = bundle.stat().st_mtime
    sources = [*(web / "src").rglob("*.js"), web.parent / "package-lock.json"]
    return all(s.stat().st_mtime <= built for s in sources if s.is_file())


def build_bundle(web: Path, note: Any = None) -> Path:
    """Bundles web/src into web/dist/app.js with esbuild (``npm run build:web``) when it changed."""
    bundle = web / "dist" / "app.js"
    if bundle_is_current(web):
        return bundle
    root = web.parent
    npm = shutil.which("npm")
    if npm is None or not (root / "node_modules" / "esbuild").is_dir():
        raise BulwarkError(
            f"the page's script {bundle} is not built and esbuild is not installed: run "
            f"`make web` in {root}"
        )
    if note is not None:
        note("building the page's script (esbuild)")
    done = subprocess.run(
        [npm, "run", "--silent", "build:web"], cwd=root, capture_output=True, text=True
    )
    if done.returncode != 0 or not bundle.is_file():
        first = (done.stderr or done.stdout or "no output").strip().splitlines()[:3]
        raise BulwarkError(f"building the page's script failed: {' '.join(first)}")
    return bundle


def error_words() -> dict[str, Any]:
    words: dict[str, Any] = json.loads(
        resources.files("bulwark.core").joinpath("errors.json").read_text()
    )
    return words


def page_config(bw: Bulwark, rpc_url: str, artifacts: dict[str, Any]) -> dict[str, Any]:
    """What the page needs to know, all from the deployment file and the build artifacts."""
    d = bw.deployment
    decimals, symbol = token_info(bw)
    errors: dict[str, dict[str, Any]] = {}
    for artifact in artifacts.values():
        for item in artifact.get("abi", []):
            if item.get("type") == "error":
                types = ",".join(str(i["type"]) for i in item["inputs"])
                errors.setdefault(f"{item['name']}({types})", item)
    missing = [a for a in _ABIS.values() if a not in artifacts]
    if missing:
        raise BulwarkError(f"the build has no artifact for {', '.join(missing)}")
    return {
        "chainId": d.chain_id,
        "chainName": "Bulwark local" if d.local else f"Bulwark on chain {d.chain_id}",
        "local": d.local,
        "rpcUrl": rpc_url,
        "deployBlock": d.deploy_block,
        "contracts": d.contracts,
        "markets": [{"name": n, "id": m.id, "feed": m.feed} for n, m in d.markets.items()],
        "collateral": {
            "address": d.contracts["Collateral"],
            "decimals": decimals,
            "symbol": symbol,
        },
        "abis": {name: artifacts[artifact]["abi"] for name, artifact in _ABIS.items()},
        "errors": list(errors.values()),
        "words": error_words(),
    }


def _content_security_policy(rpc_url: str) -> str:
    parts = urlsplit(rpc_url)
    rpc_origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' {rpc_origin}; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


class PageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, web: Path, config: dict[str, Any]) -> None:
        self.web = web
        self.config_body = json.dumps(config).encode()
        self.csp = _content_security_policy(str(config["rpcUrl"]))
        try:
            super().__init__((HOST, port), _Handler)
        except OSError as exc:
            raise BulwarkError(
                f"could not serve the page on {HOST}:{port}: {exc.strerror or exc} "
                "(choose another with --port, or --port 0 for a free one)"
            ) from None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    server: PageServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/config.json":
            self._send(self.server.config_body, "application/json")
            return
        entry = _FILES.get(path)
        if entry is None:
            self._send(b"not found\n", "text/plain", HTTPStatus.NOT_FOUND)
            return
        name, kind = entry
        try:
            body = (self.server.web / name).read_bytes()
        except OSError:
            self._send(b"not found\n", "text/plain", HTTPStatus.NOT_FOUND)
            return
        self._send(body, kind)

    def do_HEAD(self) -> None:
        self.do_GET()

    def _send(self, body: bytes, kind: str, status: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", self.server.csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        if os.environ.get("BULWARK_WEB_LOG"):
            super().log_message(format, *args)


def start_page(
    bw: Bulwark, rpc_url: str, port: int = DEFAULT_WEB_PORT, note: Any = None
) -> PageServer:
    """Builds the script if needed and serves the page from a daemon thread; returns the server
    (``server.url``; ``server.shutdown()`` stops it)."""
    web = web_dir()
    build_bundle(web, note)
    server = PageServer(port, web, page_config(bw, rpc_url, load_artifacts()))
    threading.Thread(target=server.serve_forever, name="bulwark-web", daemon=True).start()
    return server


def cmd_web(ctx: Context) -> int:
    from bulwark.cli.node import _stop_on_sigterm

    bw = ctx.bulwark()  # needs --rpc or $BULWARK_RPC, and says so
    rpc_url = ctx.rpc_url() or ""
    server = start_page(bw, rpc_url, ctx.args.port, ctx.note)
    _stop_on_sigterm()  # before the address is printed: a Ctrl-C right after it stops cleanly
    stop = threading.Event()
    try:
        ctx.report(
            {"url": server.url, "chain_id": bw.deployment.chain_id, "rpc_url": rpc_url},
            [
                f"Bulwark page for chain {bw.deployment.chain_id} ({rpc_url}): {server.url}",
                "Open it in a browser with a wallet (docs/wallet.md). Ctrl-C stops it.",
            ],
        )
        stop.wait()
    except KeyboardInterrupt:
        ctx.note("page stopped")
    finally:
        server.shutdown()
        server.server_close()
    return EXIT_OK
