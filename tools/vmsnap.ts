#!/usr/bin/env node
/**
 * The `vmsnap` command. This file only builds the command tree; each
 * subcommand lives in tools/commands/ and calls the library.
 */
import { Command } from 'commander';
import { VERSION } from '../src/version.js';
import { runMain } from './cli-support.js';
import { registerCommands } from './commands/index.js';

const program = new Command('vmsnap')
  .description('Snapshots of arm64 KVM guests with their MTE allocation tags')
  .version(VERSION)
  .showHelpAfterError('(run with --help for usage and examples)')
  // Set before the subcommands exist so that they inherit it: their usage errors then exit 2 through runMain, not 1 from commander.
  .exitOverride();

registerCommands(program);

await runMain(program, process.argv);
