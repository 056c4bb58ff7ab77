/**
 * A snapshot read front to back is a sequence of events, the same whether it
 * comes from a file or a pipe: first the header and metadata, then every
 * chunk in grid order, then vCPUs and blobs. Restore and verify consume it.
 * A diff snapshot adds a 'diff' event after 'start' and a 'changed' event
 * before each RAM chunk; a consumer that restores must merge it with its
 * parents (src/reader/chain.ts), never take its chunks alone.
 */

import type { ChangedPages, RamChunk, SnapshotHeader, SnapshotMetadata, TagChunk, VmmBlob } from '../format/model.js';
import type { VcpuState } from '../vm/vm.js';

export type SnapshotEvent =
  | { readonly type: 'start'; readonly header: SnapshotHeader; readonly metadata: SnapshotMetadata }
  /** The file is a diff snapshot of this parent (right after 'start'): its chunks hold only changed pages. */
  | { readonly type: 'diff'; readonly parentId: Uint8Array }
  /** A diff's changed-page map of the RAM (and tag) chunk that follows. */
  | { readonly type: 'changed'; readonly pages: ChangedPages }
  /**
   * A chunk, decoded and checked. `payload`, when the source has it, is the chunk's payload as stored (spec/FORMAT.md
   * section 6, every rule checked): a consumer that stores the chunk again (push) keeps its encoding instead of
   * compressing it anew. From a transient source it lives in the same reused memory: valid until `release`.
   */
  | {
      readonly type: 'chunk';
      readonly chunk: RamChunk | TagChunk;
      readonly payload?: Uint8Array;
      /**
       * Set when the source reuses the memory the chunk lives in (a file read with `transient`, as restore
       * reads it): call it once done with the chunk, whose bytes may change after.
       */
      readonly release?: () => void;
    }
  | { readonly type: 'vcpu'; readonly vcpu: VcpuState }
  | { readonly type: 'blob'; readonly blob: VmmBlob }
  /** A section this reader does not know and was allowed to skip. */
  | { readonly type: 'skipped'; readonly sectionType: string; readonly offset: bigint };

/** Events from somewhere other than a file or a stream (a snapshot in a chunk store): restore takes one as its source. */
export interface SnapshotEventSource {
  events(): AsyncIterable<SnapshotEvent>;
  close(): Promise<void>;
}

/** `payload` after it was decoded, or undefined when a worker thread took it (a transferred buffer is left empty). */
export function keptPayload(payload: Uint8Array): Uint8Array | undefined {
  return payload.byteLength > 0 ? payload : undefined;
}
