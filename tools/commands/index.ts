/** Every subcommand module registers itself on the program here, one line each. */
import type { Command } from 'commander';
import { registerSave } from './save.js';
import { registerRestore } from './restore.js';
import { registerInfo } from './info.js';
import { registerVerify } from './verify.js';
import { registerDemo } from './demo.js';
import { registerTagsStats } from './tags-stats.js';
import { registerTagsDump } from './tags-dump.js';
import { registerTagsDiff } from './tags-diff.js';
import { registerTagsMap } from './tags-map.js';
import { registerCheckPointer } from './check-pointer.js';
import { registerExportCore } from './core-export.js';
import { registerImportCore } from './core-import.js';
import { registerRun } from './run.js';

export function registerCommands(program: Command): void {
  void program;
  registerSave(program);
  registerRestore(program);
  registerInfo(program);
  registerVerify(program);
  registerDemo(program);
  registerTagsStats(program);
  registerTagsDump(program);
  registerTagsDiff(program);
  registerTagsMap(program);
  registerCheckPointer(program);
  registerExportCore(program);
  registerImportCore(program);
  registerRun(program);
}
