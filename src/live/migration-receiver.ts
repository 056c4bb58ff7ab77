/**
 * The receiving half of a migration: reads a migration stream from a pipe or
 * socket and restores it into a fresh VM as the data arrives (memory and tags
 * of each run as soon as its frame is whole and its checksum holds). The
 * vCPUs are created, and the VM handed back to be resumed, only after the END
 * frame confirmed every frame, round and vCPU; a damaged, reordered or cut
 * stream closes the VM and throws MigrationStreamError saying where and why,
 * so nothing of it ever runs.
 */
import { decodeVcpu } from '../format/metadata.js';
import type { VcpuState } from '../format/registers.js';
import type { VmFactory, VmTarget } from '../vm/vm.js';
import {
  checkFrame,
  checkStreamHeader,
  decodeEnd,
  decodeFrameHeader,
  decodePages,
  decodeRound,
  FRAME_HEADER_BYTES,
  FRAME_TRAILER_BYTES,
  MigrationStreamError,
  STREAM_HEADER_BYTES,
} from './migration-frames.js';
import { decodeLayout, type StreamLayout } from './stream-layout.js';
import { TargetApplier } from './target-applier.js';

export interface MigrationReceipt<T extends VmTarget> {
  /** The restored VM, vCPUs created and registers set, ready to run. */
  readonly vm: T;
  readonly layout: StreamLayout;
  readonly rounds: number;
  readonly pages: number;
  readonly bytes: number;
  /** The vCPU registers as the VCPU frames carried them (a target may keep none, as raw files, or read some back moved, as KVM's timer). */
  readonly vcpus: readonly VcpuState[];
}

/** Reads exact byte counts from a stream of chunks. */
class ByteReader {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  /** Bytes handed out so far: the stream offset of the next read. */
  offset = 0;
  private readonly iterator: AsyncIterator<Uint8Array | string>;

  constructor(input: AsyncIterable<Uint8Array | string>) {
    this.iterator = input[Symbol.asyncIterator]();
  }

  /** Exactly `count` bytes, or null if the stream ends first (`atEnd` tells whether it ended before any of them). */
  async read(count: number): Promise<Uint8Array | null> {
    while (this.buffered < count) {
      const next = await this.iterator.next();
      if (next.done) return null;
      const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const joined = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const result = joined.subarray(0, count);
    const rest = joined.subarray(count);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    this.offset += count;
    return result;
  }

  async atEnd(): Promise<boolean> {
    if (this.buffered > 0) return false;
    const next = await this.iterator.next();
    if (next.done) return true;
    const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    return chunk.length === 0 ? this.atEnd() : false;
  }
}

export async function receiveMigration<T extends VmTarget>(
  input: AsyncIterable<Uint8Array | string>,
  factory: VmFactory<T>,
): Promise<MigrationReceipt<T>> {
  const applier = new TargetApplier(factory);
  const state: ReceiveState = { header: false, layout: null, frames: 0, rounds: 0, pages: 0, vcpus: [] };
  try {
    return await receive(new ByteReader(input), applier, state);
  } catch (error) {
    applier.abort();
    // Past the stream header, an error names the frame it arose in (0 is the LAYOUT frame).
    throw error instanceof MigrationStreamError && state.header ? error.inFrame(state.frames) : error;
  }
}

interface ReceiveState {
  /** The stream header was read and holds. */
  header: boolean;
  layout: StreamLayout | null;
  /** Whole frames taken so far: the index of the frame being read. */
  frames: number;
  rounds: number;
  pages: number;
  vcpus: VcpuState[];
}

async function receive<T extends VmTarget>(
  reader: ByteReader,
  applier: TargetApplier<T>,
  state: ReceiveState,
): Promise<MigrationReceipt<T>> {
  const header = await reader.read(STREAM_HEADER_BYTES);
  if (!header) throw new MigrationStreamError('migration-truncated', 0, 'the stream ended inside its 16-byte header');
  checkStreamHeader(header);
  state.header = true;
  for (;;) {
    const offset = reader.offset;
    const frameHeader = await reader.read(FRAME_HEADER_BYTES);
    if (!frameHeader) throw truncated(offset, state.frames, 'before its END frame');
    const { type, length } = decodeFrameHeader(frameHeader, offset);
    const rest = await reader.read(length + FRAME_TRAILER_BYTES);
    if (!rest) throw truncated(offset, state.frames, `inside a ${type} frame of ${length} bytes`);
    const frame = Buffer.concat([frameHeader, rest]);
    checkFrame(frame, offset, type);
    const payload = frame.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length);
    if (type !== 'layout' && !state.layout) throw outOfOrder(offset, `a ${type} frame before the LAYOUT frame`);
    if (type === 'layout') {
      if (state.layout) throw outOfOrder(offset, 'a second LAYOUT frame');
      state.layout = decodeLayout(payload, offset);
      applier.layout(state.layout, offset);
    } else if (type === 'pages') {
      if (state.vcpus.length > 0) throw outOfOrder(offset, 'a PAGES frame after the vCPUs');
      const pages = decodePages(payload, state.layout!.pageSize, offset);
      if (pages.round !== state.rounds) throw outOfOrder(offset, `a PAGES frame of round ${pages.round} in round ${state.rounds}`);
      applier.pages(pages, offset);
      state.pages += pages.pageCount;
    } else if (type === 'round') {
      const round = decodeRound(payload, offset);
      if (round.round !== state.rounds) throw outOfOrder(offset, `the end of round ${round.round}, expected round ${state.rounds}`);
      state.rounds++;
    } else if (type === 'vcpu') {
      state.vcpus.push(decodeVcpu(payload, BigInt(offset)));
    } else {
      const end = decodeEnd(payload, offset);
      if (end.frames !== state.frames || end.rounds !== state.rounds || end.vcpus !== state.vcpus.length) {
        throw new MigrationStreamError(
          'migration-truncated',
          offset,
          `END says ${end.frames} frames, ${end.rounds} rounds, ${end.vcpus} vCPUs; ` +
            `the stream had ${state.frames}, ${state.rounds}, ${state.vcpus.length}: frames are missing`,
        );
      }
      if (!(await reader.atEnd())) throw new MigrationStreamError('migration-bad-frame', reader.offset, 'bytes after the END frame');
      const vm = applier.finish(state.vcpus, offset);
      return { vm, layout: state.layout!, rounds: state.rounds, pages: state.pages, bytes: reader.offset, vcpus: state.vcpus };
    }
    state.frames++;
  }
}

function truncated(offset: number, frames: number, where: string): MigrationStreamError {
  return new MigrationStreamError('migration-truncated', offset, `the stream ended after ${frames} frames, ${where}; nothing was resumed`);
}

function outOfOrder(offset: number, detail: string): MigrationStreamError {
  return new MigrationStreamError('migration-bad-frame', offset, detail);
}
