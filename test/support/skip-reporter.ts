/**
 * A vitest reporter that ends every run with what it skipped and why, so a
 * skip is never silent in the default output (the default reporter only
 * counts them). Skipped tests are grouped by their suite, whose title (or the
 * skip note) says why. Flakes (annotations of type "flake", e.g. the KVM lab
 * booting again after node died by a signal) are listed at the end too: a
 * test that passed on a second try is never hidden.
 */
import type { Reporter, TestCase } from 'vitest/node';

export default class SkipReporter implements Reporter {
  private readonly groups = new Map<string, number>();
  private readonly flakes: string[] = [];

  onTestCaseResult(test: TestCase): void {
    for (const annotation of test.annotations())
      if (annotation.type === 'flake') this.flakes.push(`  ${test.fullName}: ${annotation.message}`);
    const result = test.result();
    if (result.state !== 'skipped') return;
    const where = test.module.moduleId.replace(`${process.cwd()}/`, '');
    const what = result.note ? `${test.fullName}: ${result.note}` : test.parent.type === 'suite' ? test.parent.fullName : test.fullName;
    const key = `${where} > ${what}`;
    this.groups.set(key, (this.groups.get(key) ?? 0) + 1);
  }

  onTestRunEnd(): void {
    if (this.flakes.length) process.stdout.write(`\nflaky (passed only on a second try), and why:\n${this.flakes.join('\n')}\n`);
    if (!this.groups.size) return;
    const lines = [...this.groups].map(([key, count]) => `  ${key}${count > 1 ? ` (${count} tests)` : ''}`);
    process.stdout.write(`\nskipped, and why:\n${lines.join('\n')}\n`);
  }
}
