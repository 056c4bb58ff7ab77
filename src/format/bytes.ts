/** Little-endian field access on Uint8Arrays, without copying. */

export function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A plain Uint8Array without the zero fill, for a caller that writes every byte of it before reading any. */
export function uninitialisedBytes(length: number): Uint8Array {
  const buffer = Buffer.allocUnsafeSlow(length);
  return new Uint8Array(buffer.buffer, buffer.byteOffset, length);
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function ascii(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes);
}

const zeroBuffers = new Map<number, Uint8Array>();
/** A shared all-zero buffer of `length` bytes, to compare against (lengths up to 64 KiB are kept). */
function zeros(length: number): Uint8Array {
  let buffer = zeroBuffers.get(length);
  if (!buffer) {
    buffer = new Uint8Array(length);
    if (length <= 65536) zeroBuffers.set(length, buffer);
  }
  return buffer;
}

/** True when every byte is zero: an all-zero page or tag run needs no storage. */
export function isAllZero(bytes: Uint8Array): boolean {
  // Most data pages have a nonzero first byte: answer those without a call.
  if (bytes.length === 0) return true;
  if (bytes[0] !== 0) return false;
  for (let at = 0; at < bytes.length; at += 65536) {
    const part = bytes.subarray(at, Math.min(at + 65536, bytes.length));
    if (Buffer.compare(part, zeros(part.length)) !== 0) return false;
  }
  return true;
}
