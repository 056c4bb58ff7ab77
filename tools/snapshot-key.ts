/**
 * Encrypted snapshot files (spec/STORE.md section 8) in every command that
 * reads one: each command takes --key-file K, and the key is handed to the
 * readers before the command runs, so info, verify, restore, the tag and core
 * commands and push all read an encrypted file as they read a plain one. A
 * command given no key that meets an encrypted file says it needs one.
 */
import type { Command } from 'commander';
import { setDefaultSnapshotKey } from '../src/io/sealed-file.js';
import { readKeyFile } from '../src/store/tenant-keys.js';

const KEY_OPTION = '--key-file';

function withKeyOption(command: Command): void {
  if (command.commands.length === 0 && !command.options.some((option) => option.long === KEY_OPTION))
    command.option(`${KEY_OPTION} <file>`, 'the key of an encrypted snapshot (32 raw bytes; see save --encrypt)');
  for (const sub of command.commands) withKeyOption(sub);
}

/** Gives every leaf command --key-file, and sets the readers' key from it before the command's action. */
export function registerSnapshotKey(program: Command): void {
  for (const command of program.commands) withKeyOption(command);
  program.hook('preAction', (_program, action) => {
    const keyFile = action.opts().keyFile as string | undefined;
    setDefaultSnapshotKey(keyFile ? readKeyFile(keyFile) : undefined);
  });
}
