/**
 * The sending half of a migration: a PrecopySink that writes each round as
 * migration-stream frames (migration-frames.ts) to a pipe, socket or file,
 * waiting on backpressure so memory stays at one frame.
 */
import type { Writable } from 'node:stream';
import { encodeVcpu } from '../format/metadata.js';
import type { VcpuState } from '../format/registers.js';
import type { Vm } from '../vm/vm.js';
import {
  encodeEnd,
  encodeFrame,
  encodePages,
  encodeRound,
  encodeStreamHeader,
  type FrameTypeName,
  type PagesFrame,
} from './migration-frames.js';
import { type LiveGuest, type PrecopyOptions, type PrecopySink, type PrecopySummary, precopy } from './precopy.js';
import { encodeLayout, type StreamLayout } from './stream-layout.js';

export class StreamSink implements PrecopySink {
  private frames = 0;
  private rounds = 0;
  /** Bytes written, stream header included. */
  bytes = 0;
  /** The vCPU registers sent, once finish() ran. */
  vcpus: readonly VcpuState[] = [];

  constructor(private readonly output: Writable) {}

  async layout(layout: StreamLayout): Promise<void> {
    await this.write(encodeStreamHeader());
    await this.frame('layout', encodeLayout(layout));
  }

  async pages(frame: PagesFrame): Promise<void> {
    await this.frame('pages', encodePages(frame));
  }

  async endRound(round: number, pages: number): Promise<void> {
    this.rounds = round + 1;
    await this.frame('round', encodeRound(round, pages));
  }

  async finish(vcpus: readonly VcpuState[]): Promise<void> {
    this.vcpus = vcpus;
    for (const vcpu of vcpus) await this.frame('vcpu', encodeVcpu(vcpu));
    const frames = this.frames;
    await this.frame('end', encodeEnd({ rounds: this.rounds, vcpus: vcpus.length, frames }));
  }

  private async frame(type: FrameTypeName, payload: Uint8Array): Promise<void> {
    this.frames++;
    await this.write(encodeFrame(type, payload));
  }

  private async write(bytes: Uint8Array): Promise<void> {
    this.bytes += bytes.length;
    // A destroyed output emits no more 'close' or 'drain': waiting for them would never end.
    if (this.output.destroyed) throw this.closed();
    if (this.output.write(bytes)) return;
    if (this.output.destroyed) throw this.closed();
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error): void => {
        this.output.off('drain', onDrain);
        this.output.off('error', done);
        this.output.off('close', onClose);
        if (error) reject(error);
        else resolve();
      };
      const onDrain = (): void => done();
      const onClose = (): void => done(this.closed());
      this.output.once('drain', onDrain);
      this.output.once('error', done);
      this.output.once('close', onClose);
    });
  }

  /** Why the output cannot take more: its own error (a refusal, EPIPE), or that it closed. */
  private closed(): Error {
    return this.output.errored ?? new Error('the migration stream closed before it was written');
  }
}

export interface MigrationSummary extends PrecopySummary {
  /** Bytes of the stream, header and frame overhead included. */
  readonly streamBytes: number;
  /** The vCPU registers sent, as read at the pause. */
  readonly vcpus: readonly VcpuState[];
}

/**
 * Migrates a running VM: pre-copy rounds into `output` as a migration stream, the guest paused only for the last
 * round, then the stream ended. The source VM stays paused and intact; the caller destroys it once the destination
 * confirmed, or resumes it if the destination refused the stream.
 */
export async function sendMigration(vm: Vm, guest: LiveGuest, output: Writable, options: PrecopyOptions = {}): Promise<MigrationSummary> {
  const sink = new StreamSink(output);
  const summary = await precopy(vm, guest, sink, options);
  await new Promise<void>((resolve, reject) => output.end((error?: Error | null) => (error ? reject(error) : resolve())));
  return { ...summary, streamBytes: sink.bytes, vcpus: sink.vcpus };
}
