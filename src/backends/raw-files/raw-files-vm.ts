/**
 * The raw-files backend: a `Vm` over a VMM's own dumps, a RAM image plus an
 * optional tag file, placed by a layout (raw-layout.ts, docs/raw-layout.md, which also
 * documents where each region's tags sit). It runs on the same kernel model
 * as the simulator, so tag copies have exactly the KVM semantics.
 *
 *  - As a source, `openRawFiles` opens existing files read-only; every region
 *    of the layout becomes a memslot (MTE on when a tag file is given).
 *    The files must have exactly the sizes the layout implies (rawFileSizes).
 *  - As a restore target, `RawFilesVmFactory` creates the files (mode 0600,
 *    grown with ftruncate so zero pages stay sparse); slots are laid out in
 *    the order they are added, and `close()` can write the resulting layout.
 *
 * Raw files are not a KVM VM: the kernel model runs without KVM's limits
 * (memslot ids, IPA size, vCPU ids), so any snapshot the format allows fits;
 * and they keep no vCPU registers: vCPUs can be created (a restore creates
 * the snapshot's) but what is set on them is dropped and none is listed.
 *
 * Memory stays bounded: files are read and written at offsets, never whole.
 */
import { closeSync, fstatSync, fsyncSync, openSync, writeFileSync } from 'node:fs';
import { ReadAhead } from '../../io/read-ahead.js';
import { WritebackPacer } from '../../io/writeback.js';
import { KernelModelVm } from '../../kernel-model/kernel-model-vm.js';
import type { KernelVersion } from '../../kernel-model/kernel-version.js';
import type { SlotStorageFactory } from '../../kernel-model/slot-storage.js';
import { memorySlotSpec, type SnapshotRequirements, type Vcpu, VmErrnoError, type VmFactory } from '../../vm/vm.js';
import type { FileSlotStorage, RawFileHandles } from './file-slot-storage.js';
import { ExistingFilesStorageFactory, NewFilesStorageFactory, RawFilesError } from './file-storage-factory.js';
import { formatRawLayout, type RawLayout, type RawRegion, rawFileSizes, type TagFileLayout } from './raw-layout.js';

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
  rawFileSizes,
  readRawLayoutFile,
  resolveRawLayout,
  type TagFileLayout,
  tagFileOffset,
  tagFileRatio,
} from './raw-layout.js';

export const RAW_FILES_BACKEND = 'raw-files';

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

/** A vCPU of raw files, which keep no registers: what is set on it is dropped, and it lists none. */
class UnkeptVcpu implements Vcpu {
  constructor(readonly id: number) {}
  registerIds(): bigint[] {
    return [];
  }
  getRegister(id: bigint): Uint8Array {
    throw new VmErrnoError('ENOENT', 'KVM_GET_ONE_REG', `raw files keep no registers (vCPU ${this.id}, register 0x${id.toString(16)})`);
  }
  setRegister(): void {}
}

export class RawFilesVm extends KernelModelVm {
  private filesClosed = false;

  private readonly layoutPath: string | undefined;
  private readonly unkeptVcpus: UnkeptVcpu[] = [];
  /** Created regions: which keep tags, as the snapshot restored into them says (markTaggedRegions). */
  private readonly taggedSlots = new Map<number, boolean>();

  constructor(
    private readonly files: RawFileHandles,
    private readonly fileStores: StorageFactory,
    private readonly tagLayout: TagFileLayout,
    options: RawFilesVmOptions,
  ) {
    super(RAW_FILES_BACKEND, fileStores, { pageSize: options.pageSize, kernelVersion: options.kernelVersion, kvmLimits: false });
    this.layoutPath = options.layoutPath;
  }

  /**
   * Where every slot is in the files, and which regions keep tags: an opened region as its layout says; a created
   * one as markTaggedRegions said, or by default when the VM has MTE, a tag file exists and the region is writable.
   */
  layout(): RawLayout {
    return {
      pageSize: this.pageSize,
      tagLayout: this.tagLayout,
      regions: this.fileStores.storages.map((s) => ({ ...s.region, mte: this.keepsTags(s.region) })),
    };
  }

