// The Bulwark trading page: reads the chain from the deployment's RPC at every new block and
// sends transactions through the browser's wallet (EIP-1193, found through EIP-6963).
import { createPublicClient, createWalletClient, custom, defineChain, encodeErrorResult, getAddress, http, numberToHex, BaseError, ContractFunctionRevertedError } from "viem";
import { WAD, formatUnits, wad, percent, parseUnits, when, duration, relative, short } from "./format.js";
import { decodeRevert, revertMessage } from "./errors.js";
import { Reader, liquidationPrice, notional } from "./chain.js";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const LIGHT_ON = "\u25cf";
const LIGHT_OFF = "\u25cb";

const app = {
  cfg: null,
  chain: null,
  pub: null,
  reader: null,
  contracts: null,
  errorAbi: null,
  wallets: [],
  wallet: null, // { info, provider }
  account: null,
  walletChainId: null,
  side: "long",
  snap: null, // the last block's reads
  refreshing: false,
  again: false,
  txSeq: 0,
};

// ---------------------------------------------------------------------------- units

const dec = () => app.cfg.collateral.decimals;
const sym = () => app.cfg.collateral.symbol;
const scale = () => 10n ** BigInt(18 - dec());
const tokens = (v, opts = {}) => formatUnits(v, dec(), 2, { group: true, ...opts });
const tokensDown = (v) => formatUnits(v, dec(), 2, { group: true, down: true });
const num = (raw, text, cls = "") => `<td class="num ${cls}" data-value="${raw === null || raw === undefined ? "" : raw}">${text}</td>`;
const signClass = (v) => (v === null || v === undefined ? "" : v > 0n ? "pos" : v < 0n ? "neg" : "");

// ---------------------------------------------------------------------------- start

async function start() {
  const cfg = await (await fetch("/config.json", { cache: "no-store" })).json();
  app.cfg = cfg;
  app.chain = defineChain({
    id: cfg.chainId,
    name: cfg.chainName,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [cfg.rpcUrl] } },
  });
  app.pub = createPublicClient({ chain: app.chain, transport: http(cfg.rpcUrl, { batch: { wait: 5 } }), pollingInterval: 1000 });
  app.errorAbi = cfg.errors;
  const withErrors = (abi) => [...abi, ...cfg.errors.filter((e) => !abi.some((a) => a.type === "error" && a.name === e.name))];
  const k = cfg.contracts;
  app.contracts = {
    ch: { address: k.ClearingHouse, abi: withErrors(cfg.abis.ClearingHouse), name: "ClearingHouse" },
    pool: { address: k.LiquidityPool, abi: withErrors(cfg.abis.LiquidityPool), name: "LiquidityPool" },
    fund: { address: k.InsuranceFund, abi: withErrors(cfg.abis.InsuranceFund), name: "InsuranceFund" },
    oracle: { address: k.OracleAdapter, abi: withErrors(cfg.abis.OracleAdapter), name: "OracleAdapter" },
    token: { address: k.Collateral, abi: withErrors(cfg.abis.Collateral), name: "Collateral" },
  };
  app.reader = new Reader(app.pub, cfg, app.contracts);
  $("trade-market").innerHTML = cfg.markets.map((m) => `<option value="${m.id}">${esc(m.name)}</option>`).join("");
  $("watch-token").textContent = `Add ${sym()} to wallet`;
  wireForms();
  discoverWallets();
  app.pub.watchBlockNumber({ emitOnBegin: true, poll: true, pollingInterval: 1000, onBlockNumber: () => refresh(), onError: (e) => showNodeError(e) });
  document.body.dataset.ready = "true";
}

function showNodeError(error) {
  const reason = (error && (error.shortMessage || error.message)) || String(error);
  $("chain-info").innerHTML = `<span class="bad" data-testid="node-error">cannot read Bulwark from ${esc(app.cfg.rpcUrl)}: ${esc(reason.split("\n")[0])}</span>`;
}

// ---------------------------------------------------------------------------- wallets

function discoverWallets() {
  window.addEventListener("eip6963:announceProvider", (event) => {
    const { info, provider } = event.detail || {};
    if (!info || !provider || app.wallets.some((w) => w.info.uuid === info.uuid)) return;
    app.wallets.push({ info, provider });
    renderWallet();
    reconnect({ info, provider });
  });
  window.dispatchEvent(new Event("eip6963:requestProvider"));
  // A wallet that only injects window.ethereum (no EIP-6963) is still found.
  setTimeout(() => {
    if (!app.wallets.length && window.ethereum) {
      const legacy = { info: { uuid: "legacy", name: "Browser wallet", icon: "", rdns: "" }, provider: window.ethereum };
      app.wallets.push(legacy);
      renderWallet();
      reconnect(legacy);
    }
  }, 400);
  renderWallet();
}

async function reconnect(wallet) {
  if (app.wallet || localStorage.getItem("bulwark.wallet") !== wallet.info.rdns + wallet.info.name) return;
  try {
    const accounts = await wallet.provider.request({ method: "eth_accounts" });
    if (accounts && accounts.length) await useWallet(wallet, accounts);
  } catch {
    /* not authorised yet: the Connect button asks */
  }
}

async function connect(wallet) {
  $("wallet-choice").hidden = true;
  try {
    const accounts = await wallet.provider.request({ method: "eth_requestAccounts" });
    await useWallet(wallet, accounts);
    localStorage.setItem("bulwark.wallet", wallet.info.rdns + wallet.info.name);
  } catch (error) {
    note(`wallet: ${plainWalletError(error)}`);
  }
}

