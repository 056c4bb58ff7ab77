/**
 * Raw RAM and tag files on the command line (src/backends/raw-files):
 *
 *  - as a save source: --ram FILE [--tags FILE] [--tag-layout byte|packed]
 *    with --layout layout.json or --region name:ipa:size[:mte][:ro] ...;
 *  - as a restore target: --ram-out FILE [--tags-out FILE] [--tag-layout]
 *    [--layout-out layout.json] [--force].
 *
 * Layout mistakes are reported as the library names them ("raw layout
 * regions[1].size: ..."): a bad --region is a usage error, a bad layout file
 * or files too short for it an invalid input.
 */
import { existsSync } from 'node:fs';
import {
  openRawFiles,
  RawFilesError,
  type RawFilesVm,
  RawFilesVmFactory,
  type RawLayout,
  RawLayoutError,
  type RawRegionSpec,
  readRawLayoutFile,
  resolveRawLayout,
  type TagFileLayout,
} from '../src/backends/raw-files/raw-files-vm.js';
import { CliError } from './cli-support.js';
import { parseByteSize, parseGuestAddress } from './units.js';

export interface RawSourceOptions {
  ram?: string;
  tags?: string;
  tagLayout?: string;
  layout?: string;
  region?: string[];
  pageSize?: string;
}

export interface RawTargetOptions {
  ramOut?: string;
  tagsOut?: string;
  tagLayout?: string;
  layoutOut?: string;
  force?: boolean;
}

export function parseTagLayout(text: string | undefined): TagFileLayout | undefined {
  if (text === undefined || text === 'byte' || text === 'packed') return text;
  throw new CliError(
    `--tag-layout: "${text}" is neither byte (one tag per byte, the KVM layout) nor packed (two per byte, the ELF core layout)`,
    'usage',
  );
}

/** "ram:0x40000000:512MiB:mte", "flash0:0:4MiB:ro". */
export function parseRegionSpec(text: string, slot: number): RawRegionSpec {
  const [name, address, size, ...flags] = text.split(':');
  if (!name || address === undefined || size === undefined)
    throw new CliError(`--region: "${text}" is not name:ipa:size[:mte][:ro]`, 'usage');
  const unknown = flags.filter((flag) => flag !== 'mte' && flag !== 'ro');
  if (unknown.length) throw new CliError(`--region ${text}: unknown flag ${unknown.join(', ')} (flags: mte, ro)`, 'usage');
  return {
    name,
    slot,
    guestAddress: parseGuestAddress(address, `--region ${text}`),
    size: parseByteSize(size, `--region ${text}`),
    mte: flags.includes('mte'),
    readOnly: flags.includes('ro'),
  };
}

/** The layout from --layout or --region; `pageSize` applies to --region (a layout file names its own). */
export function rawSourceLayout(options: RawSourceOptions, pageSize: number): RawLayout {
  const tagLayout = parseTagLayout(options.tagLayout);
  const regions = options.region ?? [];
  if (options.layout && regions.length)
    throw new CliError('give the regions either with --layout FILE or with --region, not both', 'usage');
  if (options.layout) {
    try {
      const layout = readRawLayoutFile(options.layout);
      return tagLayout ? { ...layout, tagLayout } : layout;
    } catch (error) {
      if (error instanceof RawLayoutError) throw new CliError(`--layout: ${error.message}`, 'invalid-input');
      throw error;
    }
  }
  if (!regions.length)
    throw new CliError('--ram needs a layout: --layout layout.json or one --region name:ipa:size[:mte][:ro] per region', 'usage');
  try {
    return resolveRawLayout({ pageSize, tagLayout, regions: regions.map(parseRegionSpec) });
  } catch (error) {
    if (error instanceof RawLayoutError) throw new CliError(`--region: ${error.message}`, 'usage');
    throw error;
  }
}

/** Opens the dumps read-only as a VM with `layout`. */
export function openRawSource(options: RawSourceOptions & { ram: string }, layout: RawLayout): RawFilesVm {
  if (layout.regions.some((r) => r.mte) && !options.tags)
    throw new CliError('a region is marked mte but no --tags FILE was given', 'usage');
  try {
    return openRawFiles({ paths: { ram: options.ram, tags: options.tags }, layout });
  } catch (error) {
    // Files that do not match their layout (too short) are invalid input.
    if (error instanceof RawFilesError) throw new CliError(error.message, 'invalid-input');
    throw error;
  }
}

export function rawTargetFactory(options: RawTargetOptions & { ramOut: string }): RawFilesVmFactory {
  for (const path of [options.ramOut, options.tagsOut, options.layoutOut]) {
    if (path && !options.force && existsSync(path)) throw new CliError(`${path} exists; pass --force to replace it`, 'usage');
  }
  return new RawFilesVmFactory({
    paths: { ram: options.ramOut, tags: options.tagsOut },
    tagLayout: parseTagLayout(options.tagLayout) ?? 'byte',
    overwrite: options.force,
    layoutPath: options.layoutOut,
  });
}
