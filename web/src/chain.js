// Reads of the protocol at one block, in exact integers, and the few derived figures
// (liquidation price, ADL queue place, funding rate) computed as bulwark/keeper/status.py does.
import { WAD } from "./format.js";

const ZERO = "0x0000000000000000000000000000000000000000";
const abs = (x) => (x < 0n ? -x : x);
const floorDiv = (a, b) => {
  // toward negative infinity, b > 0
  const q = a / b;
  return a % b !== 0n && a < 0n ? q - 1n : q;
};
const ceilDiv = (a, b) => -floorDiv(-a, b);

export const notional = (size, price) => ceilDiv(abs(size) * price, WAD);
export const unrealizedPnl = (size, openNotional, price) => floorDiv(size * price, WAD) - openNotional;
export const pendingFunding = (size, fundingBasis, index) => {
  const basis = index >= 0n ? floorDiv(size * index, WAD) : floorDiv(-size * -index, WAD);
  return basis - fundingBasis;
};

export function ratePerDay(skew, skewScale, maxRate) {
  const rate = floorDiv(skew * maxRate, skewScale);
  return rate > maxRate ? maxRate : rate < -maxRate ? -maxRate : rate;
}

/** The price at which equity = maintenance margin, other prices held fixed (status.py). */
export function liquidationPrice(size, price, equity, maintenanceMargin, mmRatio) {
  if (size === 0n) return null;
  // target = price + (MM - equity) / (size/WAD - mmRatio*|size|/WAD^2), over WAD^2
  let den = size * WAD - mmRatio * abs(size);
  let num = price * den + (maintenanceMargin - equity) * WAD * WAD;
  if (den < 0n) {
    den = -den;
    num = -num;
  }
  if (num <= 0n) return null;
  return size > 0n ? ceilDiv(num, den) : floorDiv(num, den);
}

/** Lights 0..5 as the CLI shows them: 5 for the top fifth of the queue. */
export function adlLights(rank, queueLength) {
  if (rank === null || queueLength === 0) return 0;
  return 5 - Math.floor(((rank - 1) * 5) / queueLength);
}

export class Reader {
  constructor(pub, cfg, contracts) {
    this.pub = pub;
    this.cfg = cfg;
    this.c = contracts;
    this.cache = { traders: new Set(), tradersTo: null, history: [], historyTo: null, historyFor: null, requests: new Map(), requestsTo: null, payouts: [] };
    this.static = null;
  }

  read(contract, functionName, args, blockNumber) {
    return this.pub.readContract({ address: contract.address, abi: contract.abi, functionName, args, blockNumber });
  }

  async settle(contract, functionName, args, blockNumber) {
    try {
      return { ok: true, value: await this.read(contract, functionName, args, blockNumber) };
    } catch (error) {
      return { ok: false, error };
    }
  }

  async loadStatic() {
    if (this.static) return this.static;
    const { c } = this;
    const [poolDecimals, fundDecimals, feeds] = await Promise.all([
      this.read(c.pool, "decimals", []),
      this.read(c.fund, "decimals", []),
      Promise.all(this.cfg.markets.map((m) => this.read(c.oracle, "feedConfig", [BigInt(m.id)]))),
    ]);
    this.static = { poolDecimals: Number(poolDecimals), fundDecimals: Number(fundDecimals), heartbeats: feeds.map((f) => BigInt(f.primaryHeartbeat)) };
    return this.static;
  }

  /** Logs in [from, to] for a contract event, from the deployment's block on. */
  logs(contract, eventName, args, fromBlock, toBlock) {
    return this.pub.getContractEvents({ address: contract.address, abi: contract.abi, eventName, args, fromBlock, toBlock, strict: false });
  }

  resetIfRewound(blockNumber) {
    const c = this.cache;
    if ((c.tradersTo !== null && blockNumber < c.tradersTo) || (c.historyTo !== null && blockNumber < c.historyTo)) {
      this.cache = { traders: new Set(), tradersTo: null, history: [], historyTo: null, historyFor: null, requests: new Map(), requestsTo: null, payouts: [] };
    }
  }