async function useWallet(wallet, accounts) {
  for (const w of [app.wallet, wallet]) {
    if (w && w.provider.removeListener) {
      w.provider.removeListener("accountsChanged", onAccounts);
      w.provider.removeListener("chainChanged", onChain);
    }
  }
  app.wallet = wallet;
  app.account = accounts && accounts.length ? getAddress(accounts[0]) : null;
  app.walletChainId = Number(await wallet.provider.request({ method: "eth_chainId" }));
  if (wallet.provider.on) {
    wallet.provider.on("accountsChanged", onAccounts);
    wallet.provider.on("chainChanged", onChain);
  }
  renderWallet();
  refresh();
}

function onAccounts(accounts) {
  app.account = accounts && accounts.length ? getAddress(accounts[0]) : null;
  renderWallet();
  refresh();
}

function onChain(chainId) {
  app.walletChainId = Number(chainId);
  renderWallet();
  refresh();
}

async function switchChain() {
  const provider = app.wallet.provider;
  const chainId = numberToHex(app.cfg.chainId);
  try {
    await provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId }] });
  } catch (error) {
    const code = error && (error.code ?? (error.data && error.data.originalError && error.data.originalError.code));
    if (code !== 4902) {
      note(`switching the wallet's network: ${plainWalletError(error)}`);
      return;
    }
    try {
      await provider.request({
        method: "wallet_addEthereumChain",
        params: [{ chainId, chainName: app.cfg.chainName, rpcUrls: [app.cfg.rpcUrl], nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 } }],
      });
    } catch (addError) {
      note(`adding the network to the wallet: ${plainWalletError(addError)}`);
      return;
    }
  }
  app.walletChainId = Number(await provider.request({ method: "eth_chainId" }));
  renderWallet();
}

async function watchToken() {
  const c = app.cfg.collateral;
  try {
    await app.wallet.provider.request({ method: "wallet_watchAsset", params: { type: "ERC20", options: { address: c.address, symbol: c.symbol, decimals: c.decimals } } });
    note(`${c.symbol} added to the wallet's tokens`);
  } catch (error) {
    note(`adding the token: ${plainWalletError(error)}`);
  }
}

const onRightChain = () => app.wallet && app.account && app.walletChainId === app.cfg.chainId;

function renderWallet() {
  const connectButton = $("connect");
  const info = $("wallet-info");
  $("watch-token").hidden = !onRightChain();
  if (!app.wallets.length) {
    connectButton.textContent = "No wallet found";
    connectButton.disabled = true;
    info.innerHTML = `<span class="muted">install a browser wallet (docs/wallet.md)</span>`;
  } else if (app.account) {
    connectButton.hidden = true;
    info.innerHTML = `<span class="dot ${onRightChain() ? "ok" : "bad"}"></span>${esc(app.wallet.info.name)} <code data-testid="account-address" title="${app.account}">${short(app.account)}</code>`;
  } else {
    connectButton.hidden = false;
    connectButton.disabled = false;
    connectButton.textContent = "Connect wallet";
    info.textContent = "";
  }
  const banner = $("wrong-chain");
  if (app.wallet && app.account && !onRightChain()) {
    const html = `<div class="banner warn" id="wrong-chain" data-testid="wrong-chain">Your wallet is on chain ${app.walletChainId}; this page trades on ${esc(app.cfg.chainName)} (chain ${app.cfg.chainId}). <button id="switch-chain" data-testid="switch-chain">Switch to ${esc(app.cfg.chainName)}</button></div>`;
    if (banner) banner.outerHTML = html;
    else $("banners").insertAdjacentHTML("afterbegin", html);
    $("switch-chain").onclick = switchChain;
  } else if (banner) {
    banner.remove();
  }
  for (const button of document.querySelectorAll("form button[type=submit], .act")) button.disabled = !onRightChain() || button.dataset.waiting === "true";
}

function chooseWallet() {
  if (app.wallets.length === 1) return connect(app.wallets[0]);
  const box = $("wallet-choice");
  box.innerHTML = app.wallets
    .map((w, i) => `<button data-wallet="${i}">${w.info.icon ? `<img src="${esc(w.info.icon)}" alt="" width="20" height="20">` : ""}${esc(w.info.name)}</button>`)
    .join("");
  box.hidden = false;
  box.querySelectorAll("button").forEach((b) => (b.onclick = () => connect(app.wallets[Number(b.dataset.wallet)])));
}

function plainWalletError(error) {
  const code = error && error.code;
  if (code === 4001) return "cancelled in the wallet";
  if (code === 4100) return "the wallet has not authorised this page";
  return (error && (error.shortMessage || error.message)) || String(error);
}

// ---------------------------------------------------------------------------- transactions

function note(text) {
  addTx("wallet", "note", text);
}

// The card whose form started the current action: its last transaction is shown under it too.
const CARDS = { trade: "trade", deposit: "margin", withdraw: "margin", pool: "pool", fund: "fund", unstake: "fund", claim: "fund", lapse: "fund" };

function addTx(action, stateName, text) {
  const list = $("txs");
  if (list.querySelector(".muted")) list.innerHTML = "";
  const li = document.createElement("li");
  li.id = `tx-${++app.txSeq}`;
  li.dataset.card = app.activeCard || "";
  list.prepend(li);
  setTx(li, action, stateName, text);
  return li;
}

