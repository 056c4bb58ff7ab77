/**
 * The text form of a Linux process core's notes (src/forensics/process-core.ts)
 * for `show` (everything) and `info` (the process and its signal).
 */
import type { ProcessCore } from '../../src/forensics/process-core.js';
import type { SignalInfo, ThreadNotes } from '../../src/forensics/process-notes.js';
import { hex } from '../units.js';
import { printLine } from './forensics-support.js';

function tagHex(tag: number): string {
  return `0x${tag.toString(16)}`;
}

/** "SIGSEGV (11), SEGV_MTESERR (9): synchronous tag check fault at 0x0b00... (logical tag 0xb, allocation tag 0x3)". */
export function signalText(signal: SignalInfo, allocationTag: number | null): string {
  let text = `${signal.name} (${signal.number}), ${signal.codeName} (${signal.code})`;
  if (signal.tagCheckFault === 'async') return `${text}: asynchronous tag check fault (the address is not known)`;
  if (signal.faultAddress === null) return text;
  const what = signal.tagCheckFault === 'sync' ? 'synchronous tag check fault' : 'fault';
  text += `: ${what} at 0x${signal.faultAddress.toString(16).padStart(16, '0')}`;
  const tags = [
    signal.tagCheckFault ? `logical tag ${tagHex(signal.logicalTag ?? 0)}` : '',
    allocationTag === null ? '' : `allocation tag ${tagHex(allocationTag)}`,
  ].filter(Boolean);
  return tags.length ? `${text} (${tags.join(', ')})` : text;
}

/** Tags as hex ranges: "1-f", "0,2-5", "none". */
function tagRanges(tags: readonly number[]): string {
  const ranges: string[] = [];
  for (let i = 0; i < tags.length; i++) {
    let j = i;
    while (j + 1 < tags.length && tags[j + 1] === tags[j] + 1) j++;
    ranges.push(j > i ? `${tags[i].toString(16)}-${tags[j].toString(16)}` : tags[i].toString(16));
    i = j;
  }
  return ranges.join(',') || 'none';
}

function printThread(t: ThreadNotes): void {
  const tls = t.tls === null ? '' : `: TLS ${hex(t.tls)}${t.tpidr2 === null ? '' : `, TPIDR2 ${hex(t.tpidr2)}`}`;
  printLine(`  thread ${t.pid}${t.currentSignal ? ` (signal ${t.currentSignal})` : ''}${tls}`);
  const c = t.taggedAddrCtrl;
  if (c) {
    printLine(
      `    tagged-addr-ctrl ${hex(c.raw)}: tagged addresses ${c.taggedAddresses ? 'on' : 'off'}, TCF ${c.tcf}, ` +
        `tag include mask ${hex(BigInt(c.tagIncludeMask))} (tags ${tagRanges(c.includedTags)})`,
    );
  }
  const pac = [
    t.pacMask ? `masks data ${hex(t.pacMask.data)}, insn ${hex(t.pacMask.insn)}` : '',
    t.pacEnabledKeys ? `enabled keys ${t.pacEnabledKeys.keys.join('|') || 'none'}` : '',
  ].filter(Boolean);
  if (pac.length) printLine(`    PAC ${pac.join('; ')}`);
}

/** The process and its signal, in two lines: what `info` says of a process core. */
export function printProcessSummary(core: ProcessCore): void {
  if (core.problem) {
    printLine(`process core: its kept notes cannot be read: ${core.problem}`);
    return;
  }
  const p = core.process;
  printLine(`process core: ${p ? `${p.name} (pid ${p.pid}), "${p.args}"` : 'no NT_PRPSINFO'}`);
  printLine(`  signal: ${core.signal ? signalText(core.signal, core.faultAllocationTag) : 'none'}`);
}

/** Everything the notes say: `show`. */
export function printProcessCore(core: ProcessCore): void {
  printProcessSummary(core);
  if (core.problem) return;
  const p = core.process;
  if (p) printLine(`  process: state ${p.state || '?'}, ppid ${p.ppid}, uid ${p.uid}, gid ${p.gid}`);
  for (const t of core.threads) printThread(t);
  printLine(`  auxv (${core.auxv.length}):${core.mteCapable ? ' HWCAP2_MTE set' : ' no HWCAP2_MTE'}`);
  for (const e of core.auxv) printLine(`    ${e.name.padEnd(20)} ${hex(e.value)}`);
  printLine(`  file mappings (${core.mappings.length}):`);
  for (const m of core.mappings) printLine(`    ${hex(m.start)}-${hex(m.end)} +${hex(m.fileOffset)} ${m.path}`);
  if (core.otherNotes.length)
    printLine(`  other notes: ${core.otherNotes.map((n) => `${n.name} 0x${n.type.toString(16)} (${n.bytes} bytes)`).join(', ')}`);
}
