/**
 * The raw-files backend: a `Vm` over a VMM's own dumps, a RAM image plus an
 * optional tag file, placed by a layout (raw-files/layout.ts, which also
 * documents where each region's tags sit). It runs on the same kernel model
 * as the simulator, so tag copies have exactly the KVM semantics.
 *
 *  - As a source, `openRawFiles` opens existing files read-only; every region
 *    of the layout becomes a memslot (MTE on when a tag file is given).
 *  - As a restore target, `RawFilesVmFactory` creates the files (mode 0600,
 *    grown with ftruncate so zero pages stay sparse); slots are laid out in
 *    the order they are added, and `close()` can write the resulting layout.
 *
 * Memory stays bounded: files are read and written at offsets, never whole.
 */
import { closeSync, fstatSync, fsyncSync, openSync, writeFileSync } from 'node:fs';
import { WritebackPacer } from '../../io/writeback.js';
import { KernelModelVm } from '../../kernel-model/kernel-model-vm.js';
import type { KernelVersion } from '../../kernel-model/kernel-version.js';
import type { SlotStorageFactory } from '../../kernel-model/slot-storage.js';
import { memorySlotSpec, type SnapshotRequirements, type VmFactory } from '../../vm/vm.js';
import type { FileSlotStorage, RawFileHandles } from './file-slot-storage.js';
import { ExistingFilesStorageFactory, NewFilesStorageFactory, RawFilesError } from './file-storage-factory.js';
import { formatRawLayout, type RawLayout, type TagFileLayout, tagFileOffset } from './raw-layout.js';

export { RawFilesError } from './file-storage-factory.js';
export {
  formatRawLayout,
  parseByteCount,
  parseRawLayout,
  type RawLayout,
  RawLayoutError,
  type RawLayoutSpec,
  type RawRegion,
  type RawRegionSpec,
  readRawLayoutFile,
  resolveRawLayout,
  type TagFileLayout,
  tagFileOffset,
  tagFileRatio,
} from './raw-layout.js';

export const RAW_FILES_BACKEND = 'raw-files';
/** Raw dumps may come from VMs with LPA (52-bit IPA); accept any address KVM could have used. */
const RAW_FILES_IPA_BITS = 52;

export interface RawFilePaths {
  /** The RAM image. */
  readonly ram: string;
  /** The tag file; without it the VM has no MTE and no region may say `mte: true`. */
  readonly tags?: string;
}

type StorageFactory = SlotStorageFactory & { readonly storages: readonly FileSlotStorage[] };

interface RawFilesVmOptions {
  readonly pageSize: number;
  readonly kernelVersion?: KernelVersion;
  readonly layoutPath?: string;
}

export class RawFilesVm extends KernelModelVm {
  private filesClosed = false;

  private readonly layoutPath: string | undefined;

  constructor(
    private readonly files: RawFileHandles,
    private readonly fileStores: StorageFactory,
    private readonly tagLayout: TagFileLayout,
    options: RawFilesVmOptions,
  ) {
    super(RAW_FILES_BACKEND, fileStores, { pageSize: options.pageSize, kernelVersion: options.kernelVersion, ipaBits: RAW_FILES_IPA_BITS });
    this.layoutPath = options.layoutPath;
  }

  /** Where every slot is in the files; a created region has `mte` once a page of it got tags. */
  layout(): RawLayout {
    return {
      pageSize: this.pageSize,
      tagLayout: this.tagLayout,
      regions: this.fileStores.storages.map((s) => ({ ...s.region, mte: s.region.mte && s.hasTaggedPages })),
    };
  }

  override flush(): void {
    if (!this.files.writable || this.filesClosed) return;
    super.flush();
    fsyncSync(this.files.ramFd);
    if (this.files.tagFd !== undefined) fsyncSync(this.files.tagFd);
  }

  override close(): void {
    if (this.filesClosed) return;
    this.flush();
    if (this.files.writable && this.layoutPath) writeFileSync(this.layoutPath, formatRawLayout(this.layout()), { mode: 0o600 });
    super.close();
    this.filesClosed = true;
    closeSync(this.files.ramFd);
    if (this.files.tagFd !== undefined) closeSync(this.files.tagFd);
  }
}

export interface OpenRawFilesOptions {
  readonly paths: RawFilePaths;
  readonly layout: RawLayout;
  /** The kernel whose tag-copy semantics to reproduce; default [6, 1]. */
  readonly kernelVersion?: KernelVersion;
}