function setTx(li, action, stateName, text) {
  li.className = `tx ${stateName}`;
  li.dataset.action = action;
  li.dataset.state = stateName;
  const label = { pending: "pending", confirmed: "confirmed", failed: "failed", wallet: "wallet", note: "note" }[stateName];
  const what = text.startsWith(action) ? "" : `<span class="what">${esc(action)}</span> `;
  li.innerHTML = `<span class="state">${label}</span> ${what}<span class="msg" data-testid="tx-message">${esc(text)}</span>`;
  const status = li.dataset.card && $(`${li.dataset.card}-status`);
  if (status) {
    status.className = `status tx ${stateName}`;
    status.innerHTML = li.innerHTML;
  }
}

/** The plain one-line reason of a failed call, in the command line's words. */
function failure(action, error) {
  if (error instanceof BaseError) {
    const reverted = error.walk((e) => e instanceof ContractFunctionRevertedError);
    if (reverted) {
      const raw = reverted.raw || (reverted.data && reverted.signature) || null;
      if (raw) return revertMessage(action, decodeRevert(app.errorAbi, raw, app.cfg.words), dec(), app.cfg.words);
      if (reverted.reason) return `${action} reverted: Error(message=${reverted.reason})`;
    }
    const rejected = error.walk((e) => e && e.code === 4001);
    if (rejected) return `${action}: cancelled in the wallet`;
    return `${action}: ${error.shortMessage || error.message}`;
  }
  if (error && error.code === 4001) return `${action}: cancelled in the wallet`;
  return `${action}: ${(error && error.message) || error}`;
}

/** Simulates, sends through the wallet and waits: each step shown in the transaction list. */
async function send(action, contract, functionName, args) {
  const li = addTx(action, "wallet", "checking…");
  try {
    if (!onRightChain()) throw new Error("switch the wallet to this page's network first");
    const account = app.account;
    const call = { address: contract.address, abi: contract.abi, functionName, args, account };
    await app.pub.simulateContract(call);
    // Room for what the estimate cannot see (a later block accrues funding), as the CLI does.
    const estimate = await app.pub.estimateContractGas(call);
    setTx(li, action, "wallet", "confirm in your wallet…");
    const walletClient = createWalletClient({ account, chain: app.chain, transport: custom(app.wallet.provider) });
    const hash = await walletClient.writeContract({ ...call, gas: (estimate * 3n) / 2n + 100000n });
    setTx(li, action, "pending", `sent ${short(hash)}, waiting for a block…`);
    li.dataset.hash = hash;
    const receipt = await app.pub.waitForTransactionReceipt({ hash, pollingInterval: 500 });
    if (receipt.status !== "success") {
      // Replayed as a call at its block to recover the reason, as the command line does.
      let reason = `${action} reverted in block ${receipt.blockNumber} (the replay succeeded: out of gas?)`;
      try {
        await app.pub.simulateContract({ ...call, blockNumber: receipt.blockNumber });
      } catch (replayError) {
        reason = failure(action, replayError);
      }
      setTx(li, action, "failed", reason);
      return null;
    }
    setTx(li, action, "confirmed", `in block ${receipt.blockNumber}`);
    refresh();
    return receipt;
  } catch (error) {
    setTx(li, action, "failed", failure(action, error));
    return null;
  }
}

async function ensureAllowance(spender, amount) {
  const allowance = await app.pub.readContract({ ...app.contracts.token, functionName: "allowance", args: [app.account, spender] });
  if (allowance >= amount) return true;
  return (await send("approve", app.contracts.token, "approve", [spender, amount])) !== null;
}

function refuse(action, text, prefix = true) {
  addTx(action, "failed", prefix ? `${action}: ${text}` : text);
}

function amountOf(input, what) {
  return parseUnits($(input).value, dec(), what, sym());
}

async function guarded(action, fn) {
  app.activeCard = CARDS[action.split(" ")[0]] || "";
  try {
    await fn();
  } catch (error) {
    refuse(action, error.message || String(error));
  }
}

