/**
 * A child process that issues KVM_ARM_MTE_COPY_TAGS on a VM fd it inherited
 * as fd 3, to show what the kernel answers a process that did not create the
 * VM (EIO: the VM belongs to its creator's mm). Run by kvm-conformance-target.ts
 * as `node other-process-copy-main.js '<request JSON>'`; prints one JSON line,
 * {"result": n}, {"errno": "EIO"} or {"error": "..."}.
 */

import { hostPageSize } from '../../src/backends/kvm/libc.js';
import { issueCopyMteTags } from '../../src/backends/kvm/mte-copy-ioctl.js';
import { VmErrnoError } from '../../src/vm/vm.js';
import { deserialiseCopyRequest, INHERITED_VM_FD, type OtherProcessAnswer } from './other-process-copy.js';

function answer(): OtherProcessAnswer {
  try {
    return { result: issueCopyMteTags(INHERITED_VM_FD, deserialiseCopyRequest(process.argv[2] ?? ''), hostPageSize()) };
  } catch (error) {
    if (error instanceof VmErrnoError) return { errno: error.code };
    return { error: error instanceof Error ? error.message : String(error) };
  }
}

process.stdout.write(`${JSON.stringify(answer())}\n`);
