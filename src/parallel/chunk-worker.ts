/** Worker thread entry: runs chunk jobs posted by ChunkPool, one at a time. */
import { parentPort } from 'node:worker_threads';
import { type ChunkJob, runChunkJob, transferables } from './chunk-jobs.js';

parentPort!.on('message', async ({ id, job }: { id: number; job: ChunkJob }) => {
  try {
    const result = await runChunkJob(job);
    parentPort!.postMessage({ id, result }, transferables(result));
  } catch (error) {
    parentPort!.postMessage({ id, error: error instanceof Error ? error.message : String(error) });
  }
});
