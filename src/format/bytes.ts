/** Little-endian field access on Uint8Arrays, without copying. */

export function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function ascii(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes);
}


/** Parses sizes like "256MiB", "4G", "0x1000" or "4096". */
export function parseSize(text: string): bigint {
  const match = /^\s*(0x[0-9a-f]+|\d+)\s*([kmgt]?)(i?b?)?\s*$/i.exec(text);
  if (!match) throw new RangeError(`not a size: "${text}" (examples: 4096, 0x1000, 64KiB, 256MiB, 1GiB)`);
  const scale = { '': 0n, k: 10n, m: 20n, g: 30n, t: 40n }[match[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return BigInt(match[1]) << scale;
}
