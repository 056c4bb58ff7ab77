/**
 * Finds the Debian archive this machine's apt already uses, so the lab can
 * point a private apt at bookworm and bookworm-backports on the same mirror,
 * and at bookworm-security where this machine gets it, without any host name
 * written in the repository.
 *
 * Reads deb822 files (sources.list.d/*.sources) and one-line lists
 * (sources.list, sources.list.d/*.list) and picks the first `deb` entry whose
 * suite is a plain Debian release (not -security, -updates or -backports).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface DebianMirror {
  readonly uri: string;
  readonly signedBy: string;
}

const DEFAULT_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
const RELEASE_SUITE = /^(bullseye|bookworm|trixie|forky|sid|stable|testing|unstable|oldstable)$/;

interface SourceEntry {
  types: string[];
  uris: string[];
  suites: string[];
  components: string[];
  signedBy?: string;
}

export function findDebianMirror(aptDirectory = '/etc/apt'): DebianMirror | null {
  for (const entry of readSourceEntries(aptDirectory)) {
    if (!entry.types.includes('deb') || !entry.components.includes('main')) continue;
    if (!entry.suites.some((suite) => RELEASE_SUITE.test(suite))) continue;
    const uri = entry.uris[0];
    if (uri) return { uri: uri.replace(/\/+$/, ''), signedBy: entry.signedBy ?? DEFAULT_KEYRING };
  }
  return null;
}

/**
 * Where the security suite (e.g. bookworm-security) comes from: the machine's
 * own entry for it, else the Debian layout's sibling of the mirror (the
 * archive path with "-security" appended).
 */
export function findDebianSecurity(mirror: DebianMirror, suite: string, aptDirectory = '/etc/apt'): DebianMirror {
  for (const entry of readSourceEntries(aptDirectory)) {
    if (!entry.types.includes('deb') || !entry.components.includes('main') || !entry.suites.includes(suite)) continue;
    const uri = entry.uris[0];
    if (uri) return { uri: uri.replace(/\/+$/, ''), signedBy: entry.signedBy ?? DEFAULT_KEYRING };
  }
  return { uri: `${mirror.uri}-security`, signedBy: mirror.signedBy };
}

function readSourceEntries(aptDirectory: string): SourceEntry[] {
  const entries: SourceEntry[] = [];
  const mainList = join(aptDirectory, 'sources.list');
  if (existsSync(mainList)) entries.push(...parseOneLine(readFileSync(mainList, 'utf8')));
  const parts = join(aptDirectory, 'sources.list.d');
  if (existsSync(parts)) {
    for (const name of readdirSync(parts).sort()) {
      const text = readFileSync(join(parts, name), 'utf8');
      if (name.endsWith('.sources')) entries.push(...parseDeb822(text));
      else if (name.endsWith('.list')) entries.push(...parseOneLine(text));
    }
  }
  return entries;
}

export function parseDeb822(text: string): SourceEntry[] {
  const entries: SourceEntry[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    for (const line of block.split('\n')) {
      if (line.startsWith('#')) continue;
      const match = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (match) fields.set(match[1].toLowerCase(), match[2].trim());
    }
    if (fields.get('enabled')?.toLowerCase() === 'no') continue;
    const words = (key: string) => (fields.get(key) ?? '').split(/\s+/).filter(Boolean);
    if (!fields.has('uris')) continue;
    entries.push({
      types: words('types'),
      uris: words('uris'),
      suites: words('suites'),
      components: words('components'),
      signedBy: fields.get('signed-by'),
    });
  }
  return entries;
}

export function parseOneLine(text: string): SourceEntry[] {
  const entries: SourceEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    const match = /^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
    if (!match) continue;
    const options = new Map(
      (match[2] ?? '')
        .split(/\s+/)
        .filter(Boolean)
        .map((option) => option.split('=') as [string, string]),
    );
    entries.push({
      types: [match[1]],
      uris: [match[3]],
      suites: [match[4]],
      components: match[5].split(/\s+/).filter(Boolean),
      signedBy: options.get('signed-by'),
    });
  }
  return entries;
}
