// Decoded reverts in the command line's words (bulwark/cli/render.py): the same rendering of
// arguments and the same hints, read from bulwark/core/errors.json through /config.json.
import { decodeErrorResult, getAddress, isAddress, hexToBytes, bytesToHex } from "viem";
import { formatUnits, when } from "./format.js";

const TWO_200 = 2n ** 200n;
const TWO_40 = 2n ** 40n;

/** Decodes revert data against every error of the build; unknown data stays readable. */
export function decodeRevert(errorAbi, raw, words) {
  if (!raw || raw === "0x" || raw.length < 10) return { name: "unknown", args: {}, raw: raw || "0x" };
  let decoded;
  try {
    decoded = decodeErrorResult({ abi: errorAbi, data: raw });
  } catch {
    return { name: "unknown", args: {}, raw };
  }
  const { errorName, args = [], abiItem } = decoded;
  if (errorName === "Error") return { name: "Error", args: { message: args[0] }, raw };
  if (errorName === "Panic") {
    const code = "0x" + BigInt(args[0]).toString(16).padStart(2, "0");
    const reason = (words.panic_codes || {})[code] || "?";
    return { name: "Panic", args: { code: "0x" + BigInt(args[0]).toString(16), reason }, raw };
  }
  const inputs = (abiItem && abiItem.inputs) || [];
  const named = {};
  inputs.forEach((input, i) => {
    named[input.name || `arg${i}`] = { value: args[i], type: input.type };
  });
  return { name: errorName, args: named, raw, typed: true };
}

function plainArg(value, type) {
  if (typeof value === "boolean") return value ? "True" : "False";
  if (typeof value === "string" && type && type.startsWith("bytes")) {
    const bytes = hexToBytes(value);
    let end = bytes.length;
    while (end > 0 && bytes[end - 1] === 0) end--;
    const text = bytes.slice(0, end);
    if (text.length && text.every((b) => b >= 32 && b < 127)) return String.fromCharCode(...text);
    return bytesToHex(bytes);
  }
  if (Array.isArray(value)) return "[" + value.map((v) => plainArg(v)).join(", ") + "]";
  return String(value);
}

function untyped(error) {
  // DecodedError.__str__ for errors without typed arguments (Error, Panic, unknown).
  const entries = Object.entries(error.args);
  if (!entries.length) return error.name !== "unknown" ? `${error.name}()` : `unknown error ${error.raw || "(no data)"}`;
  return `${error.name}(${entries.map(([k, v]) => `${k}=${v}`).join(", ")})`;
}

/** describe_error: WAD and token amounts in human units, times as dates, addresses checksummed. */
export function describeError(error, tokenDecimals, words) {
  const entries = Object.entries(error.args);
  if (!entries.length || !error.typed) return untyped(error);
  const timeArgs = new Set(words.time_args || []);
  const parts = entries.map(([key, { value, type }]) => {
    if (typeof value === "bigint") {
      const magnitude = value < 0n ? -value : value;
      if (key.endsWith("Wad") && magnitude < TWO_200) {
        const exact = formatUnits(value, 18, null, { group: true });
        const fraction = exact.split(".")[1] || "";
        const shown = fraction.length <= 6 ? exact : formatUnits(value, 18, 6, { group: true });
        return `${key.slice(0, -3)}=${shown}`;
      }
      if (key.endsWith("Tokens")) return `${key.slice(0, -6)}=${formatUnits(value, tokenDecimals, null, { group: true })}`;
      if (timeArgs.has(key) && value > 0n && value < TWO_40) return `${key}=${when(value)}`;
    }
    if (typeof value === "string" && type === "address" && isAddress(value, { strict: false })) {
      return `${key}=${getAddress(value)}`;
    }
    return `${key}=${plainArg(value, type)}`;
  });
  return `${error.name}(${parts.join(", ")})`;
}

/** revert_message: "<action> reverted: <error>; <hint>". */
export function revertMessage(action, error, tokenDecimals, words) {
  const text = `${action} reverted: ${describeError(error, tokenDecimals, words)}`;
  const hint = (words.hints || {})[error.name];
  return hint ? `${text}; ${hint}` : text;
}
