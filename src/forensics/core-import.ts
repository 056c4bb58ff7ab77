/**
 * ELF core -> snapshot: open the core as a read-only VM and save it with the
 * ordinary writer. A core we exported carries the original snapshot's
 * identity, annotations, blobs and chunking in its VMSNAP note, so import
 * writes that snapshot again; a Linux process core gets annotations saying
 * where it came from, and its notes kept in a blob.
 */
import { basename } from 'node:path';
import { LIMITS } from '../format/constants.js';
import type { VmmBlob } from '../format/model.js';
import { jsonResult } from '../json.js';
import { type SaveOptions, type SaveSummary, saveSnapshot } from '../writer/save.js';
import { type CoreVmOptions, openCoreVm } from './core-vm.js';
import { CORE_FILE_SIZES_ANNOTATION } from './elf-constants.js';
import { ElfCore } from './elf-core-reader.js';
import { encodeNotes } from './elf-notes.js';
import { PROCESS_NOTES_BLOB } from './process-notes.js';

export interface CoreImportSummary {
  readonly save: SaveSummary;
  /** True when the core carried a VMSNAP note (exported by vmsnap). */
  readonly fromVmsnap: boolean;
  readonly regions: number;
  readonly vcpus: number;
  /** PT_LOADs left out because they hold neither bytes nor tags. */
  readonly skippedLoads: { address: bigint; size: bigint }[];
}

export interface CoreImportOptions extends CoreVmOptions {
  readonly threads?: number;
  /** Replace an existing snapshot file (never the core itself). */
  readonly force?: boolean;
}

/**
 * The PT_LOADs whose file holds fewer bytes than their memory (a text segment
 * GDB reads from the executable): the snapshot stores their tail as zeros, and
 * this annotation lets export write the same p_filesz again, so the bytes stay
 * absent from the core instead of becoming zeros GDB would believe.
 */
function shortLoadsAnnotation(
  core: ElfCore,
  regions: readonly { name: string; guestAddress: bigint; size: bigint }[],
): Record<string, string> {
  const short: Record<string, string> = {};
  for (const region of regions) {
    const load = core.loads.find((l) => l.address === region.guestAddress && l.memSize === region.size);
    if (load && load.fileSize < load.memSize) short[region.name] = String(load.fileSize);
  }
  return Object.keys(short).length ? { [CORE_FILE_SIZES_ANNOTATION]: JSON.stringify(short) } : {};
}

/**
 * A Linux core's notes, kept as they were (ELF note records, in file order) in
 * the PROCESS_NOTES_BLOB blob: the signal and siginfo, the process, the file
 * mappings, the auxv and each thread's TLS, tagged-address control and PAC
 * notes, so that `show` can report them and `export core` write them back.
 * The registers are also taken apart into vCPUs; export puts the vCPUs'
 * values back into the kept NT_PRSTATUS/NT_FPREGSET.
 */
function processNotes(core: ElfCore): { blobs: VmmBlob[]; annotations: Record<string, string> } {
  const notes = encodeNotes(core.notes);
  if (notes.length > LIMITS.blob) {
    // Too large for a blob (the format's 16 MiB): the snapshot then has the registers alone, and says so.
    return { blobs: [], annotations: { 'core-notes-dropped': `${notes.length} bytes of notes exceed the ${LIMITS.blob}-byte blob limit` } };
  }
  return { blobs: notes.length ? [{ name: PROCESS_NOTES_BLOB, data: notes }] : [], annotations: {} };
}

export async function importCore(
  corePath: string,
  destination: string | NodeJS.WritableStream,
  options: CoreImportOptions = {},
): Promise<CoreImportSummary> {
  const core = ElfCore.open(corePath);
  try {
    const { vm, state, regions, skippedLoads } = openCoreVm(core, options);
    const kept = state ? null : processNotes(core);
    const saveOptions: SaveOptions = state
      ? {
          blobs: state.blobs,
          annotations: state.annotations,
          snapshotId: state.snapshotId,
          parentId: state.parentId,
          createdMs: state.createdMs,
          pagesPerChunk: state.pagesPerChunk,
        }
      : {
          blobs: kept?.blobs,
          annotations: {
            source: 'elf-core',
            core: basename(corePath),
            'core-skipped-loads': String(skippedLoads.length),
            ...shortLoadsAnnotation(core, regions),
            ...kept?.annotations,
          },
        };
    const save = await saveSnapshot(vm, destination, {
      ...saveOptions,
      threads: options.threads,
      force: options.force,
      inputs: [corePath],
    });
    vm.close();
    return jsonResult({
      save,
      fromVmsnap: state !== null,
      regions: regions.length,
      vcpus: vm.vcpus().length,
      skippedLoads: skippedLoads.map((s) => ({ address: s.address, size: s.memSize })),
    });
  } finally {
    core.close();
  }
}
