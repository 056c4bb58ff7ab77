#!/usr/bin/env node
/**
 * The `vmsnap` command. This file only builds the command tree; each
 * subcommand lives in tools/commands/ and calls the library.
 */
import { Command } from 'commander';
import { VERSION } from '../src/version.js';
import { registerCommands } from './commands/index.js';
import { runMain } from './cli-support.js';

const program = new Command('vmsnap')
  .description('Snapshots of arm64 KVM guests with their MTE allocation tags')
  .version(VERSION)
  .showHelpAfterError('(run with --help for usage and examples)');

registerCommands(program);

await runMain(program, process.argv);
