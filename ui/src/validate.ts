// Prefix lists as typed in Settings. The Rust side (settings::parse_prefixes) re-checks on save
// with the same rules; this gives the answer while the user types.

export interface PrefixCheck {
  ok: boolean;
  prefixes: string[];
  errors: string[];
}

function v4(addr: string): number[] | null {
  const parts = addr.split(".");
  if (parts.length !== 4) return null;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

function v6(addr: string): number[] | null {
  if (!/^[0-9a-fA-F:]+$/.test(addr) || addr.split("::").length > 2) return null;
  const [head, tail] = addr.includes("::") ? addr.split("::") : [addr, null];
  const group = (s: string) => (s === "" ? [] : s.split(":"));
  const h = group(head ?? "");
  const t = tail === null ? [] : group(tail);
  const missing = 8 - h.length - t.length;
  if (tail === null ? missing !== 0 : missing < 1) return null;
  const all = [...h, ...Array(tail === null ? 0 : missing).fill("0"), ...t];
  const out: number[] = [];
  for (const g of all) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    const n = parseInt(g, 16);
    out.push(n >> 8, n & 255);
  }
  return out;
}

function hostBitsClear(bytes: number[], len: number): boolean {
  return bytes.every((b, i) => {
    const keep = Math.max(0, Math.min(8, len - i * 8));
    const mask = keep === 0 ? 0 : (0xff << (8 - keep)) & 0xff;
    return (b & ~mask & 0xff) === 0;
  });
}

/** A list as typed: one entry per line or comma-separated, blanks ignored. */
function splitList(text: string): string[] {
  return text
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

export function checkPrefixes(text: string): PrefixCheck {
  const items = splitList(text);
  const prefixes: string[] = [];
  const errors: string[] = [];
  items.forEach((item, i) => {
    const m = /^([^/]+)\/(\d{1,3})$/.exec(item);
    const bytes = m ? (v4(m[1]!) ?? v6(m[1]!)) : null;
    const len = m ? Number(m[2]) : -1;
    if (!m || !bytes || len > bytes.length * 8) {
      errors.push(`entry ${i + 1}: "${item}" is not a prefix like 10.0.0.0/8 or fd00::/8`);
    } else if (!hostBitsClear(bytes, len)) {
      errors.push(`entry ${i + 1}: ${item} has host bits set`);
    } else {
      prefixes.push(item);
    }
  });
  return { ok: errors.length === 0, prefixes, errors };
}

/** Resolver addresses as typed (Rust: settings::parse_addresses, same rules). */
export function checkAddresses(text: string): PrefixCheck {
  const items = splitList(text);
  const prefixes: string[] = [];
  const errors: string[] = [];
  items.forEach((item, i) => {
    const bytes = v4(item) ?? v6(item);
    if (!bytes) errors.push(`entry ${i + 1}: "${item}" is not an address like 10.64.0.1 or fd00::53`);
    else if (bytes.every((b) => b === 0) || (bytes.length === 4 ? bytes[0]! >= 224 && bytes[0]! < 240 : bytes[0] === 0xff))
      errors.push(`entry ${i + 1}: ${item} cannot be a resolver's address`);
    else prefixes.push(item);
  });
  if (prefixes.length > 8) errors.push(`${prefixes.length} resolvers; at most 8`);
  return { ok: errors.length === 0, prefixes, errors };
}
