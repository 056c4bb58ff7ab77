/**
 * Where `save` takes a guest from: the seeded simulated guest (--sim) or raw
 * files (--ram and friends). Each becomes a `VmSource`, so the writer never knows
 * which; the source's own description goes into the snapshot's annotations.
 */
import type { VmSource } from '../src/vm/vm.js';
import { workloadAnnotations } from '../src/workload/annotations.js';
import { GeneratedGuest } from '../src/workload/generated-guest.js';
import { CliError } from './cli-support.js';
import { openRawSource, type RawSourceOptions, rawSourceLayout } from './raw-files-options.js';
import { parsePageSize, parseSimGuest, SIM_DEFAULTS, type SimGuestOptions } from './sim-guest.js';
import { formatBytes } from './units.js';

export interface SaveSource {
  readonly vm: VmSource;
  readonly annotations: Record<string, string>;
  close(): void;
}

export interface SourceOptions extends SimGuestOptions, RawSourceOptions {
  sim?: boolean;
}

/** A source whose options are checked, not yet built or opened (generating a guest takes seconds). */
export interface PlannedSource {
  readonly pageSize: number;
  /** One line for people: "simulated guest, 512 MiB, seed 7". */
  readonly description: string;
  /** The same as data, for --json. */
  readonly details: Readonly<Record<string, unknown>>;
  /** The files it reads: the snapshot may never be written over one of them. */
  readonly inputs: readonly string[];
  /** Opens the source (raw files) or makes it (a generated guest): both take no time. */
  open(): SaveSource;
}

function simSource(options: SimGuestOptions): PlannedSource {
  const spec = parseSimGuest(options);
  return {
    pageSize: spec.pageSize,
    description: `simulated guest, ${spec.sizeMiB} MiB, seed ${spec.seed}, ${spec.pageSize}-byte pages`,
    details: { kind: 'simulated', guestBytes: BigInt(spec.sizeMiB) << 20n, seed: spec.seed, pageSize: spec.pageSize },
    inputs: [],
    // Generated page by page as the writer reads it: no memory held, no time up front.
    open: () => ({ vm: new GeneratedGuest(spec), annotations: workloadAnnotations(spec), close: () => {} }),
  };
}

function rawSource(options: RawSourceOptions & { ram: string }): PlannedSource {
  const layout = rawSourceLayout(options, parsePageSize(options.pageSize ?? SIM_DEFAULTS.pageSize));
  const bytes = layout.regions.reduce((sum, r) => sum + r.size, 0n);
  return {
    pageSize: layout.pageSize,
    description:
      `raw files ${options.ram}${options.tags ? ` + ${options.tags} (${layout.tagLayout} tags)` : ''}, ` +
      `${layout.regions.length} regions, ${formatBytes(bytes)}`,
    details: {
      kind: 'raw-files',
      ram: options.ram,
      tags: options.tags ?? null,
      tagLayout: layout.tagLayout,
      regions: layout.regions.length,
      guestBytes: bytes,
    },
    inputs: [options.ram, options.tags, options.layout].filter((path): path is string => path !== undefined),
    open() {
      const vm = openRawSource(options, layout);
      const annotations = {
        'raw.ram-file': options.ram,
        ...(options.tags ? { 'raw.tag-file': options.tags, 'raw.tag-layout': layout.tagLayout } : {}),
      };
      return { vm, annotations, close: () => vm.close() };
    },
  };
}

export function planSaveSource(options: SourceOptions): PlannedSource {
  if (options.sim && options.ram) throw new CliError('choose one source: --sim or --ram FILE', 'usage');
  if (options.sim) {
    const stray =
      (['tags', 'layout', 'tagLayout'] as const).find((key) => options[key] !== undefined) ??
      (options.region?.length ? 'region' : undefined);
    if (stray)
      throw new CliError(`--${stray.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} applies to --ram sources, not --sim`, 'usage');
    return simSource(options);
  }
  if (options.ram) {
    if (options.size !== undefined || options.seed !== undefined)
      throw new CliError('--size and --seed apply to --sim; a raw source takes its size from the layout', 'usage');
    return rawSource({ ...options, ram: options.ram });
  }
  throw new CliError('no source: give --sim (a generated guest) or --ram FILE (raw files)', 'usage');
}
