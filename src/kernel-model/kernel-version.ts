/**
 * The Linux versions whose KVM MTE behaviour differs, in one table, so the
 * kernel model asks "does this kernel do X" instead of comparing numbers at
 * each use (shared/reference/kvm-mte-semantics.md, "Later kernel changes").
 */

/** [major, minor], e.g. [6, 1]. */
export type KernelVersion = readonly [major: number, minor: number];

/** The kernel measured in the reference lab (Debian bookworm's 6.1). */
export const DEFAULT_KERNEL_VERSION: KernelVersion = [6, 1];

export function kernelAtLeast(version: KernelVersion, major: number, minor: number): boolean {
  return version[0] > major || (version[0] === major && version[1] >= minor);
}

export function formatKernelVersion(version: KernelVersion): string {
  return `${version[0]}.${version[1]}`;
}

export interface KernelBehaviour {
  /** 6.2 (d77e59a8fccd): a TO_GUEST that faults mid-page clears the page's tags and marks it tagged; 6.1 leaves it half written. */
  readonly clearsTagsOnFaultedWrite: boolean;
  /** 6.2: MTE memslots may be MAP_SHARED (shmem, memfd); 6.1 rejects every VM_SHARED mapping with EINVAL. */
  readonly acceptsSharedMappingWithMte: boolean;
  /** 6.3: `length > INT_MAX` is EINVAL; before, the return value was truncated to int by kvm_vm_ioctl. */
  readonly rejectsLengthAboveIntMax: boolean;
  /** 6.12: TO_GUEST is EBUSY while any memslot logs dirty pages. */
  readonly busyWritingTagsWhileDirtyLogging: boolean;
}

export function kernelBehaviour(version: KernelVersion): KernelBehaviour {
  return {
    clearsTagsOnFaultedWrite: kernelAtLeast(version, 6, 2),
    acceptsSharedMappingWithMte: kernelAtLeast(version, 6, 2),
    rejectsLengthAboveIntMax: kernelAtLeast(version, 6, 3),
    busyWritingTagsWhileDirtyLogging: kernelAtLeast(version, 6, 12),
  };
}

export function checkKernelVersion(version: KernelVersion): KernelVersion {
  const [major, minor] = version;
  if (!Number.isInteger(major) || !Number.isInteger(minor) || major < 5 || minor < 0) {
    throw new RangeError(`kernel version ${major}.${minor}: expected [major, minor] with major >= 5`);
  }
  if (!kernelAtLeast(version, 5, 10)) {
    throw new RangeError(`kernel version ${major}.${minor}: KVM_ARM_MTE_COPY_TAGS exists from Linux 5.13`);
  }
  return version;
}
