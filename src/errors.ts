/**
 * Every error class the library throws, in one place. All extend
 * `VmsnapError`: test `code` (stable, listed in docs/errors.md) and `kind`
 * (whose fault it is), never the class name or the message.
 */

export { RawFilesError } from './backends/raw-files/file-storage-factory.js';
export { RawLayoutError } from './backends/raw-files/raw-layout.js';
export { ReadOnlyCoreError } from './forensics/core-slot-storage.js';
export {
  AddressNotMappedError,
  ElfCoreFormatError,
  ForensicsArgumentError,
  RegionNotTaggedError,
  SnapshotMismatchError,
} from './forensics/errors.js';
export { type FaultReason, NoPageTablesError, TranslationFaultError } from './forensics/translation-errors.js';
export { ChunkDecodeError, type ChunkFaultCode } from './format/chunk.js';
export { type ErrorKind, type FormatErrorCode, type FormatErrorLocation, SnapshotFormatError, VmsnapError } from './format/errors.js';
export { ZstdFrameError } from './format/zstd.js';
export { OutputError, type OutputErrorCode } from './io/output-file.js';
export { SealedFileError, type SealedFileErrorCode } from './io/sealed-file.js';
export { MigrationStreamError, type MigrationStreamErrorCode } from './live/migration-frames.js';
export { ChainError, type ChainErrorCode } from './reader/chain.js';
export { RestoreError } from './reader/restore.js';
export { StreamIdleError } from './reader/stream.js';
export { StoreError, type StoreErrorCode } from './store/errors.js';
export { TagCopyError } from './vm/tag-copy.js';
export { type ErrnoName, VmErrnoError } from './vm/vm.js';
export { DiffSaveError } from './writer/diff.js';
export { SaveError } from './writer/save.js';
