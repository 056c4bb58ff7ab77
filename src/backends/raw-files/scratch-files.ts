/**
 * Guest memory in scratch files, as a VMM whose guest RAM is a file: a store
 * for any kernel-model VM (the simulated VM of `migrate send --sim` and of
 * `migrate receive`) that keeps the guest's bytes and tags out of the process,
 * so that its memory stays the same whatever the guest size, and slots larger
 * than an in-memory one (MAX_IN_MEMORY_SLOT_BYTES) fit.
 *
 * The files are the raw-files backend's (NewFilesStorageFactory: a RAM file
 * and a byte tag file, grown sparse with ftruncate, positioned reads and
 * writes). They are created 0600 under fresh names in a temporary directory
 * and unlinked at once, while open: no name reaches them afterwards, and the
 * kernel frees their blocks when the descriptors close, on close(), at exit,
 * on a signal or a crash alike; nothing is ever left to clean up.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsConstants, openSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SlotStorageFactory } from '../../kernel-model/slot-storage.js';
import type { MemorySlotSpec } from '../../vm/vm.js';
import type { FileSlotStorage, RawFileHandles } from './file-slot-storage.js';
import { NewFilesStorageFactory } from './file-storage-factory.js';

/** Opens a new file 0600 under a fresh name in `directory`, and unlinks it: the descriptor is all that is left of it. */
function openUnlinked(directory: string, what: string): { fd: number; path: string } {
  const path = join(directory, `.vmsnap-${what}-${process.pid}-${randomBytes(6).toString('hex')}`);
  // O_EXCL: never write through a file or link someone else placed at the name.
  const fd = openSync(path, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    unlinkSync(path);
  } catch (error) {
    closeSync(fd);
    throw error;
  }
  return { fd, path };
}

/** A store of memslots in unlinked scratch files; close() (after the VM's) gives their space back. */
export class ScratchFilesStorageFactory implements SlotStorageFactory {
  private readonly files: RawFileHandles;
  private readonly slots: NewFilesStorageFactory;
  private closed = false;

  /** `directory`: where the files are made; default the system's temporary directory ($TMPDIR). */
  constructor(directory: string = tmpdir()) {
    const ram = openUnlinked(directory, 'guest-ram');
    let tags: { fd: number; path: string };
    try {
      tags = openUnlinked(directory, 'guest-tags');
    } catch (error) {
      closeSync(ram.fd);
      throw error;
    }
    // Paths only name the files in messages; the files are reached through their descriptors.
    this.files = {
      ramFd: ram.fd,
      ramPath: `${ram.path} (scratch guest RAM, deleted)`,
      tagFd: tags.fd,
      tagPath: `${tags.path} (scratch guest tags, deleted)`,
      tagLayout: 'byte',
      writable: true,
    };
    this.slots = new NewFilesStorageFactory(this.files);
  }

  createSlotStorage(spec: MemorySlotSpec, pageSize: number): FileSlotStorage {
    if (this.closed) throw new Error('the scratch guest memory files are closed');
    return this.slots.createSlotStorage(spec, pageSize);
  }

  /**
   * Closes the files, which frees their space. The VM over them must be closed first: a store used after this
   * would write to whatever file reuses the descriptor number.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      // Gathered RAM and tag writes go before the descriptors do, as the VM's close would have sent them.
      for (const storage of this.slots.storages) storage.close();
    } finally {
      this.closeFiles();
    }
  }

  private closeFiles(): void {
    try {
      closeSync(this.files.ramFd);
    } finally {
      closeSync(this.files.tagFd!);
    }
  }
}
