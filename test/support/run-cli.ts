/** Runs `vmsnap` commands in-process, as the binary would, capturing output and the exit code. */
import { Command } from 'commander';
import { vi } from 'vitest';
import { runMain } from '../../tools/cli-support.js';
import { registerCommands } from '../../tools/commands/index.js';

/** Runs `vmsnap ARGS...`; returns what it printed and its exit code. */
export async function vmsnap(...args: string[]): Promise<{ out: string; err: string; code: number }> {
  const program = new Command('vmsnap');
  // Set before the subcommands exist, so they inherit them (as `vmsnap --help` output and exits do).
  program.exitOverride().configureOutput({
    writeOut: (s) => {
      out += s;
    },
    writeErr: (s) => {
      err += s;
    },
  });
  registerCommands(program);
  let out = '';
  let err = '';
  const stdout = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  });
  const stderr = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    err += chunk.toString();
    return true;
  });
  process.exitCode = undefined;
  try {
    await runMain(program, ['node', 'vmsnap', ...args]);
  } finally {
    stdout.mockRestore();
    stderr.mockRestore();
  }
  const code = Number(process.exitCode ?? 0);
  process.exitCode = undefined;
  return { out, err, code };
}