  async protocol(blockNumber) {
    const { c, cfg } = this;
    const st = await this.loadStatic();
    const block = await this.pub.getBlock({ blockNumber });
    const now = block.timestamp;
    const ids = cfg.markets.map((m) => BigInt(m.id));
    const [reduceOnly, totalBadDebt, poolEquity, risk, markets] = await Promise.all([
      this.read(c.ch, "reduceOnly", [], blockNumber),
      this.read(c.ch, "totalBadDebtWad", [], blockNumber),
      this.settle(c.ch, "poolEquityWad", [], blockNumber),
      this.read(c.ch, "riskParams", [], blockNumber),
      Promise.all(
        ids.map(async (id, i) => {
          const [config, state, debtLong, debtShort, price, round] = await Promise.all([
            this.read(c.ch, "marketConfig", [id], blockNumber),
            this.read(c.ch, "marketState", [id], blockNumber),
            this.read(c.ch, "badDebtOf", [id, 0], blockNumber),
            this.read(c.ch, "badDebtOf", [id, 1], blockNumber),
            this.settle(c.oracle, "priceWad", [id], blockNumber),
            this.pub.readContract({ address: cfg.markets[i].feed, abi: cfg.abis.Aggregator, functionName: "latestRoundData", blockNumber }).catch(() => null),
          ]);
          return { id, name: cfg.markets[i].name, config, state, debtLong, debtShort, price, updatedAt: round ? round[3] : null, heartbeat: st.heartbeats[i] };
        }),
      ),
    ]);
    const equity = poolEquity.ok ? poolEquity.value : null;
    for (const m of markets) {
      m.priceWad = m.price.ok ? m.price.value : null;
      m.fundingPerDay = ratePerDay(m.state.sumSizeWad, m.config.skewScaleWad, m.config.maxFundingRatePerDayWad);
      m.oiLong = m.state.longOpenInterestWad;
      m.oiShort = m.state.shortOpenInterestWad;
      if (m.priceWad !== null) {
        m.oiNotional = notional(m.oiLong + m.oiShort, m.priceWad);
        // The exposure cap counts the larger side's open interest (TradeLogic.exposureOf).
        const side = m.oiLong > m.oiShort ? m.oiLong : m.oiShort;
        m.exposure = side ? notional(side, m.priceWad) : 0n;
        if (equity !== null) {
          const cap = equity > 0n ? (equity * risk.poolExposureMultipleWad) / WAD : 0n;
          m.exposureCap = cap;
          // The largest new long and new short the pool takes now (status.pool_room), base units.
          const most = (cap * WAD) / m.priceWad;
          m.roomLong = most > m.oiLong ? most - m.oiLong : 0n;
          m.roomShort = most > m.oiShort ? most - m.oiShort : 0n;
        }
      }
      m.age = m.updatedAt !== null ? now - m.updatedAt : null;
      m.stale = m.age !== null && m.age > m.heartbeat;
    }
    return { blockNumber, now, reduceOnly, totalBadDebt, poolEquity: equity, risk, markets };
  }

  async pool(blockNumber, me) {
    const { c } = this;
    const st = await this.loadStatic();
    const one = 10n ** BigInt(st.poolDecimals);
    const [supply, assets, sharePrice, cooldown] = await Promise.all([
      this.read(c.pool, "totalSupply", [], blockNumber),
      this.read(c.pool, "totalAssets", [], blockNumber),
      this.read(c.pool, "convertToAssets", [one], blockNumber),
      this.read(c.pool, "cooldown", [], blockNumber),
    ]);
    const view = { supply, assets, sharePrice, cooldown, decimals: st.poolDecimals };
    if (me) {
      // The max views never revert: zero while locked, under water, with bad debt or a stale price.
      const [shares, lockedUntil, maxWithdraw, maxRedeem] = await Promise.all([
        this.read(c.pool, "balanceOf", [me], blockNumber),
        this.read(c.pool, "lockedUntil", [me], blockNumber),
        this.read(c.pool, "maxWithdraw", [me], blockNumber),
        this.read(c.pool, "maxRedeem", [me], blockNumber),
      ]);
      // Exits pay at min(pool equity, pool margin): previewRedeem reverts only on a stale price.
      const [value, exitValue] = await Promise.all([
        this.read(c.pool, "convertToAssets", [shares], blockNumber),
        this.settle(c.pool, "previewRedeem", [shares], blockNumber),
      ]);
      Object.assign(view, { shares, lockedUntil, maxWithdraw, maxRedeem, value, exitValue: exitValue.ok ? exitValue.value : null });
    }
    return view;
  }

