/** Quantities for people, shared by the library's reports and the command line. */

/** 268435456 -> "256 MiB"; binary units, as guest memory is sized. */
export function formatBytes(bytes: bigint | number): string {
  const value = Number(bytes);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let scaled = value;
  let unit = 0;
  while (Math.abs(scaled) >= 1024 && unit < units.length - 1) {
    scaled /= 1024;
    unit++;
  }
  if (unit === 0) return `${value} B`;
  return `${scaled.toFixed(scaled >= 100 || Number.isInteger(scaled) ? 0 : 1)} ${units[unit]}`;
}
