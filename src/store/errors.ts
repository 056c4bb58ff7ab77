/**
 * The chunk store's errors: one class, a stable code per fault. A store
 * that cannot be reached or written is I/O (exit 3); a manifest or chunk that
 * is missing, altered, swapped or another tenant's is invalid input (exit 1),
 * because restoring from it would hand out something that is not the snapshot.
 */
import { type ErrorKind, VmsnapError } from '../format/errors.js';

export type StoreErrorCode =
  | 'bad-store-location'
  | 'bad-snapshot-name'
  | 'bad-key-file'
  | 'store-not-found'
  | 'wrong-store-key'
  | 'snapshot-not-found'
  | 'snapshot-exists'
  | 'snapshot-has-diffs'
  | 'manifest-not-authentic'
  | 'bad-manifest'
  | 'chunk-missing'
  | 'chunk-not-authentic'
  | 'store-busy'
  | 'store-io-failed';

const KIND: Readonly<Record<StoreErrorCode, ErrorKind>> = {
  'bad-store-location': 'usage',
  'bad-snapshot-name': 'usage',
  'bad-key-file': 'usage',
  'store-not-found': 'usage',
  'wrong-store-key': 'usage',
  'snapshot-not-found': 'usage',
  'snapshot-exists': 'usage',
  'snapshot-has-diffs': 'usage',
  'manifest-not-authentic': 'invalid-input',
  'bad-manifest': 'invalid-input',
  'chunk-missing': 'invalid-input',
  'chunk-not-authentic': 'invalid-input',
  'store-busy': 'io',
  'store-io-failed': 'io',
};

export class StoreError extends VmsnapError {
  declare readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, KIND[code], message, options);
  }
}
