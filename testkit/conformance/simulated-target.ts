/** The simulator as a conformance target, for the test suite and for `vmsnap` self-checks. */

import { SimulatedVm } from '../../src/backends/simulated/simulated-vm.js';
import type { KernelVersion } from '../../src/kernel-model/kernel-version.js';
import { SimulatedGuestAccess } from './simulated-guest-access.js';
import type { ConformanceTarget } from './types.js';

export interface SimulatedTargetOptions {
  readonly pageSize: number;
  readonly kernelVersion: KernelVersion;
}

export function simulatedConformanceTarget({ pageSize, kernelVersion }: SimulatedTargetOptions): ConformanceTarget {
  const version: [number, number] = [kernelVersion[0], kernelVersion[1]];
  return {
    name: `simulated ${pageSize / 1024} KiB pages, Linux ${version.join('.')}`,
    pageSize,
    kernelVersion: version,
    createVm: () => new SimulatedVm({ pageSize, kernelVersion: version }),
    copyMteTagsFromOtherProcess: (vm, request) => {
      if (!(vm instanceof SimulatedVm)) throw new TypeError(`${vm.backend} VM given to the simulated target`);
      // Any process id but the owner's stands for "another process".
      return vm.fromProcess(vm.owner + 1).copyMteTags(request);
    },
    guestAccess: (vm) => {
      if (!(vm instanceof SimulatedVm)) throw new TypeError(`${vm.backend} VM given to the simulated target`);
      return new SimulatedGuestAccess(vm);
    },
  };
}
