// Numbers in human units, exactly as the command line prints them (bulwark/core/units.py):
// integers with `decimals` decimals, exact or rounded half-even to a number of places,
// or rounded down (toward zero) where a shown amount is one the user may spend.

export const WAD = 10n ** 18n;

const abs = (x) => (x < 0n ? -x : x);

function groupDigits(text) {
  return text.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

export function formatUnits(value, decimals, places = null, opts = {}) {
  const { group = false, sign = false, down = false } = opts;
  value = BigInt(value);
  const negative = value < 0n;
  let magnitude = abs(value);
  let whole;
  let frac;
  if (places === null) {
    const scale = 10n ** BigInt(decimals);
    whole = magnitude / scale;
    frac = decimals ? (magnitude % scale).toString().padStart(decimals, "0").replace(/0+$/, "") : "";
  } else {
    if (places < decimals) {
      const divisor = 10n ** BigInt(decimals - places);
      let q = magnitude / divisor;
      const r = magnitude % divisor;
      if (!down && (2n * r > divisor || (2n * r === divisor && q % 2n === 1n))) q += 1n;
      magnitude = q;
    } else {
      magnitude *= 10n ** BigInt(places - decimals);
    }
    const scale = 10n ** BigInt(places);
    whole = magnitude / scale;
    frac = places ? (magnitude % scale).toString().padStart(places, "0") : "";
  }
  const zero = whole === 0n && !/[1-9]/.test(frac);
  let text = group ? groupDigits(whole.toString()) : whole.toString();
  if (frac) text += "." + frac;
  if (zero) return text;
  if (negative) return "-" + text;
  return sign ? "+" + text : text;
}

export const wad = (value, places = 2, opts = {}) =>
  value === null || value === undefined ? "-" : formatUnits(value, 18, places, { group: places !== null, ...opts });

export const percent = (ratioWad, places = 2) => formatUnits(BigInt(ratioWad) * 100n, 18, places) + "%";

/** Text to an integer with `decimals` decimals; finer precision than that is refused, never rounded. */
export function parseUnits(text, decimals, what = "amount", unit = "", { allowNegative = false, allowZero = false } = {}) {
  const cleaned = String(text).trim().replace(/_/g, "");
  if (!/^[+-]?(\d+(\.\d*)?|\.\d+)$/.test(cleaned)) {
    const hint = cleaned.includes(",") ? " (leave out thousands separators)" : "";
    throw new Error(`${what} ${JSON.stringify(String(text).trim())} is not a number${hint}`);
  }
  const negative = cleaned.startsWith("-");
  const body = cleaned.replace(/^[+-]/, "");
  const [whole, frac = ""] = body.split(".");
  const trimmed = frac.replace(/0+$/, "");
  if (trimmed.length > decimals) {
    throw new Error(`${what} ${body}${unit ? " " + unit : ""} has more than ${decimals} decimal places`);
  }
  const value = BigInt(whole || "0") * 10n ** BigInt(decimals) + BigInt((trimmed || "0").padEnd(decimals, "0").slice(0, decimals) || "0");
  if (negative && value !== 0n && !allowNegative) throw new Error(`${what} must not be negative`);
  if (value === 0n && !allowZero) throw new Error(`${what} must not be zero`);
  return negative ? -value : value;
}

export function when(timestamp) {
  const iso = new Date(Number(timestamp) * 1000).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
}

export function duration(seconds) {
  seconds = Math.max(0, Math.floor(Number(seconds)));
  const days = Math.floor(seconds / 86400);
  let rest = seconds % 86400;
  const hours = Math.floor(rest / 3600);
  rest %= 3600;
  const minutes = Math.floor(rest / 60);
  const secs = rest % 60;
  if (days) return `${days}d ${hours}h`;
  if (hours) return `${hours}h ${minutes}m`;
  if (minutes) return `${minutes}m ${secs}s`;
  return `${secs}s`;
}

export function relative(timestamp, now) {
  const delta = Number(timestamp) - Number(now);
  if (delta > 0) return `in ${duration(delta)}`;
  return delta ? `${duration(-delta)} ago` : "now";
}

export function short(address) {
  return address ? `${address.slice(0, 6)}…${address.slice(-4)}` : "";
}
