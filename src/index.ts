/**
 * vmsnap's public API: everything a VMM or a forensics tool imports from
 * 'vmsnap'. The real KVM backend is a separate entry, 'vmsnap/kvm', so that
 * its FFI library (koffi) is loaded only by those who ask for it. Anything
 * not exported here is internal and may change in any release.
 *
 * The flow (docs/architecture.md): a VmSource -> saveSnapshot -> file or
 * stream -> openSnapshot / readSnapshotStream / verifySnapshot ->
 * restoreSnapshot -> a VmTarget from a VmFactory.
 */

// The VM interface: what the writer reads (VmSource) and restore writes (VmTarget).
export {
  ERRNO,
  TAGS_FROM_GUEST,
  TAGS_TO_GUEST,
  type CopyMteTagsRequest,
  type ErrnoName,
  type MemoryBacking,
  type MemorySlot,
  type MemorySlotSpec,
  type SnapshotRequirements,
  type SourceSlot,
  type Vcpu,
  type VcpuSource,
  type VcpuTarget,
  type Vm,
  type VmFactory,
  type VmSource,
  type VmTarget,
} from './vm/vm.js';
export { guestTags, readGuestTags, writeGuestTags, MAX_TAG_COPY_BYTES, type TagCopier } from './vm/tag-copy.js';

// The format's values and constants.
export type {
  ChunkKind,
  ChunkLocation,
  GuestAddress,
  RamChunk,
  SnapshotHeader,
  SnapshotMetadata,
  SnapshotReader,
  SnapshotRegion,
  TagChunk,
  VmmBlob,
} from './format/model.js';
export type { RegisterValue, VcpuState } from './format/registers.js';
export { FORMAT_MAJOR, FORMAT_MINOR, GRANULE_SIZE, LIMITS, MAX_CHUNK_CONTENT, MAX_ZSTD_LEVEL, PAGE_SIZES, TAG_BITS } from './format/constants.js';
export { VERSION } from './version.js';

// Save, read, restore.
export { DEFAULT_CHUNK_BYTES, saveSnapshot, type SaveOptions, type SaveProgress, type SaveSummary } from './writer/save.js';
export { openSnapshot, type FileSnapshot, type OpenOptions } from './reader/open.js';
export { readSnapshotStream, type StreamReadOptions } from './reader/stream.js';
export type { SnapshotEvent } from './reader/events.js';
export { restoreSnapshot, type RestoredVm, type RestoreOptions, type RestoreProgress, type RestoreSummary } from './reader/restore.js';
export { describeSnapshot, type RegionInfo, type SnapshotInfo } from './reader/snapshot-info.js';

// Proof: verify a file, compare two VMs.
export { verifySnapshot, type VerifyOptions, type VerifyProblem, type VerifyReport, type VerifyStats } from './validate/verify.js';
export { compareVms, type VmComparison, type VmDifference } from './validate/compare.js';

// Backends: the simulated kernel and raw RAM/tag files ('vmsnap/kvm' has the real KVM).
export { SimulatedVm, SimulatedVmFactory, type SimulatedVmFactoryOptions, type SimulatedVmOptions } from './backends/simulated/simulated-vm.js';
export { DEFAULT_KERNEL_VERSION, formatKernelVersion, type KernelVersion } from './kernel-model/kernel-version.js';
export {
  openRawFiles,
  RAW_FILES_BACKEND,
  RawFilesVm,
  RawFilesVmFactory,
  type OpenRawFilesOptions,
  type RawFilePaths,
  type RawFilesTargetOptions,
} from './backends/raw-files/raw-files-vm.js';
export {
  formatRawLayout,
  parseRawLayout,
  readRawLayoutFile,
  resolveRawLayout,
  type RawLayout,
  type RawLayoutSpec,
  type RawRegion,
  type RawRegionSpec,
  type TagFileLayout,
} from './backends/raw-files/raw-layout.js';

// The seeded workload guest of the demo and the tests.
export { createSimulatedGuest, type SimulatedGuest, type SimulatedGuestOptions } from './workload/index.js';
export { workloadAnnotations, workloadFromAnnotations, type WorkloadSpec } from './workload/annotations.js';

// Forensics on tag state, and ELF cores.
export { parseIpaRange, type IpaRange } from './forensics/addresses.js';
export { tagStatistics, type RegionTagStats, type TagStats, type TagStatsOptions, type TagStatsReport } from './forensics/tag-stats.js';
export { dumpGranules, formatTagLines, type DumpOptions, type GranuleLine } from './forensics/granule-dump.js';
export { diffSnapshots, type ChangedPage, type DiffOptions, type RegionDiff, type SnapshotDiff, type TagChangeRun } from './forensics/snapshot-diff.js';
export { buildTagMap, type RegionMap, type TagMap, type TagMapOptions } from './forensics/tag-map.js';
export { renderTagMapSvg } from './forensics/tag-map-svg.js';
export { checkPointer, logicalTag, untaggedAddress, type PointerCheck } from './forensics/pointer-check.js';
export { exportCore, type CoreExportSummary } from './forensics/core-export.js';
export { importCore, type CoreImportOptions, type CoreImportSummary } from './forensics/core-import.js';

// Errors and JSON.
export * from './errors.js';
export { JSON_SCHEMA_VERSION, toJsonValue } from './json.js';
