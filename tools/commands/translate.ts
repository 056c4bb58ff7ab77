/**
 * `vmsnap translate FILE VA`: a guest virtual address through the saved
 * stage-1 page tables of a vCPU: the IPA, the half and regime, and the walk
 * (each level's table, index and descriptor), as the guest's MMU would do it.
 */
import type { Command } from 'commander';
import { parseAddress } from '../../src/forensics/addresses.js';
import { virtualAddressSpace } from '../../src/forensics/virtual-addresses.js';
import { hex } from '../units.js';
import { EXIT_CODES_HELP, examples, parseCount, printJson, printLine, withSnapshot } from './forensics-support.js';

export function registerTranslate(program: Command): void {
  program
    .command('translate')
    .description(
      "Translates a guest virtual address (tagged or not) to its IPA through a vCPU's saved TTBR0_EL1/TTBR1_EL1/TCR_EL1 " +
        'page tables (4/16/64 KiB granules, 39- to 52-bit VAs), printing every level of the walk',
    )
    .argument('<file>', 'snapshot file')
    .argument('<va>', 'virtual address, e.g. 0xffff000000123450 or a tagged 0xf5ff000000123450 (top byte ignored under TBI)')
    .option('--vcpu <id>', "whose page tables to walk (default 0): vCPUs of one guest share the kernel's tables", '0')
    .option('--json', 'machine-readable output: {schemaVersion, virtualAddress, ipa, half, granule, vaBits, mapping..., steps}')
    .addHelpText(
      'after',
      examples(['vmsnap translate guest.vmsnap 0xffff000000123450', 'vmsnap translate guest.vmsnap 0x0500aaaa00001000 --vcpu 1 --json']) +
        EXIT_CODES_HELP,
    )
    .action(async (file: string, vaText: string, options: { vcpu: string; json?: boolean }) => {
      const va = parseAddress(vaText, 'virtual address');
      await withSnapshot(file, async (reader) => {
        const space = await virtualAddressSpace(reader, parseCount(options.vcpu, '--vcpu'));
        const t = await space.translate(va);
        const region = space.memory.regionAt(t.ipa);
        if (options.json) {
          printJson({ ...t, vcpu: space.vcpu, mmuOn: space.regime.mmuOn, region: region?.name ?? null });
          return;
        }
        if (!space.regime.mmuOn) {
          printLine(`${hex(va)}: vCPU ${space.vcpu} has its MMU off (SCTLR_EL1.M = 0): the virtual address is the IPA ${hex(t.ipa)}`);
          return;
        }
        printLine(
          `${hex(va)} -> IPA ${hex(t.ipa)}${region ? ` (region ${region.name})` : ' (in no region of the snapshot)'}, ` +
            `logical tag ${hex(t.logicalTag)}`,
        );
        printLine(
          `  TTBR${t.half}_EL1, ${t.granule / 1024} KiB granule, ${t.vaBits}-bit VA; ` +
            `${t.steps.at(-1)?.kind} of ${hex(t.mappingSize)} bytes: ${hex(t.mappingVirtualStart)} -> ${hex(t.mappingIpaStart)}`,
        );
        for (const s of t.steps) {
          printLine(
            `  level ${s.level}: table ${hex(s.tableAddress)} [${s.index}] ` +
              `at ${hex(s.descriptorAddress)} = ${hex(s.descriptor)} (${s.kind})`,
          );
        }
      });
    });
}