  async fund(blockNumber, me, now) {
    const { c, cfg } = this;
    const st = await this.loadStatic();
    const f = (name, args = []) => this.read(c.fund, name, args, blockNumber);
    const [assets, available, windowRemaining, windowCap, windowStart, windowDuration, windowRatio, capAssets, cooldown, supply, claimWindow, freeAssets, reserved] = await Promise.all([
      f("assetsWad"), f("availableWad"), f("windowRemainingWad"), f("windowCapWad"), f("windowStart"),
      f("windowDuration"), f("windowCapRatioWad"), f("capAssets"), f("cooldown"), f("totalSupply"),
      f("claimWindow"), f("freeAssetsWad"), f("reservedAssets"),
    ]);
    const view = {
      assets, available, windowRemaining, windowCap, windowDuration, windowEndsAt: BigInt(windowStart) + BigInt(windowDuration),
      windowRatio, capAssets, cooldown, supply, claimWindow, freeAssets, reserved, decimals: st.fundDecimals,
    };
    // Payouts: every ShortfallCovered, newest first (kept incrementally).
    const from = this.cache.payoutsTo === undefined || this.cache.payoutsTo === null ? BigInt(cfg.deployBlock) : this.cache.payoutsTo + 1n;
    if (from <= blockNumber) {
      const found = await this.logs(c.fund, "ShortfallCovered", undefined, from, blockNumber);
      for (const log of found) this.cache.payouts.unshift({ block: log.blockNumber, shortfall: log.args.shortfallWad, paid: log.args.paidWad });
      this.cache.payoutsTo = blockNumber;
    }
    view.payouts = this.cache.payouts;
    if (me) {
      const [shares, room] = await Promise.all([f("balanceOf", [me]), f("maxDeposit", [me])]);
      view.shares = shares;
      view.room = room;
      view.value = await f("convertToAssets", [shares]);
      view.requests = await this.requests(blockNumber, me, now);
    }
    return view;
  }

  async requests(blockNumber, me, now) {
    const { c, cfg } = this;
    const key = me.toLowerCase();
    if (this.cache.requestsFor !== key) {
      this.cache.requests = new Map();
      this.cache.requestsTo = null;
      this.cache.requestsFor = key;
    }
    const from = this.cache.requestsTo === null ? BigInt(cfg.deployBlock) : this.cache.requestsTo + 1n;
    if (from <= blockNumber) {
      const found = await this.logs(c.fund, "UnstakeRequested", { owner: me }, from, blockNumber);
      for (const log of found) this.cache.requests.set(log.args.requestId, true);
      this.cache.requestsTo = blockNumber;
    }
    const open = [];
    for (const id of this.cache.requests.keys()) {
      const r = await this.read(c.fund, "unstakeRequest", [id], blockNumber);
      if (!r.owner || r.owner === ZERO) continue; // claimed or lapsed
      const [valueNow, claimable] = await Promise.all([
        this.read(c.fund, "convertToAssets", [r.shares], blockNumber),
        this.read(c.fund, "claimable", [id], blockNumber),
      ]);
      const readyAt = BigInt(r.readyAt);
      const claimUntil = readyAt + BigInt(r.claimWindow);
      // As the fund decides: claimable in [readyAt, claimUntil), lapsed from claimUntil on.
      const state = now < readyAt ? "cooldown" : now < claimUntil ? "claimable" : "lapsed";
      open.push({ id, owner: r.owner, shares: r.shares, assetsAtRequest: r.assetsAtRequest, readyAt, claimUntil, valueNow, claimable, state });
    }
    return open;
  }

  async traders(blockNumber) {
    const { c, cfg } = this;
    const from = this.cache.tradersTo === null ? BigInt(cfg.deployBlock) : this.cache.tradersTo + 1n;
    if (from <= blockNumber) {
      const found = await this.logs(c.ch, "PositionChanged", undefined, from, blockNumber);
      for (const log of found) this.cache.traders.add(log.args.account);
      this.cache.tradersTo = blockNumber;
    }
    return [...this.cache.traders];
  }

