/**
 * A writer for the cpio "newc" format the Linux kernel unpacks as an
 * initramfs (Documentation/driver-api/early-userspace/buffer-format.rst):
 *
 *   header "070701" + 13 eight-digit hex fields | name NUL, padded to 4 | data, padded to 4
 *   ... entries ... | an entry named "TRAILER!!!"
 *
 * The archive is left uncompressed: under emulation the kernel unpacks it
 * faster than it decompresses gzip. Parent directories are added on demand.
 */
import { closeSync, lstatSync, openSync, readdirSync, readFileSync, readlinkSync, writeSync } from 'node:fs';
import { join, posix } from 'node:path';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const TRAILER = 'TRAILER!!!';

export class CpioWriter {
  private readonly fd: number;
  private nextInode = 1;
  private readonly directories = new Set<string>(['.']);
  private bytesWritten = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }

  get size(): number {
    return this.bytesWritten;
  }

  addDirectory(name: string): void {
    const clean = normalise(name);
    if (this.directories.has(clean)) return;
    this.ensureParent(clean);
    this.directories.add(clean);
    this.entry(clean, S_IFDIR | 0o755, Buffer.alloc(0));
  }

  addFile(name: string, data: Uint8Array, executable = false): void {
    const clean = normalise(name);
    this.ensureParent(clean);
    this.entry(clean, S_IFREG | (executable ? 0o755 : 0o644), data);
  }

  addSymlink(name: string, target: string): void {
    const clean = normalise(name);
    this.ensureParent(clean);
    this.entry(clean, S_IFLNK | 0o777, Buffer.from(target));
  }

  /** Copies a host directory tree under `name`, keeping symlinks and executable bits; `include` filters by archive path. */
  addTree(name: string, sourceDirectory: string, include: (archivePath: string) => boolean = () => true): void {
    for (const child of readdirSync(sourceDirectory).sort()) {
      const archivePath = posix.join(normalise(name), child);
      if (!include(archivePath)) continue;
      const sourcePath = join(sourceDirectory, child);
      const stat = lstatSync(sourcePath);
      if (stat.isSymbolicLink()) this.addSymlink(archivePath, readlinkSync(sourcePath));
      else if (stat.isDirectory()) {
        this.addDirectory(archivePath);
        this.addTree(archivePath, sourcePath, include);
      } else if (stat.isFile()) this.addFile(archivePath, readFileSync(sourcePath), (stat.mode & 0o111) !== 0);
    }
  }

  finish(): void {
    this.entry(TRAILER, 0, Buffer.alloc(0), 0);
    closeSync(this.fd);
  }

  private ensureParent(name: string): void {
    const parent = posix.dirname(name);
    if (parent !== '.' && !this.directories.has(parent)) this.addDirectory(parent);
  }

  private entry(name: string, mode: number, data: Uint8Array, inode = this.nextInode++): void {
    const nameBytes = Buffer.from(`${name}\0`);
    const fields = [inode, mode, 0, 0, (mode & 0o170000) === S_IFDIR ? 2 : 1, 0, data.length, 0, 0, 0, 0, nameBytes.length, 0];
    const header = Buffer.from(`070701${fields.map((field) => field.toString(16).padStart(8, '0')).join('')}`, 'ascii');
    this.write(header);
    this.write(nameBytes);
    this.pad();
    this.write(data);
    this.pad();
  }

  private write(bytes: Uint8Array): void {
    let offset = 0;
    while (offset < bytes.length) offset += writeSync(this.fd, bytes, offset, bytes.length - offset);
    this.bytesWritten += bytes.length;
  }

  private pad(): void {
    const padding = (4 - (this.bytesWritten % 4)) % 4;
    if (padding) this.write(Buffer.alloc(padding));
  }
}

function normalise(name: string): string {
  const clean = posix.normalize(name).replace(/^\/+/, '').replace(/\/+$/, '');
  if (clean === '' || clean.startsWith('..')) throw new RangeError(`cpio entry name "${name}" is not inside the archive`);
  return clean;
}
