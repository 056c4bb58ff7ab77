/**
 * Hands memslots their place in the raw files. Opening existing files, a slot
 * must match a region of the layout; creating files for a restore, each new
 * slot is appended after the last one and the files grow with ftruncate, so
 * pages never written stay holes.
 */

import { ftruncateSync } from 'node:fs';
import { VmsnapError } from '../../format/errors.js';
import { namingFile } from '../../io/output-file.js';
import type { SlotStorageFactory } from '../../kernel-model/slot-storage.js';
import type { MemorySlotSpec } from '../../vm/vm.js';
import { FileSlotStorage, type RawFileHandles } from './file-slot-storage.js';
import { type RawLayout, type RawRegion, tagFileRatio } from './raw-layout.js';

export class RawFilesError extends VmsnapError {
  constructor(
    readonly path: string,
    detail: string,
  ) {
    super('bad-raw-files', 'invalid-input', `${path}: ${detail}`);
  }
}

const hex = (value: bigint): string => `0x${value.toString(16)}`;

/** Serves the regions of an existing layout. */
export class ExistingFilesStorageFactory implements SlotStorageFactory {
  readonly storages: FileSlotStorage[] = [];

  constructor(
    private readonly layout: RawLayout,
    private readonly files: RawFileHandles,
  ) {}

  createSlotStorage(spec: MemorySlotSpec, pageSize: number): FileSlotStorage {
    const region = this.layout.regions.find((r) => r.guestAddress === spec.guestAddress && r.size === spec.size);
    if (!region) {
      throw new RawFilesError(
        this.files.ramPath,
        `no region of the layout covers slot ${spec.slot} at ${hex(spec.guestAddress)} size ${hex(spec.size)}`,
      );
    }
    const storage = new FileSlotStorage(region, this.files, pageSize, true);
    this.storages.push(storage);
    return storage;
  }
}

/** Appends each new slot to files being created. */
export class NewFilesStorageFactory implements SlotStorageFactory {
  readonly storages: FileSlotStorage[] = [];
  private end = 0n;

  constructor(private readonly files: RawFileHandles) {}

  createSlotStorage(spec: MemorySlotSpec, pageSize: number): FileSlotStorage {
    const region: RawRegion = {
      name: spec.name,
      slot: spec.slot,
      guestAddress: spec.guestAddress,
      size: spec.size,
      mte: this.files.tagFd !== undefined,
      readOnly: spec.readOnly ?? false,
      fileOffset: this.end,
    };
    this.end += spec.size;
    growFile(this.files.ramFd, this.files.ramPath, this.end);
    if (this.files.tagFd !== undefined)
      growFile(this.files.tagFd, this.files.tagPath ?? '', this.end / BigInt(tagFileRatio(this.files.tagLayout)));
    const storage = new FileSlotStorage(region, this.files, pageSize, false);
    this.storages.push(storage);
    return storage;
  }
}

/** ftruncate, with an error that names the file (the system's names none: "ENOSPC: no space left on device, ftruncate"). */
function growFile(fd: number, path: string, length: bigint): void {
  try {
    ftruncateSync(fd, Number(length));
  } catch (error) {
    throw namingFile(error, path);
  }
}
