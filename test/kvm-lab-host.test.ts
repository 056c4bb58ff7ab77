/**
 * The host side of the emulated-host tier that runs without QEMU: the cpio
 * writer (read back by an independent parser), the apt source parsing that
 * finds the mirror to copy, the result protocol, and the package choice.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { findDebianMirror, findDebianSecurity, parseDeb822, parseOneLine } from '../testkit/kvm-lab/host/apt-sources.js';
import { CpioWriter } from '../testkit/kvm-lab/host/cpio.js';
import { arm64NativePackages } from '../testkit/kvm-lab/host/lab-packages.js';
import { parseExitMarker } from '../testkit/kvm-lab/host/qemu-boot.js';
import { expectedLabCheckNames, labGroups } from '../testkit/kvm-lab/lab-plan.js';
import { formatCrash, formatFileLines, formatResult, parseCrashes, parseFiles, parseResults } from '../testkit/kvm-lab/lab-report.js';

const work = mkdtempSync(join(tmpdir(), 'vmsnap-lab-host-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface CpioEntry {
  name: string;
  mode: number;
  data: Buffer;
}

/** Reads a newc archive: the format as the kernel's buffer-format.rst describes it. */
function readCpio(archive: Buffer): CpioEntry[] {
  const entries: CpioEntry[] = [];
  let at = 0;
  const align = (n: number) => (n + 3) & ~3;
  for (;;) {
    expect(archive.toString('ascii', at, at + 6)).toBe('070701');
    const field = (i: number) => parseInt(archive.toString('ascii', at + 6 + 8 * i, at + 14 + 8 * i), 16);
    const [mode, size, nameSize] = [field(1), field(6), field(11)];
    const name = archive.toString('utf8', at + 110, at + 110 + nameSize - 1);
    const dataStart = align(at + 110 + nameSize);
    if (name === 'TRAILER!!!') return entries;
    entries.push({ name, mode, data: archive.subarray(dataStart, dataStart + size) });
    at = align(dataStart + size);
  }
}

describe('cpio newc writer', () => {
  test('files, symlinks and trees come back with their names, modes and bytes, parents first', () => {
    const tree = join(work, 'tree');
    mkdirSync(join(tree, 'lib'), { recursive: true });
    writeFileSync(join(tree, 'lib', 'libx.so.1'), 'elf');
    symlinkSync('libx.so.1', join(tree, 'lib', 'libx.so'));
    const path = join(work, 'test.cpio');
    const cpio = new CpioWriter(path);
    cpio.addFile('init', Buffer.from('#!/bin/sh\n'), true);
    cpio.addFile('a/b/c.txt', Buffer.from('hello'));
    cpio.addTree('usr', tree);
    cpio.finish();
    const archive = readFileSync(path);
    expect(archive.length).toBe(cpio.size);
    const entries = readCpio(archive);
    expect(entries.map((e) => e.name)).toEqual(['init', 'a', 'a/b', 'a/b/c.txt', 'usr', 'usr/lib', 'usr/lib/libx.so', 'usr/lib/libx.so.1']);
    const byName = new Map(entries.map((e) => [e.name, e]));
    expect(byName.get('init')!.mode).toBe(0o100755);
    expect(byName.get('a/b/c.txt')!.data.toString()).toBe('hello');
    expect(byName.get('a')!.mode).toBe(0o040755);
    expect(byName.get('usr/lib/libx.so')!.mode).toBe(0o120777);
    expect(byName.get('usr/lib/libx.so')!.data.toString()).toBe('libx.so.1');
  });

  test('names outside the archive are refused', () => {
    const cpio = new CpioWriter(join(work, 'bad.cpio'));
    expect(() => cpio.addFile('../etc/passwd', Buffer.alloc(0))).toThrow(RangeError);
    cpio.finish();
  });
});

