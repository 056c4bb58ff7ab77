/**
 * `vmsnap migrate send|receive`: live migration of a running guest with its
 * MTE tags, between two processes, through a pipe or a socket. The two halves
 * live in migrate-send.ts and migrate-receive.ts; the stream is
 * docs/migration.md's.
 */
import type { Command } from 'commander';
import { registerMigrateReceive } from './migrate-receive.js';
import { registerMigrateSend } from './migrate-send.js';

export function registerMigrate(program: Command): void {
  const migrate = program
    .command('migrate')
    .description('Live-migrate a running guest with its MTE tags to another process, through a pipe, TCP or a Unix socket');
  registerMigrateSend(migrate);
  registerMigrateReceive(migrate);
}
