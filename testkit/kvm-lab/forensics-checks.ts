/**
 * Forensics against the real MMU: the MTE test guest maps a region at a
 * non-identity virtual address with its own TTBR1 tables (a 2 MiB block and
 * 512 pages in reverse order) and writes a known pattern and tags through it.
 * After a checkpoint, vmsnap walks those tables from the snapshot file and
 * must read the same bytes and tags through the same virtual addresses, and
 * translate each page where the guest's own tables put it.
 */

import { join } from 'node:path';
import { dumpGranules } from '../../src/forensics/granule-dump.js';
import { virtualAddressSpace } from '../../src/forensics/virtual-addresses.js';
import { openSnapshot } from '../../src/reader/open.js';
import { checkpointToSnapshot } from '../../src/vmm/live-checkpoint.js';
import { DEFAULT_LAYOUT, VA_REGION, vaRegionGranule, vaRegionTranslate } from '../../src/vmm/mte-guest-protocol.js';
import { type LabCheck, LabCheckFailure } from './lab-checks.js';

const hex = (value: bigint): string => `0x${value.toString(16)}`;

export const FORENSICS_CHECKS: readonly LabCheck[] = [
  {
    name: 'forensics: the VA region read from a checkpoint through the saved TTBR1 tables: every page translated, every word and tag found',
    run: async ({ factory, scratchDirectory }) => {
      const file = join(scratchDirectory, 'va-region.vmsnap');
      await checkpointToSnapshot(factory, file);
      const reader = await openSnapshot(file);
      try {
        const space = await virtualAddressSpace(reader, 0);
        for (let va = VA_REGION.va; va < VA_REGION.va + VA_REGION.size; va += VA_REGION.pageSize) {
          const walked = await space.translate(va | (0x5n << 56n)); // tagged: TBI1 ignores the top byte
          const expected = vaRegionTranslate(DEFAULT_LAYOUT, va);
          if (walked.ipa !== expected)
            throw new LabCheckFailure(`VA ${hex(va)}: vmsnap translates to ${hex(walked.ipa)}, the guest maps ${hex(expected)}`);
        }
        let granules = 0;
        for await (const line of dumpGranules(reader, VA_REGION.va, VA_REGION.size, { data: true, space })) {
          const expected = vaRegionGranule(line.address);
          const view = new DataView(line.data!.buffer, line.data!.byteOffset, 16);
          if (line.tag !== expected.tag)
            throw new LabCheckFailure(`VA ${hex(line.address)}: tag ${line.tag}, the guest stored ${expected.tag}`);
          if (view.getBigUint64(0, true) !== expected.words[0] || view.getBigUint64(8, true) !== expected.words[1])
            throw new LabCheckFailure(`VA ${hex(line.address)} (IPA ${hex(line.ipa)}): the words differ from what the guest stored`);
          granules++;
        }
        const block = await space.translate(VA_REGION.va);
        return (
          `${granules} granules read through VA ${hex(VA_REGION.va)}+${hex(VA_REGION.size)} as the guest wrote them; ` +
          `walk of the block: ${block.steps.map((s) => `L${s.level} ${s.kind}`).join(', ')}`
        );
      } finally {
        await reader.close();
      }
    },
  },
];
