/**
 * A vitest reporter that ends every run with what it skipped and why, so a
 * skip is never silent in the default output (the default reporter only
 * counts them). Skipped tests are grouped by their suite, whose title (or the
 * skip note) says why.
 */
import type { Reporter, TestCase } from 'vitest/node';

export default class SkipReporter implements Reporter {
  private readonly groups = new Map<string, number>();

  onTestCaseResult(test: TestCase): void {
    const result = test.result();
    if (result.state !== 'skipped') return;
    const where = test.module.moduleId.replace(`${process.cwd()}/`, '');
    const what = result.note ? `${test.fullName}: ${result.note}` : test.parent.type === 'suite' ? test.parent.fullName : test.fullName;
    const key = `${where} > ${what}`;
    this.groups.set(key, (this.groups.get(key) ?? 0) + 1);
  }

  onTestRunEnd(): void {
    if (!this.groups.size) return;
    const lines = [...this.groups].map(([key, count]) => `  ${key}${count > 1 ? ` (${count} tests)` : ''}`);
    process.stdout.write(`\nskipped, and why:\n${lines.join('\n')}\n`);
  }
}