describe('apt sources', () => {
  test('deb822: the plain release entry, with its keyring; disabled and security entries are passed over', () => {
    const text = [
      'Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main',
      'Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /keys/debian.gpg',
    ].join('\n\n');
    const entries = parseDeb822(text);
    expect(entries).toHaveLength(2);
    const dir = join(work, 'apt822');
    mkdirSync(join(dir, 'sources.list.d'), { recursive: true });
    writeFileSync(join(dir, 'sources.list.d', 'debian.sources'), text);
    writeFileSync(
      join(dir, 'sources.list.d', 'other.sources'),
      'Enabled: no\nTypes: deb\nURIs: http://other.example/x\nSuites: bookworm\nComponents: main\n',
    );
    expect(findDebianMirror(dir)).toEqual({ uri: 'http://mirror.example/debian', signedBy: '/keys/debian.gpg' });
  });

  test('one-line lists: options in brackets, comments ignored, default keyring', () => {
    const entries = parseOneLine(
      '# deb http://old.example/debian buster main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ trixie main contrib\n',
    );
    expect(entries).toEqual([
      { types: ['deb'], uris: ['http://mirror.example/debian/'], suites: ['trixie'], components: ['main', 'contrib'], signedBy: '/k.gpg' },
    ]);
    const dir = join(work, 'aptlist');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'sources.list'), 'deb http://mirror.example/debian/ bookworm main\n');
    expect(findDebianMirror(dir)).toEqual({
      uri: 'http://mirror.example/debian',
      signedBy: '/usr/share/keyrings/debian-archive-keyring.gpg',
    });
  });

  test("security updates: the machine's own security entry, else the mirror's -security sibling", () => {
    const mirror = { uri: 'http://mirror.example/debian', signedBy: '/keys/debian.gpg' };
    const dir = join(work, 'aptsecurity');
    mkdirSync(join(dir, 'sources.list.d'), { recursive: true });
    expect(findDebianSecurity(mirror, 'bookworm-security', dir)).toEqual({
      uri: 'http://mirror.example/debian-security',
      signedBy: '/keys/debian.gpg',
    });
    writeFileSync(
      join(dir, 'sources.list.d', 'debian.sources'),
      'Types: deb\nURIs: http://security.example/debian-security/\nSuites: bookworm-security\nComponents: main\nSigned-By: /k.gpg\n',
    );
    expect(findDebianSecurity(mirror, 'bookworm-security', dir)).toEqual({
      uri: 'http://security.example/debian-security',
      signedBy: '/k.gpg',
    });
  });

  test('no Debian release entry: null', () => {
    const dir = join(work, 'aptnone');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'sources.list'), 'deb http://mirror.example/debian bookworm-security main\n');
    expect(findDebianMirror(dir)).toBeNull();
  });
});

describe('lab result lines', () => {
  test("the exit marker is found even when the kernel's console output shares its line", () => {
    expect(parseExitMarker('x\nVMSNAP-LAB-EXIT 0[ 1173.061893] reboot: Power down\n')).toBe(0);
    expect(parseExitMarker('VMSNAP-LAB-EXIT 139\r\n')).toBe(139);
    expect(parseExitMarker('vmsnap lab: running x\n[ 5.0] VMSNAP-LAB-EXIT 2\n')).toBe(2);
    expect(parseExitMarker('no marker')).toBeNull();
  });

  test('survive kernel messages and carriage returns around them; a broken line is dropped', () => {
    const result = { name: 'conformance: round-trip', outcome: 'pass' as const, detail: 'ok "quoted"', ms: 12 };
    const serial = `[    1.0] kvm [1]: VHE mode initialized successfully\r\n${formatResult(result)}\r\nVMSNAP-LAB-RESULT {"name":"cut\n`;
    expect(parseResults(serial)).toEqual([result]);
  });

  test('a file handed over comes back whole through kernel messages; a missing part or a wrong digest is named', () => {
    const bytes = new Uint8Array(200_000).map((_, i) => (i * 31) ^ (i >> 7));
    const lines = formatFileLines('a.core', bytes);
    expect(lines.length).toBeGreaterThan(1);
    const serial = lines.map((line, i) => `[ ${i}.0] kvm: noise\r\n${line}\r\n`).join('');
    const { files, broken } = parseFiles(serial);
    expect(broken.size).toBe(0);
    expect(new Uint8Array(files.get('a.core')!)).toEqual(bytes);
    expect(parseFiles(lines.slice(1).join('\n')).broken.get('a.core')).toBe(`${lines.length - 1} of ${lines.length} parts arrived`);
    const forged = lines.map((line) => line.replace(/"sha256":"[0-9a-f]{4}/, '"sha256":"0000'));
    expect(parseFiles(forged.join('\n')).broken.get('a.core')).toBe('its SHA-256 does not match');
  });

  test('a crashed group is its own line, apart from the results; every check belongs to exactly one group', () => {
    const crash = { group: 'guest', signal: 'SIGSEGV', attempt: 1, lastCheck: 'guest: x', kernelLog: ['node[80]: unhandled exception'] };
    const result = { name: 'guest: x', outcome: 'pass' as const, detail: 'ok', ms: 3 };
    const serial = `${formatCrash(crash)}\r\n[ 9.0] reboot\n${formatResult(result)}\n`;
    expect(parseCrashes(serial)).toEqual([crash]);
    expect(parseResults(serial)).toEqual([result]);
    const grouped = labGroups().flatMap((group) => group.checks.map((check) => check.name));
    expect(grouped).toEqual(expectedLabCheckNames());
    expect(new Set(labGroups().map((group) => group.name)).size).toBe(labGroups().length);
  });
});

test('the arm64 native packages are those whose x64 twins are installed here (koffi among them)', () => {
  const packages = arm64NativePackages(resolve(import.meta.dirname, '..')).map((p) => p.name);
  expect(packages).toContain('@koromix/koffi-linux-arm64');
  expect(packages.every((name) => name.includes('arm64') && !name.includes('musl'))).toBe(true);
});
