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
import { resolveOutput, TemporaryFile } from '../src/io/output-file.js';
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
  const tagged = layout.regions.some((r) => r.mte);
  if (tagged && !options.tags) throw new CliError('a region is marked mte but no --tags FILE was given', 'usage');
  if (!tagged && options.tags) {
    throw new CliError(
      '--tags was given but no region is marked mte, so no tag would be saved: mark the tagged regions ' +
        '(--region name:ipa:size:mte, or "mte": true in the layout) or leave out --tags',
      'usage',
    );
  }
  try {
    return openRawFiles({ paths: { ram: options.ram, tags: options.tags }, layout });
  } catch (error) {
    // Files that do not match their layout (a size other than the one it implies) are invalid input.
    if (error instanceof RawFilesError) throw new CliError(error.message, 'invalid-input');
    throw error;
  }
}

/** Raw files a restore writes: made under temporary names, put in place together only when all is done. */
export interface RawTargetFiles {
  readonly factory: RawFilesVmFactory;
  /** Renames every file over its target, the layout last (it describes the others). */
  commit(): void;
  /** Removes the temporary files; the targets stay as they were. */
  abort(): void;
}

/** Checks every output before anything is written: none may be an input, a directory, a FIFO, or exist without --force. */
export function rawTargetFiles(options: RawTargetOptions & { ramOut: string }, inputs: readonly string[]): RawTargetFiles {
  const named = [options.ramOut, options.tagsOut, options.layoutOut];
  // Raw files are written at offsets (sparse, region by region): standard output cannot hold them.
  if (named.includes('-')) throw new CliError('raw outputs need seekable files: - (standard output) cannot be one; name a file', 'usage');
  const targets = named.map((path) => (path === undefined ? undefined : resolveOutput(path, { force: options.force, inputs }).path));
  const present = targets.filter((path) => path !== undefined);
  if (new Set(present).size !== present.length)
    throw new CliError('--ram-out, --tags-out and --layout-out must name different files', 'usage');
  const temporaries: TemporaryFile[] = [];
  const create = (path: string | undefined) => {
    if (path === undefined) return undefined;
    const file = new TemporaryFile(path);
    temporaries.push(file);
    return file.path;
  };
  try {
    const [ram, tags, layout] = targets.map(create);
    const factory = new RawFilesVmFactory({
      paths: { ram: ram!, tags },
      tagLayout: parseTagLayout(options.tagLayout) ?? 'byte',
      overwrite: true,
      layoutPath: layout,
    });
    return {
      factory,
      commit: () => {
        for (const file of temporaries) file.commit();
      },
      abort: () => {
        for (const file of temporaries) file.abort();
      },
    };
  } catch (error) {
    for (const file of temporaries) file.abort();
    throw error;
  }
}
