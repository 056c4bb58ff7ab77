/**
 * Runs the rows against a target, one at a time, and reports each as pass,
 * fail or skip. Plain TypeScript without a test framework so the compiled JS
 * runs on a bare arm64 host with only node.
 */
import { argumentRows } from './rows-arguments.js';
import { dirtyLogRows } from './rows-dirty-log.js';
import { memslotRows } from './rows-memslots.js';
import { tagRows } from './rows-tags.js';
import { vmRows } from './rows-vm.js';
import type { ConformanceResult, ConformanceRow, ConformanceTarget } from './types.js';

export const conformanceRows: ConformanceRow[] = [...argumentRows, ...memslotRows, ...tagRows, ...vmRows, ...dirtyLogRows];

export async function runConformanceRow(row: ConformanceRow, target: ConformanceTarget): Promise<ConformanceResult> {
  const started = performance.now();
  const elapsed = (): number => Math.round((performance.now() - started) * 1000) / 1000;
  if (row.appliesTo && !row.appliesTo(target)) {
    return { id: row.id, title: row.title, status: 'skip', message: `does not apply to ${target.name}`, durationMs: 0 };
  }
  try {
    await row.run(target);
    return { id: row.id, title: row.title, status: 'pass', durationMs: elapsed() };
  } catch (error) {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return { id: row.id, title: row.title, status: 'fail', message, durationMs: elapsed() };
  }
}

export async function runConformance(
  target: ConformanceTarget,
  rows: readonly ConformanceRow[] = conformanceRows,
): Promise<ConformanceResult[]> {
  const results: ConformanceResult[] = [];
  for (const row of rows) results.push(await runConformanceRow(row, target));
  return results;
}

/** One line per row and a summary, for a serial console or a CI log. */
export function formatConformanceReport(target: ConformanceTarget, results: readonly ConformanceResult[]): string {
  const lines = [`conformance: ${target.name} (page ${target.pageSize}, Linux ${target.kernelVersion.join('.')})`];
  for (const result of results) {
    const suffix = result.message ? `: ${result.message}` : '';
    lines.push(`  ${result.status.toUpperCase().padEnd(4)} ${result.id}${suffix}`);
  }
  const count = (status: string): number => results.filter((r) => r.status === status).length;
  lines.push(`  ${count('pass')} passed, ${count('fail')} failed, ${count('skip')} skipped`);
  return lines.join('\n');
}
