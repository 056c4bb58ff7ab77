/**
 * The chunk store on the local directory engine (the S3 engine runs the same
 * cases in test/store-s3.test.ts, `npm run test:s3`).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { LocalEngine } from '../src/store/local-engine.js';
import { storeChainCases } from '../testkit/store/chain-cases.js';
import { storeCases } from '../testkit/store/store-cases.js';

const root = mkdtempSync(join(tmpdir(), 'vmsnap-store-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let next = 0;

storeCases('a local directory', { engine: () => new LocalEngine(join(root, `store-${next++}`)) });
storeChainCases('a local directory', { engine: () => new LocalEngine(join(root, `store-${next++}`)) });