/** Opens existing dumps read-only as a source VM: one memslot per layout region. */
export function openRawFiles(options: OpenRawFilesOptions): RawFilesVm {
  const { paths, layout } = options;
  checkTagFilePresence(paths, layout);
  const ramFd = openSync(paths.ram, 'r');
  const tagFd = paths.tags === undefined ? undefined : openSync(paths.tags, 'r');
  const files: RawFileHandles = { ramFd, ramPath: paths.ram, tagFd, tagPath: paths.tags, tagLayout: layout.tagLayout, writable: false };
  try {
    checkFileSizes(files, layout);
    const vm = new RawFilesVm(files, new ExistingFilesStorageFactory(layout, files), layout.tagLayout, {
      pageSize: layout.pageSize,
      kernelVersion: options.kernelVersion,
    });
    if (tagFd !== undefined) vm.enableMte();
    for (const region of layout.regions) {
      vm.addMemorySlot(memorySlotSpec(region));
    }
    return vm;
  } catch (error) {
    closeSync(ramFd);
    if (tagFd !== undefined) closeSync(tagFd);
    throw error;
  }
}

function checkTagFilePresence(paths: RawFilePaths, layout: RawLayout): void {
  const tagged = layout.regions.find((r) => r.mte);
  if (tagged && paths.tags === undefined)
    throw new RawFilesError(paths.ram, `region ${tagged.name} has mte: true but no tag file was given`);
}

function checkFileSizes(files: RawFileHandles, layout: RawLayout): void {
  const ramSize = BigInt(fstatSync(files.ramFd).size);
  const tagSize = files.tagFd === undefined ? 0n : BigInt(fstatSync(files.tagFd).size);
  for (const region of layout.regions) {
    const end = region.fileOffset + region.size;
    if (end > ramSize) throw new RawFilesError(files.ramPath, `region ${region.name} ends at ${end} but the file has ${ramSize} bytes`);
    if (!region.mte || files.tagPath === undefined) continue;
    const tagEnd = tagFileOffset(layout.tagLayout, end);
    if (tagEnd > tagSize) {
      throw new RawFilesError(
        files.tagPath,
        `tags of region ${region.name} end at ${tagEnd} (${layout.tagLayout} layout) but the file has ${tagSize} bytes`,
      );
    }
  }
}

export interface RawFilesTargetOptions {
  readonly paths: RawFilePaths;
  /** Default: the page size of the snapshot being restored. */
  readonly pageSize?: number;
  /** Default 'byte'. */
  readonly tagLayout?: TagFileLayout;
  readonly kernelVersion?: KernelVersion;
  /** Replace existing files; default false (refuse). */
  readonly overwrite?: boolean;
  /** Write the layout JSON here on close. */
  readonly layoutPath?: string;
}

/** Makes a restore target that writes raw files; each createVm() creates the files anew. */
export class RawFilesVmFactory implements VmFactory<RawFilesVm> {
  readonly backend = RAW_FILES_BACKEND;

  constructor(private readonly options: RawFilesTargetOptions) {}

  createVm(snapshot?: SnapshotRequirements): RawFilesVm {
    const pageSize = this.options.pageSize ?? snapshot?.pageSize;
    if (pageSize === undefined)
      throw new RangeError("a raw-files target needs a page size: give pageSize, or let restore pass the snapshot's");
    const { paths, overwrite } = this.options;
    const tagLayout = this.options.tagLayout ?? 'byte';
    const flags = overwrite ? 'w+' : 'wx+';
    const ramFd = openFile(paths.ram, flags);
    const tagFd = paths.tags === undefined ? undefined : openFile(paths.tags, flags, ramFd);
    const files: RawFileHandles = {
      ramFd,
      ramPath: paths.ram,
      tagFd,
      tagPath: paths.tags,
      tagLayout,
      writable: true,
      ramWriteback: new WritebackPacer(ramFd),
    };
    return new RawFilesVm(files, new NewFilesStorageFactory(files), tagLayout, { ...this.options, pageSize });
  }
}

function openFile(path: string, flags: string, closeOnError?: number): number {
  try {
    return openSync(path, flags, 0o600);
  } catch (error) {
    if (closeOnError !== undefined) closeSync(closeOnError);
    const code = (error as NodeJS.ErrnoException).code;
    throw new RawFilesError(
      path,
      code === 'EEXIST' ? 'exists; pass overwrite to replace it' : `cannot create: ${(error as Error).message}`,
    );
  }
}
