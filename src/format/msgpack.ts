/**
 * A strict MessagePack decoder for the META, VCPU and BLOB payloads
 * (spec/FORMAT.md, "Metadata"). Writing uses msgpackr; reading uses this, so
 * that every rule the spec gives these payloads is checked in one place and
 * nothing is lost on the way: integers stay integers (BigInt, never a float),
 * floats stay floats (and are refused where an integer is due), strings must
 * be valid UTF-8, maps must have string keys and no key twice, nesting is
 * bounded, ext types are refused, and nothing may follow the value.
 *
 * A declared length is checked against the bytes left before anything is
 * allocated for it, so a hostile length costs nothing.
 */
import { view } from './bytes.js';
import { LIMITS } from './constants.js';

/** A MessagePack float: kept apart from integers, so that `1.0` is never taken for `1`. */
export class MessagePackFloat {
  constructor(readonly value: number) {}
}

export type MessagePackValue =
  | null
  | boolean
  | bigint
  | string
  | Uint8Array
  | MessagePackFloat
  | MessagePackValue[]
  | ReadonlyMap<string, MessagePackValue>;

/** The payload is not MessagePack the format allows; `offset` is where inside the payload. */
export class MessagePackError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

class Decoder {
  private at = 0;
  private readonly dv: DataView;

  constructor(private readonly bytes: Uint8Array) {
    this.dv = view(bytes);
  }

  private fail(message: string, offset = this.at): never {
    throw new MessagePackError(message, offset);
  }

  /** Moves past `length` bytes that must be there, returning where they start. */
  private take(length: number): number {
    if (length > this.bytes.length - this.at) this.fail(`a value of ${length} bytes runs past the end of the payload`);
    const start = this.at;
    this.at += length;
    return start;
  }

  private u8(): number {
    return this.bytes[this.take(1)];
  }

  private u16(): number {
    return this.dv.getUint16(this.take(2));
  }

  private u32(): number {
    return this.dv.getUint32(this.take(4));
  }

  private string(length: number): string {
    const start = this.take(length);
    try {
      return utf8.decode(this.bytes.subarray(start, start + length));
    } catch {
      return this.fail('a string is not valid UTF-8', start);
    }
  }

  private binary(length: number): Uint8Array {
    const start = this.take(length);
    return this.bytes.subarray(start, start + length);
  }

  private nest(depth: number, start: number): void {
    if (depth > LIMITS.nesting) this.fail(`arrays and maps nest deeper than ${LIMITS.nesting} levels`, start);
  }

  private array(count: number, depth: number, start: number): MessagePackValue[] {
    this.nest(depth, start);
    // Every element takes at least one byte: a count the bytes left cannot hold is refused before anything is allocated.
    if (count > this.bytes.length - this.at) this.fail(`an array of ${count} entries is longer than the payload`);
    const out: MessagePackValue[] = [];
    for (let i = 0; i < count; i++) out.push(this.value(depth + 1));
    return out;
  }

  private map(count: number, depth: number, start: number): ReadonlyMap<string, MessagePackValue> {
    this.nest(depth, start);
    if (count * 2 > this.bytes.length - this.at) this.fail(`a map of ${count} entries is longer than the payload`);
    const out = new Map<string, MessagePackValue>();
    for (let i = 0; i < count; i++) {
      const keyAt = this.at;
      const key = this.value(depth + 1);
      if (typeof key !== 'string') this.fail('a map key is not a string', keyAt);
      if (out.has(key)) this.fail(`map key "${key}" appears twice`, keyAt);
      out.set(key, this.value(depth + 1));
    }
    return out;
  }

  /** `depth`: 1 for the payload's own value, one more inside each array or map. */
  value(depth: number): MessagePackValue {
    const start = this.at;
    const type = this.u8();
    if (type <= 0x7f) return BigInt(type);
    if (type >= 0xe0) return BigInt(type - 0x100);
    if (type >= 0x80 && type <= 0x8f) return this.map(type & 0x0f, depth, start);
    if (type >= 0x90 && type <= 0x9f) return this.array(type & 0x0f, depth, start);
    if (type >= 0xa0 && type <= 0xbf) return this.string(type & 0x1f);
    switch (type) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.binary(this.u8());
      case 0xc5:
        return this.binary(this.u16());
      case 0xc6:
        return this.binary(this.u32());
      case 0xca:
        return new MessagePackFloat(this.dv.getFloat32(this.take(4)));
      case 0xcb:
        return new MessagePackFloat(this.dv.getFloat64(this.take(8)));
      case 0xcc:
        return BigInt(this.u8());
      case 0xcd:
        return BigInt(this.u16());
      case 0xce:
        return BigInt(this.u32());
      case 0xcf:
        return this.dv.getBigUint64(this.take(8));
      case 0xd0:
        return BigInt(this.dv.getInt8(this.take(1)));
      case 0xd1:
        return BigInt(this.dv.getInt16(this.take(2)));
      case 0xd2:
        return BigInt(this.dv.getInt32(this.take(4)));
      case 0xd3:
        return this.dv.getBigInt64(this.take(8));
      case 0xd9:
        return this.string(this.u8());
      case 0xda:
        return this.string(this.u16());
      case 0xdb:
        return this.string(this.u32());
      case 0xdc:
        return this.array(this.u16(), depth, start);
      case 0xdd:
        return this.array(this.u32(), depth, start);
      case 0xde:
        return this.map(this.u16(), depth, start);
      case 0xdf:
        return this.map(this.u32(), depth, start);
      case 0xc7:
      case 0xc8:
      case 0xc9:
      case 0xd4:
      case 0xd5:
      case 0xd6:
      case 0xd7:
      case 0xd8:
        return this.fail(`an ext value (type byte 0x${type.toString(16)}): the format uses none`, start);
      default:
        return this.fail('byte 0xc1 is not a MessagePack type', start);
    }
  }

  /** The one value the payload holds: bytes after it are refused. */
  whole(): MessagePackValue {
    const value = this.value(1);
    if (this.at !== this.bytes.length) this.fail(`${this.bytes.length - this.at} bytes follow the MessagePack value`);
    return value;
  }
}

/** Decodes a payload that must hold exactly one MessagePack value; throws MessagePackError. */
export function decodeMessagePack(bytes: Uint8Array): MessagePackValue {
  return new Decoder(bytes).whole();
}

/** Unicode code points of a string from decodeMessagePack (valid UTF-8, so every surrogate is paired): the spec's "characters". */
export function codePoints(text: string): number {
  let count = text.length;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff) count--;
  }
  return count;
}
