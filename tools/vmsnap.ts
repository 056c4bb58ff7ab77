#!/usr/bin/env node
/**
 * The `vmsnap` command. This file only builds the command tree; each
 * subcommand lives in tools/commands/ and calls the library.
 */
// First: it sets V8 flags that must hold before the modules below allocate and run.
import './v8-flags.js';
// Before any thread allocates: the malloc arenas the pool threads will share.
import './malloc-arenas.js';
import { Command } from 'commander';
import { FORMAT_MAJOR, FORMAT_MINOR } from '../src/format/constants.js';
import { VERSION } from '../src/version.js';
import { runMain } from './cli-support.js';
import { registerCommandsFor } from './commands/for-argv.js';

const program = new Command('vmsnap')
  .description('Snapshots of arm64 KVM guests with their MTE allocation tags')
  // The format version too: it says which snapshots this build reads and writes.
  .version(`vmsnap ${VERSION} (format ${FORMAT_MAJOR}.${FORMAT_MINOR})`)
  .showHelpAfterError('(run with --help for usage and examples)')
  // Set before the subcommands exist so that they inherit it: their usage errors then exit 2 through runMain, not 1 from commander.
  .exitOverride();

await registerCommandsFor(program, process.argv);

await runMain(program, process.argv);