  private keepsTags(region: RawRegion): boolean {
    if (!region.mte || !this.files.writable) return region.mte;
    return this.taggedSlots.get(region.slot) ?? (this.mteEnabled && !region.readOnly);
  }

  /** A region's tags are saved only where the layout says `mte: true` (the writer asks this). */
  isSlotTagged(slot: number): boolean {
    const storage = this.fileStores.storages.find((s) => s.region.slot === slot);
    return storage !== undefined && this.keepsTags(storage.region);
  }

  /**
   * Records which created regions keep tags, from the regions of the snapshot restored into the files (their
   * `mte`), so that the layout written on close describes the snapshot exactly: a tagged region whose tags are
   * all zero got no tag write, yet stays `mte: true`. A tagged region needs a tag file and a writable slot.
   */
  markTaggedRegions(regions: readonly { readonly slot: number; readonly mte: boolean }[]): void {
    for (const { slot, mte } of regions) {
      const storage = this.fileStores.storages.find((s) => s.region.slot === slot);
      if (!storage) throw new RangeError(`markTaggedRegions: no slot ${slot} in these raw files`);
      if (mte && !storage.region.mte)
        throw new RawFilesError(this.files.ramPath, `region ${storage.region.name} keeps tags but no tag file was given`);
      if (mte && storage.region.readOnly)
        throw new RawFilesError(this.files.ramPath, `region ${storage.region.name} is read-only and cannot keep tags`);
      this.taggedSlots.set(slot, mte);
    }
  }

  /** KVM's vCPU rules still hold (MTE before the first vCPU, no duplicate ids); the registers are not kept. */
  protected override newVcpu(id: number): Vcpu {
    const vcpu = new UnkeptVcpu(id);
    this.unkeptVcpus.push(vcpu);
    return vcpu;
  }

  /** None: raw files keep no vCPU state, so a save from them has no vCPUs and a comparison leaves registers out. */
  override vcpus(): readonly Vcpu[] {
    return [];
  }

  /** How many vCPUs were created (a restore creates the snapshot's) whose registers the files could not keep. */
  get vcpusNotKept(): number {
    return this.unkeptVcpus.length;
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
  const files: RawFileHandles = {
    ramFd,
    ramPath: paths.ram,
    tagFd,
    tagPath: paths.tags,
    tagLayout: layout.tagLayout,
    writable: false,
    ramReadAhead: new ReadAhead(ramFd),
  };
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
  if (!tagged && paths.tags !== undefined)
    throw new RawFilesError(paths.tags, 'a tag file was given but no region of the layout has mte: true, so no tag would be read');
}

/** Every file exactly as long as the layout says: a file of another layout (byte tags read as packed) is refused. */
function checkFileSizes(files: RawFileHandles, layout: RawLayout): void {
  const expected = rawFileSizes(layout);
  const last = layout.regions.reduce((a, b) => (b.fileOffset + b.size > a.fileOffset + a.size ? b : a));
  const ramSize = BigInt(fstatSync(files.ramFd).size);
  if (ramSize !== expected.ram) {
    throw new RawFilesError(
      files.ramPath,
      `the RAM file has ${ramSize} bytes but the layout needs exactly ${expected.ram} ` +
        `(region ${last.name} ends there: file offset ${last.fileOffset} + size ${last.size})`,
    );
  }
  if (files.tagFd === undefined || files.tagPath === undefined) return;
  const tagSize = BigInt(fstatSync(files.tagFd).size);
  if (tagSize !== expected.tags) {
    const perByte =
      layout.tagLayout === 'byte' ? 'one tag per byte, 1 byte per 16 RAM bytes' : 'two tags per byte, 1 byte per 32 RAM bytes';
    throw new RawFilesError(
      files.tagPath,
      `the tag file has ${tagSize} bytes but the ${layout.tagLayout} tag layout (${perByte}) needs exactly ${expected.tags} ` +
        `for ${expected.ram} bytes of RAM file`,
    );
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
