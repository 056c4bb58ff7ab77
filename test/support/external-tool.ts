/**
 * External programs some tests need (GDB, the aarch64 assembler, the zstd
 * CLI, Debian's Python modules). On a developer's machine without one, those
 * tests skip and say what to install, so `npm ci && npm test` works anywhere;
 * CI sets VMSNAP_REQUIRE_TOOLS=1 and installs them, so there a missing tool
 * fails instead of skipping silently.
 */
import { spawnSync } from 'node:child_process';

export interface ExternalTool {
  readonly available: boolean;
  /** Skip the tests that need it: missing, and not required. */
  readonly skip: boolean;
  /** What is missing and how to install it. */
  readonly reason: string;
}

export function externalTool(name: string, probe: readonly string[], install: string): ExternalTool {
  const available = spawnSync(probe[0], probe.slice(1), { stdio: 'ignore' }).status === 0;
  const required = process.env.VMSNAP_REQUIRE_TOOLS === '1';
  return { available, skip: !available && !required, reason: `${name} is not installed: ${install}` };
}

/** A title that tells why a suite was skipped. */
export function titled(title: string, tool: ExternalTool): string {
  return tool.skip ? `${title} (skipped: ${tool.reason})` : title;
}
