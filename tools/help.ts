/**
 * Help text every core command shares: the examples block and the exit codes
 * (the numbers are EXIT in cli-support.ts), and printing to standard output.
 */
import { EXIT, toJson } from './cli-support.js';

export function examples(lines: readonly string[]): string {
  return `\nExamples:\n${lines.map((line) => `  $ ${line}`).join('\n')}\n`;
}

export const EXIT_CODES_HELP = [
  '',
  'Exit codes:',
  `  ${EXIT.ok}  success`,
  `  ${EXIT.invalid}  the snapshot or input is invalid (format error, failed verification)`,
  `  ${EXIT.usage}  usage error (bad arguments)`,
  `  ${EXIT.io}  I/O or backend failure (file system, pipe, KVM)`,
  `  ${EXIT.differs}  a comparison found differences`,
  '',
  'Set VMSNAP_DEBUG=1 to print stack traces.',
].join('\n');

export function helpAfter(lines: readonly string[]): string {
  return examples(lines) + EXIT_CODES_HELP;
}

export function printLine(text = ''): void {
  process.stdout.write(`${text}\n`);
}

export function printJson(value: object): void {
  process.stdout.write(`${toJson(value)}\n`);
}