function wireForms() {
  $("connect").onclick = chooseWallet;
  $("watch-token").onclick = watchToken;
  for (const b of document.querySelectorAll(".side")) {
    b.onclick = () => {
      app.side = b.dataset.side;
      document.querySelectorAll(".side").forEach((x) => x.classList.toggle("selected", x === b));
      renderTradePreview();
    };
  }
  for (const id of ["trade-size", "trade-slippage", "trade-market"]) $(id).addEventListener("input", renderTradePreview);
  for (const span of document.querySelectorAll(".max")) span.onclick = () => fillMax(span.dataset.max);
  // An amount filled by `max` is the pool's limit, read again when sent; typing makes it an amount.
  $("pool-withdraw-amount").addEventListener("input", (e) => delete e.target.dataset.max);

  $("trade-form").onsubmit = (e) => {
    e.preventDefault();
    const market = app.cfg.markets.find((m) => String(m.id) === $("trade-market").value);
    guarded(`trade ${market.name}`, async () => {
      const size = parseUnits($("trade-size").value, 18, "SIZE", market.name.split("-")[0]);
      await trade(market, app.side === "long" ? size : -size);
    });
  };
  $("deposit-form").onsubmit = (e) => {
    e.preventDefault();
    guarded("deposit", async () => {
      const amount = amountOf("deposit-amount", "AMOUNT");
      const wallet = app.snap && app.snap.account ? app.snap.account.wallet : 0n;
      if (wallet < amount) throw new Error(`wallet ${app.account} holds ${tokensDown(wallet)} ${sym()}, less than the ${tokens(amount)} asked for`);
      if (await ensureAllowance(app.contracts.ch.address, amount)) await send("deposit", app.contracts.ch, "deposit", [app.account, amount]);
    });
  };
  $("withdraw-form").onsubmit = (e) => {
    e.preventDefault();
    guarded("withdraw", async () => send("withdraw", app.contracts.ch, "withdraw", [amountOf("withdraw-amount", "AMOUNT"), app.account]));
  };
  $("pool-deposit-form").onsubmit = (e) => {
    e.preventDefault();
    guarded("pool deposit", async () => {
      const amount = amountOf("pool-deposit-amount", "AMOUNT");
      if (await ensureAllowance(app.contracts.pool.address, amount)) await send("pool deposit", app.contracts.pool, "deposit", [amount, app.account]);
    });
  };
  $("pool-withdraw-form").onsubmit = (e) => {
    e.preventDefault();
    guarded("pool withdraw", async () => {
      if ($("pool-withdraw-amount").dataset.max !== "true") {
        return send("pool withdraw", app.contracts.pool, "withdraw", [amountOf("pool-withdraw-amount", "AMOUNT"), app.account, app.account]);
      }
      // `max`: the pool's own limits at this moment. They never revert; when every share can leave,
      // redeem them all (no dust of shares stays behind), else withdraw what the pool pays now.
      const read = (functionName) => app.pub.readContract({ ...app.contracts.pool, functionName, args: [app.account] });
      const [shares, maxRedeem, maxWithdraw] = await Promise.all([read("balanceOf"), read("maxRedeem"), read("maxWithdraw")]);
      if (maxRedeem === 0n || maxWithdraw === 0n) throw new Error(`${app.account} has nothing to withdraw from the pool now`);
      if (maxRedeem === shares) return send("pool withdraw", app.contracts.pool, "redeem", [maxRedeem, app.account, app.account]);
      return send("pool withdraw", app.contracts.pool, "withdraw", [maxWithdraw, app.account, app.account]);
    });
  };
  $("stake-form").onsubmit = (e) => {
    e.preventDefault();
    guarded("fund stake", async () => {
      const amount = amountOf("stake-amount", "AMOUNT");
      const room = app.snap && app.snap.fund.room !== undefined ? app.snap.fund.room : null;
      if (room !== null && amount > room) throw new Error(`the fund takes at most ${tokensDown(room)} more before its cap`);
      if (await ensureAllowance(app.contracts.fund.address, amount)) await send("fund stake", app.contracts.fund, "deposit", [amount, app.account]);
    });
  };
  $("unstake-form").onsubmit = (e) => {
    e.preventDefault();
    guarded("unstake request", async () => {
      const shares = parseUnits($("unstake-shares").value, app.snap.fund.decimals, "SHARES", "shares");
      await send("unstake request", app.contracts.fund, "requestUnstake", [shares]);
    });
  };
}

/** Fills an amount with the most the user can submit, rounded down to the token's units. */
function fillMax(which) {
  const s = app.snap;
  if (!s || !s.account) return;
  const exact = (v, d = dec()) => formatUnits(v, d, null);
  const values = {
    deposit: ["deposit-amount", s.account.wallet],
    withdraw: ["withdraw-amount", (s.account.freeMargin || 0n) / scale()],
    "pool-deposit": ["pool-deposit-amount", s.account.wallet],
    "pool-withdraw": ["pool-withdraw-amount", s.pool.maxWithdraw || 0n],
    stake: ["stake-amount", s.account.wallet < (s.fund.room || 0n) ? s.account.wallet : s.fund.room || 0n],
    unstake: ["unstake-shares", s.fund.shares || 0n, s.fund.decimals],
  };
  const [input, value, d] = values[which];
  $(input).value = exact(value, d);
  if (which === "pool-withdraw") $(input).dataset.max = "true";
}

function acceptablePrice(price, buy, slippageText) {
  const pct = parseUnits(slippageText, 16, "slippage", "%", { allowZero: true });
  if (pct >= 100n * 10n ** 16n) throw new Error("slippage must be a percentage from 0 to under 100");
  return buy ? price + (price * pct + WAD - 1n) / WAD : price - (price * pct) / WAD;
}

async function trade(market, size) {
  const price = await app.pub.readContract({ ...app.contracts.oracle, functionName: "priceWad", args: [BigInt(market.id)] }).catch((error) => {
    throw new Error(failure(`price of ${market.name}`, error));
  });
  const limit = acceptablePrice(price, size > 0n, $("trade-slippage").value);
  const action = `trade ${market.name}`;
  const below = await belowMinimum(market, size, price);
  if (below) return refuse(action, below, false);
  return send(action, app.contracts.ch, "trade", [BigInt(market.id), size, limit]);
}

/** The clearing house's rule, checked before the wallet is asked: a trade leaves the position flat
 * or at least the market's minimum notional. The refusal is the contract's error in the CLI's words. */
