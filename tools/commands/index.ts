/** Every subcommand module registers itself on the program here, one line each. */
import type { Command } from 'commander';
import { registerSnapshotKey } from '../snapshot-key.js';
import { registerCheckPointer } from './check-pointer.js';
import { registerExportCore } from './core-export.js';
import { registerImportCore } from './core-import.js';
import { registerDemo } from './demo.js';
import { registerFlatten } from './flatten.js';
import { registerInfo } from './info.js';
import { registerMigrate } from './migrate.js';
import { registerRestore } from './restore.js';
import { registerRun } from './run.js';
import { registerSave } from './save.js';
import { registerScanPointers } from './scan-pointers.js';
import { registerShow } from './show.js';
import { registerStore } from './store-admin.js';
import { registerPull, registerPush } from './store-push.js';
import { registerTagsAllocs } from './tags-allocs.js';
import { registerTagsDiff } from './tags-diff.js';
import { registerTagsDump } from './tags-dump.js';
import { registerTagsMap } from './tags-map.js';
import { registerTagsStats } from './tags-stats.js';
import { registerTranslate } from './translate.js';
import { registerVerify } from './verify.js';

export function registerCommands(program: Command): void {
  void program;
  registerSave(program);
  registerRestore(program);
  registerInfo(program);
  registerShow(program);
  registerVerify(program);
  registerFlatten(program);
  registerDemo(program);
  registerTagsStats(program);
  registerTagsDump(program);
  registerTagsDiff(program);
  registerTagsMap(program);
  registerTagsAllocs(program);
  registerCheckPointer(program);
  registerTranslate(program);
  registerScanPointers(program);
  registerExportCore(program);
  registerImportCore(program);
  registerRun(program);
  registerMigrate(program);
  registerPush(program);
  registerPull(program);
  registerStore(program);
  // Last: every command above gets --key-file for encrypted snapshots.
  registerSnapshotKey(program);
}
