// A Linux arm64 process that dies on an MTE tag check fault, so that the
// kernel writes a core with its tags (PT_AARCH64_MEMTAG_MTE) and its notes
// (NT_SIGINFO with SEGV_MTESERR, NT_ARM_TLS, NT_ARM_TAGGED_ADDR_CTRL, ...).
// The lab runs it inside the emulated host and checks what vmsnap imports
// from the real kernel's core (testkit/kvm-lab/forensics-checks.ts).
//
// 1. prctl(PR_SET_TAGGED_ADDR_CTRL): tagged addresses, synchronous tag
//    checks, every tag but 0 included.
// 2. TPIDR_EL0 = TLS_VALUE.
// 3. mmap(LENGTH, PROT_READ | PROT_WRITE | PROT_MTE) and, for granule i:
//    tag (i * 7 + 3) & 15, words (address ^ WORD_KEY) and i (one STGP).
// 4. A load from granule FAULT_GRANULE through a pointer whose tag is the
//    granule's + 1: SIGSEGV, SEGV_MTESERR. The kernel dumps the core.
// Any failed system call exits with status 1 instead.
//
// No libc: a static executable entered at _start. Assemble and link with
// testkit/mte-core-process/build-mte-core-process.sh.

	.arch	armv8.5-a+memtag
	.equ	SYS_EXIT, 93
	.equ	SYS_PRCTL, 167
	.equ	SYS_MMAP, 222
	.equ	PR_SET_TAGGED_ADDR_CTRL, 55
	// PR_TAGGED_ADDR_ENABLE | PR_MTE_TCF_SYNC | (0xfffe << PR_MTE_TAG_SHIFT)
	.equ	TAGGED_ADDR_CTRL, 0x1 | 0x2 | (0xfffe << 3)
	.equ	PROT_RW_MTE, 0x1 | 0x2 | 0x20
	.equ	MAP_PRIVATE_ANONYMOUS, 0x02 | 0x20
	.equ	LENGTH, 0x10000
	.equ	FAULT_GRANULE, 5

	.text
	.global	_start
_start:
	mov	x0, #PR_SET_TAGGED_ADDR_CTRL
	ldr	x1, =TAGGED_ADDR_CTRL
	mov	x2, xzr
	mov	x3, xzr
	mov	x4, xzr
	mov	x8, #SYS_PRCTL
	svc	#0
	cbnz	x0, failed

	ldr	x9, =0x7e5700cafe0001
	msr	tpidr_el0, x9

	mov	x0, xzr
	mov	x1, #LENGTH
	mov	x2, #PROT_RW_MTE
	mov	x3, #MAP_PRIVATE_ANONYMOUS
	mov	x4, #-1
	mov	x5, xzr
	mov	x8, #SYS_MMAP
	svc	#0
	cmn	x0, #4095		// -4095..-1: an errno
	b.hs	failed

	mov	x19, x0			// the mapping
	ldr	x21, =0x5a5a0000a5a5ffff	// WORD_KEY
	mov	x20, xzr		// granule index
	mov	x22, #7
fill:
	add	x10, x19, x20, lsl #4	// the granule's address
	madd	x12, x20, x22, xzr
	add	x12, x12, #3
	and	x12, x12, #15		// its tag
	orr	x13, x10, x12, lsl #56	// a pointer with that tag
	eor	x14, x10, x21
	stgp	x14, x20, [x13]
	add	x20, x20, #1
	cmp	x20, #(LENGTH / 16)
	b.lo	fill
	dsb	sy

	// Granule FAULT_GRANULE has tag (5 * 7 + 3) & 15 = 6: load through tag 7.
	add	x10, x19, #(FAULT_GRANULE * 16)
	orr	x13, x10, #(7 << 56)
	ldr	x0, [x13]

failed:
	mov	x0, #1
	mov	x8, #SYS_EXIT
	svc	#0
	.ltorg
