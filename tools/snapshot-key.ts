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

/** Commands that read no snapshot file (they make their own guest, or read a core or a stream): no --key-file. */
const READ_NO_SNAPSHOT = new Set(['demo', 'run', 'migrate send', 'migrate receive', 'import core']);

function withKeyOption(command: Command, path = command.name()): void {
  const leaf = command.commands.length === 0;
  if (leaf && !READ_NO_SNAPSHOT.has(path) && !command.options.some((option) => option.long === KEY_OPTION))
    command.option(`${KEY_OPTION} <file>`, 'the key of an encrypted snapshot (32 raw bytes; see save --encrypt)');
  for (const sub of command.commands) withKeyOption(sub, `${path} ${sub.name()}`);
}

/** Gives every leaf command that reads a snapshot --key-file, and sets the readers' key from it before the command's action. */
export function registerSnapshotKey(program: Command): void {
  for (const command of program.commands) withKeyOption(command);
  program.hook('preAction', (_program, action) => {
    const keyFile = action.opts().keyFile as string | undefined;
    setDefaultSnapshotKey(keyFile ? readKeyFile(keyFile) : undefined);
  });
}
