/**
 * The conformance suite against the simulated backend, every row for each
 * kernel and page size, and proof that the suite fails wrong backends.
 */
import { describe, expect, it } from 'vitest';
import type { CopyMteTagsRequest, Vm } from '../src/vm/vm.js';
import {
  type ConformanceTarget,
  conformanceRows,
  formatConformanceReport,
  runConformance,
  runConformanceRow,
  simulatedConformanceTarget,
} from '../testkit/conformance/index.js';

const KERNELS: [number, number][] = [
  [6, 1],
  [6, 12],
];
const PAGE_SIZES = [4096, 65536];

describe.each(KERNELS.flatMap((kernelVersion) => PAGE_SIZES.map((pageSize) => ({ kernelVersion, pageSize }))))(
  'simulated KVM, Linux $kernelVersion, $pageSize-byte pages',
  ({ kernelVersion, pageSize }) => {
    const target = simulatedConformanceTarget({ pageSize, kernelVersion });
    it.each(conformanceRows.map((row) => ({ id: row.id, row })))('$id', async ({ row }) => {
      const result = await runConformanceRow(row, target);
      expect(result.message ?? '').toBe('');
      expect(result.status).toBe('pass');
    });
  },
);

describe('intermediate kernels and 16 KiB pages', () => {
  it.each([
    [6, 2],
    [6, 3],
    [6, 6],
  ] as [number, number][])('Linux %i.%i passes every row', async (major, minor) => {
    const target = simulatedConformanceTarget({ pageSize: 16384, kernelVersion: [major, minor] });
    const results = await runConformance(target);
    expect(
      results.filter((r) => r.status !== 'pass'),
      formatConformanceReport(target, results),
    ).toEqual([]);
  });
});

