/**
 * Registers only the command a command line names, so that `vmsnap save`
 * loads the save path and not every command's modules (the store's S3
 * client, forensics, the VMM): about 20 MiB of resident memory and a few
 * hundred milliseconds of CPU at every start, against issue 10's memory and
 * time targets. Anything else (no command, an option first, `help`, a name
 * not listed here) registers every command through index.ts, as before, so a
 * command missing from this table still works, only slower to start.
 */
import type { Command } from 'commander';
import { registerSnapshotKey } from '../snapshot-key.js';

type Loader = (program: Command) => Promise<void>;

/** Each top-level name and the modules that register it, in index.ts's order. */
export const COMMAND_LOADERS: Readonly<Record<string, Loader>> = {
  save: async (p) => (await import('./save.js')).registerSave(p),
  restore: async (p) => (await import('./restore.js')).registerRestore(p),
  info: async (p) => (await import('./info.js')).registerInfo(p),
  show: async (p) => (await import('./show.js')).registerShow(p),
  verify: async (p) => (await import('./verify.js')).registerVerify(p),
  flatten: async (p) => (await import('./flatten.js')).registerFlatten(p),
  demo: async (p) => (await import('./demo.js')).registerDemo(p),
  tags: async (p) => {
    (await import('./tags-stats.js')).registerTagsStats(p);
    (await import('./tags-dump.js')).registerTagsDump(p);
    (await import('./tags-diff.js')).registerTagsDiff(p);
    (await import('./tags-map.js')).registerTagsMap(p);
    (await import('./tags-allocs.js')).registerTagsAllocs(p);
  },
  'check-pointer': async (p) => (await import('./check-pointer.js')).registerCheckPointer(p),
  translate: async (p) => (await import('./translate.js')).registerTranslate(p),
  scan: async (p) => (await import('./scan-pointers.js')).registerScanPointers(p),
  export: async (p) => (await import('./core-export.js')).registerExportCore(p),
  import: async (p) => (await import('./core-import.js')).registerImportCore(p),
  run: async (p) => (await import('./run.js')).registerRun(p),
  migrate: async (p) => (await import('./migrate.js')).registerMigrate(p),
  push: async (p) => (await import('./store-push.js')).registerPush(p),
  pull: async (p) => (await import('./store-push.js')).registerPull(p),
  store: async (p) => (await import('./store-admin.js')).registerStore(p),
};

/** Registers what `argv` (process.argv) needs: its command alone when the table knows it, else every command. */
export async function registerCommandsFor(program: Command, argv: readonly string[]): Promise<void> {
  const name = argv[2];
  const loader = name !== undefined && Object.hasOwn(COMMAND_LOADERS, name) ? COMMAND_LOADERS[name] : undefined;
  if (!loader) return (await import('./index.js')).registerCommands(program);
  await loader(program);
  // As index.ts does last: every command takes --key-file for encrypted snapshots.
  registerSnapshotKey(program);
}