  async adlPlace(blockNumber, me, marketId, size) {
    const { c } = this;
    const everyone = [...new Set([...(await this.traders(blockNumber)), me])];
    const positions = await Promise.all(everyone.map((a) => this.read(c.ch, "positionOf", [a, marketId], blockNumber)));
    const sameSide = everyone.filter((a, i) => positions[i].sizeWad !== 0n && positions[i].sizeWad > 0n === size > 0n);
    const scores = sameSide.length ? await this.read(c.ch, "adlScoresOf", [marketId, sameSide], blockNumber) : [];
    const mineAt = sameSide.findIndex((a) => a.toLowerCase() === me.toLowerCase());
    const mine = mineAt >= 0 ? scores[mineAt] : 0n;
    const queue = scores.filter((s) => s > 0n);
    if (mine === 0n) return { score: 0n, rank: null, queueLength: queue.length, lights: 0 };
    const rank = 1 + queue.filter((s) => s > mine).length;
    return { score: mine, rank, queueLength: queue.length, lights: adlLights(rank, queue.length) };
  }

  async account(blockNumber, me, protocol) {
    const { c } = this;
    const [margin, openMarkets, health, wallet] = await Promise.all([
      this.read(c.ch, "marginOf", [me], blockNumber),
      this.read(c.ch, "openMarketsOf", [me], blockNumber),
      this.settle(c.ch, "healthOf", [me], blockNumber),
      this.read(c.token, "balanceOf", [me], blockNumber),
    ]);
    const view = { address: me, margin, wallet, positions: [], healthError: health.ok ? null : health.error };
    if (health.ok) {
      Object.assign(view, {
        equity: health.value.equityWad,
        initialMargin: health.value.initialMarginWad,
        maintenanceMargin: health.value.maintenanceMarginWad,
        liquidatable: health.value.liquidatable,
      });
    }
    for (const id of [...openMarkets].map(BigInt).sort((a, b) => (a < b ? -1 : 1))) {
      const market = protocol.markets.find((m) => m.id === id);
      const [position, index] = await Promise.all([
        this.read(c.ch, "positionOf", [me, id], blockNumber),
        this.read(c.ch, "currentFundingIndexWad", [id], blockNumber),
      ]);
      const price = market.priceWad;
      const size = position.sizeWad;
      const p = { marketId: id, market: market.name, size, openNotional: position.openNotionalWad, price };
      p.entry = size ? (abs(position.openNotionalWad) * WAD) / abs(size) : 0n;
      p.pendingFunding = pendingFunding(size, position.fundingBasisWad, index);
      if (price !== null) {
        p.notional = notional(size, price);
        p.upnl = unrealizedPnl(size, position.openNotionalWad, price);
        p.liquidationPrice = health.ok ? liquidationPrice(size, price, view.equity, view.maintenanceMargin, market.config.mmRatioWad) : null;
      }
      p.adl = await this.adlPlace(blockNumber, me, id, size);
      view.positions.push(p);
    }
    if (health.ok) {
      const total = view.positions.reduce((s, p) => s + (p.notional || 0n), 0n);
      view.notional = total;
      view.marginRatio = view.equity > 0n ? (view.maintenanceMargin * WAD) / view.equity : null;
      view.leverage = view.equity > 0n ? (total * WAD) / view.equity : null;
      const free = view.margin < view.equity - view.initialMargin ? view.margin : view.equity - view.initialMargin;
      view.freeMargin = free > 0n ? free : 0n;
    }
    view.history = await this.history(blockNumber, me);
    return view;
  }

  /** Trades, liquidations, settlements and haircuts of `me`, newest first. */
  async history(blockNumber, me) {
    const { c, cfg } = this;
    const key = me.toLowerCase();
    if (this.cache.historyFor !== key) {
      this.cache.history = [];
      this.cache.historyTo = null;
      this.cache.historyFor = key;
    }
    const from = this.cache.historyTo === null ? BigInt(cfg.deployBlock) : this.cache.historyTo + 1n;
    if (from <= blockNumber) {
      const names = ["Deposited", "Withdrawn", "PositionChanged", "PositionLiquidated", "Liquidated", "ShortfallSettled", "AutoDeleveraged", "ProfitHaircutOnClose"];
      const batches = await Promise.all(names.map((n) => this.logs(c.ch, n, { account: me }, from, blockNumber)));
      const found = batches.flat().sort((a, b) => (a.blockNumber === b.blockNumber ? a.logIndex - b.logIndex : a.blockNumber < b.blockNumber ? -1 : 1));
      for (const log of found) this.cache.history.unshift({ event: log.eventName, block: log.blockNumber, tx: log.transactionHash, args: log.args });
      this.cache.historyTo = blockNumber;
    }
    return this.cache.history;
  }
}
