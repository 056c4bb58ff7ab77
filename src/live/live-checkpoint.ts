/**
 * A live checkpoint into one file: pre-copy rounds into a staging VM (any
 * `VmFactory`: the simulator in memory, raw files on disk) while the guest
 * runs, the guest paused only for the last round and its vCPU state, then the
 * staging VM saved as an ordinary full snapshot. The guest's pause is only
 * the last round; the save happens after it and does not stop the guest again.
 */
import type { VcpuState } from '../format/registers.js';
import type { Vm, VmFactory } from '../vm/vm.js';
import { type SaveOptions, type SaveSummary, saveSnapshot } from '../writer/save.js';
import type { PagesFrame } from './migration-frames.js';
import { type LiveGuest, type PrecopyOptions, type PrecopySink, type PrecopySummary, precopy } from './precopy.js';
import type { StreamLayout } from './stream-layout.js';
import { TargetApplier } from './target-applier.js';

class StagingSink implements PrecopySink {
  constructor(readonly applier: TargetApplier<Vm>) {}
  layout(layout: StreamLayout): void {
    this.applier.layout(layout);
  }
  pages(frame: PagesFrame): void {
    this.applier.pages(frame);
  }
  endRound(): void {}
  finish(vcpus: readonly VcpuState[]): void {
    this.applier.finish(vcpus);
  }
}

export interface LiveCheckpointOptions {
  /** Makes the VM the rounds are staged in; it must take the source's page size and register list. */
  readonly staging: VmFactory<Vm>;
  readonly precopy?: PrecopyOptions;
  readonly save?: SaveOptions;
}

export interface LiveCheckpointSummary {
  readonly precopy: PrecopySummary;
  readonly save: SaveSummary;
}

export async function liveCheckpoint(
  vm: Vm,
  guest: LiveGuest,
  destination: string,
  options: LiveCheckpointOptions,
): Promise<LiveCheckpointSummary> {
  const applier = new TargetApplier(options.staging);
  try {
    const summary = await precopy(vm, guest, new StagingSink(applier), options.precopy);
    const staged = applier.target;
    if (!staged) throw new Error('pre-copy finished without a layout');
    const annotations = { 'live.rounds': String(summary.rounds.length), 'live.source': vm.backend, ...options.save?.annotations };
    const save = await saveSnapshot(staged, destination, { ...options.save, annotations });
    return { precopy: summary, save };
  } finally {
    applier.abort();
  }
}
