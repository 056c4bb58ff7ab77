/**
 * GDB (Debian's gdb-multiarch) in batch mode on a core file: the independent
 * reader the forensics tests hold vmsnap's cores to. Missing, its tests skip
 * saying so, except under VMSNAP_REQUIRE_TOOLS=1 (CI).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { externalTool } from './external-tool.js';

const GDB = process.env.VMSNAP_GDB ?? 'gdb-multiarch';
export const gdb = externalTool(GDB, [GDB, '--version'], 'apt-get install -y gdb-multiarch');
const GDB_TIMEOUT_MS = 120_000;

/** Runs GDB on `core` with `commands` from a command file; SIGKILL on timeout (GDB 13 can ignore SIGTERM). */
export function runGdb(core: string, commands: readonly string[]): Promise<string> {
  const directory = mkdtempSync(join(tmpdir(), 'vmsnap-gdb-'));
  const script = join(directory, 'commands.gdb');
  writeFileSync(script, `${commands.join('\n')}\n`);
  return new Promise<string>((resolve, reject) => {
    const child = spawn(
      GDB,
      ['-nx', '-batch', '-ex', 'set osabi GNU/Linux', '-ex', 'set pagination off', '-ex', `core-file ${core}`, '-x', script],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    // Kept apart and joined at the end: read from two pipes as they come, the two streams interleave differently
    // from run to run (an error line landed inside a value's line under load), and runs are compared word for word.
    let out = '';
    let errors = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (errors += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${GDB} did not finish in ${GDB_TIMEOUT_MS} ms; output so far:\n${(out + errors).slice(-2000)}`));
    }, GDB_TIMEOUT_MS);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', () => {
      clearTimeout(timer);
      // The command file's path is in GDB's error lines: the same words whichever file ran.
      resolve((out + errors).replaceAll(script, 'script'));
    });
  }).finally(() => rmSync(directory, { recursive: true, force: true }));
}