/** A target whose VMs answer copyMteTags through `transform`, to break one behaviour on purpose. */
function brokenTarget(
  base: ConformanceTarget,
  name: string,
  transform: (vm: Vm, request: CopyMteTagsRequest) => number,
): ConformanceTarget {
  return {
    ...base,
    name,
    createVm: () => {
      const vm = base.createVm();
      return new Proxy(vm, {
        get(target, property, receiver) {
          if (property === 'copyMteTags') return (request: CopyMteTagsRequest) => transform(target, request);
          const value = Reflect.get(target, property, receiver);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
    },
  };
}

async function failedRows(target: ConformanceTarget): Promise<string[]> {
  const results = await runConformance(target);
  return results.filter((r) => r.status === 'fail').map((r) => r.id);
}

describe('the suite catches a wrong backend', () => {
  const base = simulatedConformanceTarget({ pageSize: 4096, kernelVersion: [6, 1] });

  it('returning tag bytes instead of guest bytes fails the return-value rows', async () => {
    const target = brokenTarget(base, 'tag-bytes', (vm, request) => vm.copyMteTags(request) / 16);
    const failed = await failedRows(target);
    expect(failed).toContain('returns-guest-bytes');
    expect(failed).toContain('range-runs-past-slot-end');
    expect(failed).toContain('buffer-faults-after-first-page');
  });

  it('keeping all 8 bits of a tag fails low-nibble-only', async () => {
    const target = brokenTarget(base, 'eight-bit-tags', (vm, request) => {
      const result = vm.copyMteTags(request);
      if (request.flags === 1n && request.buffer) for (const [i, t] of request.buffer.entries()) request.buffer[i] = t ? t | 0xa0 : t;
      return result;
    });
    expect(await failedRows(target)).toContain('low-nibble-only');
  });

  it('throwing EFAULT instead of a partial count fails the partial-copy rows', async () => {
    const target = brokenTarget(base, 'no-partial', (vm, request) => {
      const result = vm.copyMteTags(request);
      if (result !== Number(request.length)) throw Object.assign(new Error('EFAULT'), { errno: 14 });
      return result;
    });
    const failed = await failedRows(target);
    expect(failed).toEqual(expect.arrayContaining(['range-runs-past-slot-end', 'buffer-faults-after-first-page', 'length-above-int-max']));
  });

  it('ignoring the reserved words fails reserved-nonzero and validation-order', async () => {
    const target = brokenTarget(base, 'ignores-reserved', (vm, request) => vm.copyMteTags({ ...request, reserved: [0n, 0n] }));
    expect(await failedRows(target)).toEqual(expect.arrayContaining(['reserved-nonzero', 'validation-order']));
  });

  it('a 6.1 simulator claiming to be 6.12 fails the version-dependent rows', async () => {
    const target: ConformanceTarget = { ...base, name: 'lying about its kernel', kernelVersion: [6, 12] };
    const failed = await failedRows(target);
    expect(failed).toEqual(
      expect.arrayContaining([
        'dirty-logging',
        'faulted-write-on-tagged-page',
        'shared-mapping-slot',
        'length-above-int-max',
        'buffer-faults-after-first-page',
        'validation-order',
      ]),
    );
    expect(failed).not.toContain('round-trip');
  });

  it('a 6.12 simulator claiming to be 6.1 fails the same rows the other way', async () => {
    const modern = simulatedConformanceTarget({ pageSize: 4096, kernelVersion: [6, 12] });
    const failed = await failedRows({ ...modern, kernelVersion: [6, 1] });
    expect(failed).toEqual(expect.arrayContaining(['dirty-logging', 'faulted-write-on-tagged-page', 'shared-mapping-slot']));
  });

  it('an other-process call that succeeds fails other-process-eio; without the hook the row is skipped', async () => {
    const permissive: ConformanceTarget = { ...base, copyMteTagsFromOtherProcess: (vm, request) => vm.copyMteTags(request) };
    expect(await failedRows(permissive)).toEqual(['other-process-eio']);
    const { copyMteTagsFromOtherProcess: _unused, ...withoutHook } = base;
    const results = await runConformance(withoutHook);
    expect(results.find((r) => r.id === 'other-process-eio')?.status).toBe('skip');
  });

  it('tag stores that leave the log clean fail dirty-log-tag-store-only; a GET that never clears fails guest-stores', async () => {
    const silentTags: ConformanceTarget = {
      ...base,
      guestAccess: (vm) => {
        const guest = base.guestAccess!(vm);
        // STG through the VMM's path (TO_GUEST of a whole page), which stage 2 never sees.
        return {
          ...guest,
          store64: guest.store64.bind(guest),
          load64: guest.load64.bind(guest),
          loadTag: guest.loadTag.bind(guest),
          storeTag: (address: bigint, tag: number) => {
            const page = address - (address % 4096n);
            const tags = new Uint8Array(256);
            vm.copyMteTags({ guestIpa: page, length: 4096n, flags: 1n, reserved: [0n, 0n], buffer: tags });
            tags[Number((address % 4096n) / 16n)] = tag;
            vm.copyMteTags({ guestIpa: page, length: 4096n, flags: 0n, reserved: [0n, 0n], buffer: tags });
          },
        };
      },
    };
    expect(await failedRows(silentTags)).toEqual(['dirty-log-tag-store-only']);
    const sticky = brokenTarget(base, 'sticky-log', (vm, request) => vm.copyMteTags(request));
    const stickyLog: ConformanceTarget = {
      ...sticky,
      createVm: () => {
        const vm = sticky.createVm();
        const get = vm.getDirtyLog.bind(vm);
        let last: Uint8Array | null = null;
        vm.getDirtyLog = (slot: number) => {
          const bits = get(slot);
          if (last && last.length === bits.length) for (let i = 0; i < bits.length; i++) bits[i] |= last[i];
          last = bits.slice();
          return bits;
        };
        return vm;
      },
    };
    expect(await failedRows(stickyLog)).toContain('dirty-log-guest-stores');
  });

  it('reports a failing row with the call and the values that differ', async () => {
    const target = brokenTarget(base, 'always-zero', () => 0);
    const results = await runConformance(target);
    const row = results.find((r) => r.id === 'returns-guest-bytes');
    expect(row?.status).toBe('fail');
    expect(row?.message).toMatch(/TO_GUEST ipa=0x40000000 length=0x3000.*expected 12288, got 0/);
    expect(formatConformanceReport(target, results)).toMatch(/FAIL returns-guest-bytes/);
  });
});
