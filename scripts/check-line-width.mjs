// Fails when a source line is wider than the formatter's width (biome.json):
// Biome wraps code but leaves long strings and comments as they are.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const width = JSON.parse(readFileSync('biome.json', 'utf8')).formatter.lineWidth;
const generated = new Set(['src/vmm/mte-test-image.ts']);
const files = execFileSync('git', ['ls-files', '*.ts', '*.mts', '*.mjs', '*.cjs'], { encoding: 'utf8' })
  .split('\n')
  .filter((f) => f && !generated.has(f));
const long = [];
for (const file of files) {
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, index) => {
      if (line.length > width) long.push(`${file}:${index + 1}: ${line.length} columns`);
    });
}
if (long.length) {
  process.stderr.write(`${long.length} lines are wider than ${width} columns:\n${long.join('\n')}\n`);
  process.exit(1);
}
