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

export {
  type OpenRawFilesOptions,
  openRawFiles,
  RAW_FILES_BACKEND,
  type RawFilePaths,
  type RawFilesTargetOptions,
  RawFilesVm,
  RawFilesVmFactory,
} from './backends/raw-files/raw-files-vm.js';
export {
  formatRawLayout,
  parseRawLayout,
  type RawLayout,
  type RawLayoutSpec,
  type RawRegion,
  type RawRegionSpec,
  readRawLayoutFile,
  resolveRawLayout,
  type TagFileLayout,
} from './backends/raw-files/raw-layout.js';
// Backends: the simulated kernel and raw RAM/tag files ('vmsnap/kvm' has the real KVM).
export {
  SimulatedVm,
  SimulatedVmFactory,
  type SimulatedVmFactoryOptions,
  type SimulatedVmOptions,
} from './backends/simulated/simulated-vm.js';
// Errors and JSON.
export * from './errors.js';
// Forensics on tag state, and ELF cores.
export { type IpaRange, parseIpaRange } from './forensics/addresses.js';
export { type CoreExportSummary, exportCore } from './forensics/core-export.js';
export { type CoreImportOptions, type CoreImportSummary, importCore } from './forensics/core-import.js';
export { type DumpOptions, dumpGranules, formatTagLines, type GranuleLine } from './forensics/granule-dump.js';
export { GuestMemory } from './forensics/guest-memory.js';
export { checkPointer, logicalTag, type PointerCheck, untaggedAddress } from './forensics/pointer-check.js';
export {
  type AllocationRun,
  allocationRunAt,
  type PointerScanOptions,
  type PointerScanReport,
  type RegionScanCounts,
  type StalePointer,
  scanPointers,
} from './forensics/pointer-scan.js';
export { type ProcessCore, readProcessCore } from './forensics/process-core.js';
export {
  decodeProcessNotes,
  PROCESS_NOTES_BLOB,
  type ProcessNotes,
  type SignalInfo,
  type TaggedAddrCtrl,
  type ThreadNotes,
} from './forensics/process-notes.js';
export {
  type ChangedPage,
  type DiffOptions,
  diffSnapshots,
  type RegionDiff,
  type SnapshotDiff,
  type TagChangeRun,
} from './forensics/snapshot-diff.js';
export { type ShownRegister, type ShownVcpu, type SnapshotShow, showSnapshot } from './forensics/snapshot-show.js';
export { type Granule, type HalfRegime, type Stage1Regime, stage1Regime, stage1RegimeOf } from './forensics/stage1-config.js';
export { Stage1Walker, type Translation, type WalkStep } from './forensics/stage1-walk.js';
export { buildTagMap, type RegionMap, type TagMap, type TagMapOptions } from './forensics/tag-map.js';
export { renderTagMapSvg } from './forensics/tag-map-svg.js';
export {
  type PatternMatch,
  type PatternOptions,
  parseHexBytes,
  searchBytes,
  type TagRun,
  type TagRunOptions,
  tagRuns,
} from './forensics/tag-search.js';
export { type RegionTagStats, type TagStats, type TagStatsOptions, type TagStatsReport, tagStatistics } from './forensics/tag-stats.js';
export { type PhysicalPiece, VirtualAddressSpace, virtualAddressSpace } from './forensics/virtual-addresses.js';
export { type VirtualPatternMatch, type VirtualTagRun, virtualSearchBytes, virtualTagRuns } from './forensics/virtual-search.js';
export {
  DIFF_FORMAT_MINOR,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  GRANULE_SIZE,
  LIMITS,
  MAX_CHUNK_CONTENT,
  MAX_ZSTD_LEVEL,
  PAGE_SIZES,
  TAG_BITS,
} from './format/constants.js';
// The format's values and constants.
export type {
  ChangedPages,
  ChangedPagesList,
  ChangedPagesLocation,
  ChunkKind,
  ChunkList,
  ChunkLocation,
  DiffInfo,
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
export { JSON_SCHEMA_VERSION, toJsonValue } from './json.js';
export { DEFAULT_KERNEL_VERSION, formatKernelVersion, type KernelVersion } from './kernel-model/kernel-version.js';
// Live checkpoints and migration: pre-copy rounds driven by the dirty log (docs/migration.md).
export { type LiveCheckpointOptions, type LiveCheckpointSummary, liveCheckpoint } from './live/live-checkpoint.js';
export { type MigrationReceipt, receiveMigration } from './live/migration-receiver.js';
export {
  type LiveGuest,
  type PrecopyOptions,
  type PrecopySink,
  type PrecopySummary,
  precopy,
  type RoundStats,
} from './live/precopy.js';
export type { StreamLayout, StreamSlot } from './live/stream-layout.js';
export { type MigrationSummary, StreamSink, sendMigration } from './live/stream-sink.js';
// Chains of diff snapshots: open, find beside a file, merge.
export { findChain, openChain, readSnapshotIdentity, type SnapshotChain, type SnapshotIdentity } from './reader/chain.js';
export type { SnapshotEvent } from './reader/events.js';
export { type FileSnapshot, type OpenOptions, openSnapshot } from './reader/open.js';
export { type RestoredVm, type RestoreOptions, type RestoreProgress, type RestoreSummary, restoreSnapshot } from './reader/restore.js';
export { describeSnapshot, type RegionInfo, type SnapshotInfo } from './reader/snapshot-info.js';
export { DEFAULT_IDLE_TIMEOUT_MS, readSnapshotStream, type StreamReadOptions } from './reader/stream.js';
export { compareVms, type VmComparison, type VmDifference } from './validate/compare.js';
// Proof: verify a file, compare two VMs.
export { type VerifyOptions, type VerifyProblem, type VerifyReport, type VerifyStats, verifySnapshot } from './validate/verify.js';
export { VERSION } from './version.js';
export { guestTags, MAX_TAG_COPY_BYTES, readGuestTags, type TagCopier, writeGuestTags } from './vm/tag-copy.js';
// The VM interface: what the writer reads (VmSource) and restore writes (VmTarget).
export {
  type ClearDirtyLogRequest,
  type CopyMteTagsRequest,
  DIRTY_LOG_INITIALLY_SET,
  DIRTY_LOG_MANUAL_PROTECT,
  dirtyBitmapBytes,
  dirtyPages,
  ERRNO,
  type ErrnoName,
  isPageDirty,
  type MemoryBacking,
  type MemorySlot,
  type MemorySlotSpec,
  type SnapshotRequirements,
  type SourceSlot,
  TAGS_FROM_GUEST,
  TAGS_TO_GUEST,
  type Vcpu,
  type VcpuSource,
  type VcpuTarget,
  type Vm,
  type VmFactory,
  type VmSource,
  type VmTarget,
} from './vm/vm.js';
export { type WorkloadSpec, workloadAnnotations, workloadFromAnnotations } from './workload/annotations.js';
export { type MutatingGuestOptions, MutatingSimulatedGuest } from './workload/mutating-guest.js';
// The seeded workload guest of the demo and the tests.
export { createSimulatedGuest, type SimulatedGuest, type SimulatedGuestOptions } from './workload/simulated-guest.js';
export type { ChangedPageSets, DiffSnapshotOptions, ParentSnapshot } from './writer/diff.js';
export { type FlattenOptions, flattenChain } from './writer/flatten.js';
// Save, read, restore.
export { DEFAULT_CHUNK_BYTES, type SaveOptions, type SaveProgress, type SaveSummary, saveSnapshot } from './writer/save.js';