async function belowMinimum(market, size, price) {
  const id = BigInt(market.id);
  const read = (functionName, args) => app.pub.readContract({ ...app.contracts.ch, functionName, args });
  const [position, config] = await Promise.all([read("positionOf", [app.account, id]), read("marketConfig", [id])]);
  const after = position.sizeWad + size;
  const leaves = notional(after, price);
  if (after === 0n || leaves >= config.minPositionNotionalWad) return null;
  const raw = encodeErrorResult({ abi: app.errorAbi, errorName: "TradePositionBelowMinimum", args: [id, leaves, config.minPositionNotionalWad] });
  return revertMessage(`trade ${market.name}`, decodeRevert(app.errorAbi, raw, app.cfg.words), dec(), app.cfg.words);
}

// ---------------------------------------------------------------------------- refresh

async function refresh() {
  if (!app.reader) return;
  if (app.refreshing) {
    app.again = true;
    return;
  }
  app.refreshing = true;
  try {
    do {
      app.again = false;
      const blockNumber = await app.pub.getBlockNumber({ cacheTime: 0 });
      app.reader.resetIfRewound(blockNumber);
      const me = onRightChain() ? app.account : null;
      const protocol = await app.reader.protocol(blockNumber);
      const [pool, fund, account] = await Promise.all([
        app.reader.pool(blockNumber, me),
        app.reader.fund(blockNumber, me, protocol.now),
        me ? app.reader.account(blockNumber, me, protocol) : null,
      ]);
      app.snap = { blockNumber, protocol, pool, fund, account };
      render();
    } while (app.again);
  } catch (error) {
    showNodeError(error);
  } finally {
    app.refreshing = false;
  }
}

function render() {
  const s = app.snap;
  const p = s.protocol;
  $("chain-info").innerHTML = `${esc(app.cfg.chainName)} · chain ${app.cfg.chainId} · block <span data-testid="block" data-value="${s.blockNumber}">${s.blockNumber}</span> · ${when(p.now)}`;
  document.body.dataset.block = String(s.blockNumber);
  renderBanners(p);
  renderMarkets(p);
  renderAccount(s.account, p);
  renderPool(s.pool, p);
  renderFund(s.fund, p);
  renderTradePreview();
  renderWallet();
}

function renderBanners(p) {
  const items = [];
  if (p.reduceOnly) items.push(`<div class="banner bad" data-testid="reduce-only">Reduce-only: the guardian paused new risk. Only closing and reducing positions work.</div>`);
  if (p.totalBadDebt > 0n) items.push(`<div class="banner warn" data-testid="bad-debt">Bad debt outstanding: ${wad(p.totalBadDebt)}. Withdrawals wait until it is covered, deleveraged or shared.</div>`);
  for (const m of p.markets) {
    if (m.stale || m.priceWad === null) {
      const hint = app.cfg.local ? ` On a local chain publish a fresh price: <code>bulwark feed set ${esc(m.name)} PRICE</code>.` : "";
      items.push(`<div class="banner warn" data-testid="stale-${esc(m.name)}">${esc(m.name)}: the price is older than its heartbeat (${duration(m.heartbeat)}); trading in it reverts until the feed updates.${hint}</div>`);
    }
  }
  const wrong = $("wrong-chain");
  $("banners").innerHTML = items.join("");
  if (wrong) $("banners").prepend(wrong);
}

function renderMarkets(p) {
  const head = `<thead><tr><th>Market</th><th>Price</th><th>Age</th><th title="positive: longs pay shorts; negative: shorts pay longs">Funding / day</th><th>OI long</th><th>OI short</th><th title="the larger side's open interest at the price: what the pool's exposure cap counts">Pool exposure</th><th title="the largest new long / new short the pool takes now">Room long / short</th><th title="a trade must leave a position flat or at least this notional">Min. position</th><th>Bad debt long / short</th></tr></thead>`;
  const rows = p.markets.map((m) => {
    const base = m.name.split("-")[0];
    const price = m.priceWad !== null ? num(m.priceWad, wad(m.priceWad)) : `<td class="num bad">unavailable</td>`;
    const age = m.age !== null ? `<td class="num ${m.stale ? "bad" : ""}">${duration(m.age < 0n ? 0n : m.age)}</td>` : `<td>-</td>`;
    return `<tr data-market="${esc(m.name)}"><td class="name">${esc(m.name)}</td>${price}${age}${num(m.fundingPerDay, percent(m.fundingPerDay, 4), signClass(m.fundingPerDay))}${num(m.oiLong, `${wad(m.oiLong, 4)} ${esc(base)}`)}${num(m.oiShort, `${wad(m.oiShort, 4)} ${esc(base)}`)}${num(m.exposure, m.exposure !== undefined ? wad(m.exposure) : "-")}${num(m.roomLong, m.roomLong !== undefined ? `${wad(m.roomLong, 4, { down: true })} / ${wad(m.roomShort, 4, { down: true })} ${esc(base)}` : "-", "room")}${num(m.config.minPositionNotionalWad, wad(m.config.minPositionNotionalWad), "min-position")}${num(m.debtLong + m.debtShort, `${wad(m.debtLong)} / ${wad(m.debtShort)}`, m.debtLong + m.debtShort > 0n ? "bad" : "")}</tr>`;
  });
  $("markets").innerHTML = head + `<tbody>${rows.join("")}</tbody>`;
}

function stat(label, raw, text, id, cls = "") {
  return `<div class="stat"><dt>${label}</dt><dd class="${cls}" data-testid="${id}" data-value="${raw === null || raw === undefined ? "" : raw}">${text}</dd></div>`;
}

