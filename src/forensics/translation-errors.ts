/**
 * Errors of guest virtual address translation: the walk met an invalid
 * descriptor (a translation fault, naming the level, the virtual address and
 * the descriptor's own address), or the snapshot cannot be walked at all (no
 * translation registers, reserved encodings).
 */
import { VmsnapError } from '../format/errors.js';
import { hex } from './errors.js';

/** What stopped the walk: as the MMU would report it (Arm ARM D8.3, fault types). */
export type FaultReason = 'translation' | 'address-size' | 'walk-disabled' | 'table-outside-memory';

export class TranslationFaultError extends VmsnapError {
  constructor(
    readonly virtualAddress: bigint,
    /** The lookup level that faulted (-1..3), or null before the first lookup. */
    readonly level: number | null,
    readonly reason: FaultReason,
    detail: string,
  ) {
    super(
      'translation-fault',
      'usage',
      `virtual address ${hex(virtualAddress)}: ${reason} fault${level === null ? '' : ` at level ${level}`}: ${detail}`,
    );
  }
}

/** The snapshot has no stage-1 state to walk for this vCPU (registers missing or reserved encodings). */
export class NoPageTablesError extends VmsnapError {
  constructor(
    readonly vcpu: number,
    detail: string,
  ) {
    super('no-page-tables', 'usage', `vCPU ${vcpu}: cannot translate virtual addresses: ${detail}`);
  }
}