function lights(count) {
  return `<span class="lights" data-value="${count}" title="ADL queue: ${count} of 5">${LIGHT_ON.repeat(count)}${LIGHT_OFF.repeat(5 - count)}</span>`;
}

function renderAccount(a, p) {
  const box = $("account");
  if (!a) {
    box.innerHTML = `<p class="muted">${app.account ? "Switch the wallet to this network to see your account." : "Connect a wallet to see your account."}</p>`;
    return;
  }
  const state = a.liquidatable ? `<span class="tag bad" data-testid="health">liquidatable</span>` : `<span class="tag ok" data-testid="health">healthy</span>`;
  const stats = [
    stat(`Wallet ${esc(sym())}`, a.wallet, tokensDown(a.wallet), "wallet"),
    stat("Margin", a.margin, wad(a.margin), "margin"),
    stat("Equity", a.equity, wad(a.equity), "equity", signClass(a.equity)),
    stat("Free margin", a.freeMargin, a.freeMargin !== undefined ? wad(a.freeMargin, 2, { down: true }) : "-", "free-margin"),
    stat("Margin ratio", a.marginRatio, a.marginRatio !== null && a.marginRatio !== undefined ? percent(a.marginRatio) : "n/a", "margin-ratio"),
    stat("Leverage", a.leverage, a.leverage !== null && a.leverage !== undefined ? `${wad(a.leverage)}x` : "-", "leverage"),
    stat("Initial / maint. margin", a.initialMargin, `${wad(a.initialMargin)} / ${wad(a.maintenanceMargin)}`, "margins"),
  ].join("");
  let positions = `<p class="muted" data-testid="no-positions">No open positions.</p>`;
  if (a.positions.length) {
    const rows = a.positions.map((x) => {
      const side = x.size > 0n ? "long" : "short";
      const base = x.market.split("-")[0];
      const adl = x.adl.rank !== null ? `${lights(x.adl.lights)} <span class="muted">${x.adl.rank} of ${x.adl.queueLength}</span>` : `${lights(0)} <span class="muted">not in queue</span>`;
      return `<tr data-position="${esc(x.market)}"><td class="name">${esc(x.market)} <span class="tag ${side}">${side}</span></td>${num(x.size, `${formatUnits(x.size < 0n ? -x.size : x.size, 18, null, { group: true })} ${esc(base)}`, "size")}${num(x.entry, wad(x.entry), "entry")}${num(x.price, wad(x.price), "mark")}${num(x.notional, wad(x.notional), "notional")}${num(x.upnl, wad(x.upnl, 2, { sign: true }), `upnl ${signClass(x.upnl)}`)}${num(x.pendingFunding, wad(x.pendingFunding, 2, { sign: true }), "funding")}${num(x.liquidationPrice, x.liquidationPrice !== null && x.liquidationPrice !== undefined ? wad(x.liquidationPrice) : "none", "liq")}<td class="adl" data-value="${x.adl.lights}">${adl}</td><td><button class="act small" data-close="${x.marketId}">Close</button></td></tr>`;
    });
    positions = `<div class="scroll"><table data-testid="positions"><thead><tr><th>Market</th><th>Size</th><th>Entry</th><th>Mark</th><th>Notional</th><th>uPnL</th><th>Funding owed</th><th>Liq. price</th><th>ADL queue</th><th></th></tr></thead><tbody>${rows.join("")}</tbody></table></div>`;
  }
  box.innerHTML = `<div class="head">${state}</div><dl class="stats">${stats}</dl>${positions}<h3>History</h3>${renderHistory(a.history)}`;
  box.querySelectorAll("[data-close]").forEach((b) => {
    b.disabled = !onRightChain();
    b.onclick = () => {
      const market = app.cfg.markets.find((m) => String(m.id) === b.dataset.close);
      const position = a.positions.find((x) => String(x.marketId) === b.dataset.close);
      guarded(`trade ${market.name}`, () => trade(market, -position.size));
    };
  });
}

function marketName(id) {
  const m = app.cfg.markets.find((x) => BigInt(x.id) === BigInt(id));
  return m ? m.name : `market ${id}`;
}

function renderHistory(history) {
  if (!history.length) return `<p class="muted">Nothing yet.</p>`;
  const line = (h) => {
    const a = h.args;
    switch (h.event) {
      case "Deposited":
        return `deposited ${tokens(a.amountTokens)} ${esc(sym())}`;
      case "Withdrawn":
        return `withdrew ${tokens(a.amountTokens)} ${esc(sym())}`;
      case "PositionChanged":
        return `${a.sizeDeltaWad > 0n ? "bought" : "sold"} ${formatUnits(a.sizeDeltaWad < 0n ? -a.sizeDeltaWad : a.sizeDeltaWad, 18, null, { group: true })} ${esc(marketName(a.marketId))} at ${wad(a.priceWad)}; fee ${wad(a.feeWad)}, realised ${wad(a.realizedPnlWad, 2, { sign: true })}`;
      case "PositionLiquidated":
        return `<b>liquidated</b> ${formatUnits(a.closedSizeWad < 0n ? -a.closedSizeWad : a.closedSizeWad, 18, null, { group: true })} ${esc(marketName(a.marketId))} at ${wad(a.priceWad)}; realised ${wad(a.realizedPnlWad, 2, { sign: true })}`;
      case "Liquidated":
        return `<b>liquidation</b> in ${esc(marketName(a.marketId))}: penalty ${wad(a.penaltyWad)}, shortfall ${wad(a.shortfallWad)}${a.bankrupt ? " (bankrupt)" : ""}`;
      case "ShortfallSettled":
        return `shortfall ${wad(a.shortfallWad)} settled: the insurance fund paid <b data-testid="fund-paid">${wad(a.coveredWad)}</b>, bad debt ${wad(a.badDebtWad)}`;
      case "AutoDeleveraged":
        return `<b>auto-deleveraged</b> ${formatUnits(a.closedSizeWad < 0n ? -a.closedSizeWad : a.closedSizeWad, 18, null, { group: true })} ${esc(marketName(a.marketId))} at ${wad(a.priceWad)}; haircut ${wad(a.haircutWad)}`;
      case "ProfitHaircutOnClose":
        return `profit haircut ${wad(a.haircutWad)} on close in ${esc(marketName(a.marketId))}`;
      default:
        return esc(h.event);
    }
  };
  return `<ol class="history" data-testid="history">${history
    .slice(0, 50)
    .map((h) => `<li data-event="${esc(h.event)}"><span class="muted">#${h.block}</span> ${line(h)}</li>`)
    .join("")}</ol>`;
}

function renderPool(v, p) {
  const stats = [
    stat("Pool equity", p.poolEquity, p.poolEquity !== null ? wad(p.poolEquity) : "unavailable", "pool-equity", signClass(p.poolEquity)),
    stat("Share price", v.sharePrice, `${tokens(v.sharePrice)} ${esc(sym())}`, "pool-share-price"),
    stat("Lock after deposit", v.cooldown, duration(v.cooldown), "pool-cooldown"),
  ];
  if (v.shares !== undefined) {
    const locked = v.lockedUntil > p.now;
    stats.push(
      stat("My shares", v.shares, formatUnits(v.shares, v.decimals, 4, { group: true, down: true }), "pool-shares"),
      stat("Worth", v.value, `${tokensDown(v.value)} ${esc(sym())}`, "pool-value"),
      stat(
        "Exit value",
        v.exitValue,
        v.exitValue === null ? "unavailable (stale feed)" : `${tokensDown(v.exitValue)} ${esc(sym())}${v.exitValue < v.value ? ` <span class="muted">(exits pay at the lower of the pool's equity and its margin)</span>` : ""}`,
        "pool-exit-value",
        v.exitValue !== null && v.exitValue < v.value ? "warn" : "",
      ),
      stat("Locked until", v.lockedUntil, locked ? `${when(v.lockedUntil)} (${relative(v.lockedUntil, p.now)})` : "unlocked", "pool-lock", locked ? "warn" : ""),
      stat("Can withdraw", v.maxWithdraw, `${tokensDown(v.maxWithdraw)} ${esc(sym())}`, "pool-max-withdraw"),
    );
  }
  $("pool").innerHTML = `<dl class="stats">${stats.join("")}</dl>`;
}

function renderFund(v, p) {
  const oi = p.markets.reduce((s, m) => (s === null || m.oiNotional === undefined ? null : s + m.oiNotional), 0n);
  const coverage = oi ? (v.assets * WAD) / oi : null;
  const windowText = v.windowEndsAt > p.now ? `ends ${relative(v.windowEndsAt, p.now)}` : "opens with the next payout";
  const stats = [
    stat("Assets", v.assets, wad(v.assets), "fund-assets"),
    stat("Free assets", v.freeAssets, wad(v.freeAssets), "fund-free"),
    stat("Reserved for requests", v.reserved, `${tokens(v.reserved)} ${esc(sym())}`, "fund-reserved"),
    stat("Payable now", v.available, wad(v.available), "fund-available"),
    stat("Window left", v.windowRemaining, `${wad(v.windowRemaining)} (${percent(v.windowRatio)} per ${duration(v.windowDuration ?? 0)}; ${windowText})`, "fund-window"),
    stat("Coverage of OI", coverage, coverage !== null ? percent(coverage) : "no open interest", "fund-coverage"),
    stat("Unstake cooldown", v.cooldown, duration(v.cooldown), "fund-cooldown"),
    stat("Then claim within", v.claimWindow, duration(v.claimWindow), "fund-claim-window"),
  ];
  if (v.shares !== undefined) {
    stats.push(
      stat("My shares", v.shares, formatUnits(v.shares, v.decimals, 4, { group: true, down: true }), "fund-shares"),
      stat("My stake worth", v.value, `${tokensDown(v.value)} ${esc(sym())}`, "fund-value"),
    );
  }
  const payouts = v.payouts.length
    ? `<h3>Payouts</h3><ol class="history" data-testid="payouts">${v.payouts.slice(0, 10).map((x) => `<li><span class="muted">#${x.block}</span> paid <b>${wad(x.paid)}</b> of a ${wad(x.shortfall)} shortfall</li>`).join("")}</ol>`
    : "";
  $("fund").innerHTML = `<dl class="stats">${stats.join("")}</dl>${payouts}`;
  const reqs = v.requests || [];
  const at = (t) => `${when(t)} (${relative(t, p.now)})`;
  const stateText = {
    cooldown: (r) => `in cooldown until ${at(r.readyAt)}; then claimable until ${when(r.claimUntil)}`,
    claimable: (r) => `claimable until ${at(r.claimUntil)}`,
    lapsed: (r) => `lapsed ${at(r.claimUntil)}: Lapse returns the shares to your stake`,
  };
  $("requests").innerHTML = reqs.length
    ? `<h3>My unstake requests</h3><div class="scroll"><table data-testid="request-table"><thead><tr><th>#</th><th>Shares</th><th title="the lower of the value at request and the value now">Claim pays</th><th>State</th><th></th></tr></thead><tbody>${reqs
        .map((r) => {
          const pays = r.state === "lapsed" ? `<span class="muted">nothing: lapsed</span>` : `${tokensDown(r.claimable)} ${esc(sym())}`;
          const button =
            r.state === "lapsed"
              ? `<button class="act small" data-lapse="${r.id}">Lapse</button>`
              : `<button class="act small" data-claim="${r.id}" data-waiting="${r.state !== "claimable"}" ${r.state === "claimable" ? "" : "disabled"}>Claim</button>`;
          return `<tr data-request="${r.id}" data-state="${r.state}"><td>${r.id}</td>${num(r.shares, formatUnits(r.shares, v.decimals, 4, { group: true, down: true }))}${num(r.state === "lapsed" ? 0n : r.claimable, pays, "pays")}<td class="request-state ${r.state === "claimable" ? "ok" : r.state === "lapsed" ? "warn" : ""}" data-testid="request-state" data-state="${r.state}">${stateText[r.state](r)}</td><td>${button}</td></tr>`;
        })
        .join("")}</tbody></table></div>`
    : "";
  $("requests").querySelectorAll("[data-claim]").forEach((b) => {
    b.disabled = !onRightChain() || b.dataset.waiting === "true";
    b.onclick = () => guarded("claim", () => send("claim", app.contracts.fund, "claim", [BigInt(b.dataset.claim)]));
  });
  $("requests").querySelectorAll("[data-lapse]").forEach((b) => {
    b.disabled = !onRightChain();
    b.onclick = () => guarded("lapse", () => send("lapse", app.contracts.fund, "lapse", [BigInt(b.dataset.lapse)]));
  });
}

function renderTradePreview() {
  if (!app.cfg || !app.snap) return;
  const market = app.snap.protocol.markets.find((m) => String(m.id) === $("trade-market").value);
  if (!market) return;
  const base = market.name.split("-")[0];
  $("trade-unit").textContent = base;
  const long = app.side === "long";
  const submit = $("trade-submit");
  submit.className = `primary ${long ? "long" : "short"}`;
  const position = app.snap.account ? app.snap.account.positions.find((x) => x.marketId === market.id) : null;
  const reduces = position && position.size > 0n !== long;
  submit.textContent = reduces ? `${long ? "Buy" : "Sell"} (reduces your ${position.size > 0n ? "long" : "short"})` : `Open ${long ? "long" : "short"}`;
  const rows = [];
  if (market.priceWad === null) {
    rows.push(["Price", "unavailable (stale feed)"]);
  } else {
    rows.push(["Oracle price", wad(market.priceWad)]);
    let size = null;
    try {
      size = parseUnits($("trade-size").value, 18, "size");
    } catch {
      size = null;
    }
    try {
      const limit = acceptablePrice(market.priceWad, long, $("trade-slippage").value);
      rows.push([long ? "Worst price (max)" : "Worst price (min)", wad(limit)]);
    } catch (error) {
      rows.push(["Slippage", esc(error.message)]);
    }
    if (size !== null && size > 0n) {
      const n = (size * market.priceWad) / WAD;
      rows.push(["Notional", wad(n)]);
      rows.push(["Fee", wad((n * market.config.takerFeeWad) / WAD)]);
      const im = (n * market.config.imRatioWad) / WAD;
      rows.push(["Initial margin", wad(im)]);
      const acct = app.snap.account;
      if (acct && acct.freeMargin !== undefined && !reduces) {
        const short = im > acct.freeMargin;
        rows.push(["Your free margin", `<span class="${short ? "bad" : ""}">${wad(acct.freeMargin, 2, { down: true })}</span>`]);
      }
    }
    const minimum = market.config.minPositionNotionalWad;
    if (size !== null && size > 0n) {
      const after = (position ? position.size : 0n) + (long ? size : -size);
      const leaves = notional(after, market.priceWad);
      const tooSmall = after !== 0n && leaves < minimum;
      rows.push(["Position notional after", `<span class="${tooSmall ? "bad" : ""}" data-testid="trade-leaves" data-value="${leaves}">${wad(leaves)}${tooSmall ? " (below the minimum)" : ""}</span>`]);
    }
    rows.push(["Minimum position", `<span data-testid="trade-minimum" data-value="${minimum}">${wad(minimum)}</span> <span class="muted">or flat</span>`]);
    if (market.roomLong !== undefined) rows.push(["Pool room in this market", `${wad(long ? market.roomLong : market.roomShort, 4, { down: true })} ${esc(base)} ${long ? "long" : "short"}`]);
    rows.push(["Max leverage", `${wad((WAD * WAD) / market.config.imRatioWad, 0)}x`]);
  }
  $("trade-preview").innerHTML = rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
}

// The page's exact arithmetic, for the browser console and the differential test in tests/test_web.py.
window.bulwarkMath = Object.freeze({ formatUnits, parseUnits, liquidationPrice });

start().catch((error) => {
  document.body.dataset.ready = "error";
  $("chain-info").innerHTML = `<span class="bad">could not start: ${esc(error.message || error)}</span>`;
});
