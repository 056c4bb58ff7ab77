// vmsnap's MTE test guest: bare-metal arm64 code that a VMM runs at EL1 on
// a KVM vCPU with MTE enabled, to prove that a checkpoint and restore keeps
// every allocation tag and every data word in place.
//
// It is position independent and is loaded at the start of a RAM memslot.
// The VMM passes its parameters in registers (src/vmm/mte-guest-protocol.ts
// holds the same numbers on the TypeScript side):
//
//   x0  fill base IPA, 16-byte aligned, in the same 1 GiB block as this code
//   x1  fill length in bytes, a multiple of 16
//   x2  seed of the xorshift64 sequence, not zero
//   x3  IPA of the report port: no memslot there, in a different 1 GiB
//       block below 4 GiB, so each store to it is a KVM_EXIT_MMIO
//
// Run:
//   1. VBAR_EL1 -> vectors that report any exception; identity-map the 1 GiB
//      block holding the code as Tagged Normal memory (MAIR attribute 0xF0)
//      and the port's block as Device-nGnRnE; TCR_EL1.TBI0 so that tagged
//      pointers translate; SCTLR_EL1.ATA so that EL1 may touch tags; MMU on.
//   2. Fill: for each 16-byte granule at address a, take the next value r of
//      the sequence; STGP stores the tag r >> 60 and the words r and r ^ a.
//   3. Report CHECKPOINT. The VMM saves the VM here, destroys it, restores
//      it and runs it again, so the next instruction runs in the new VM.
//   4. Verify: replay the sequence; LDG reads each granule's tag, LDP its
//      words; report the first mismatch, or VERIFIED.
//
// Report port layout (8-byte stores; the detail words come before STATUS):
//   +0x00 STATUS   1 CHECKPOINT, 2 VERIFIED, 3 TAG MISMATCH, 4 DATA MISMATCH, 5 EXCEPTION
//   +0x08 ADDRESS  mismatching granule (FAR_EL1 for an exception)
//   +0x10 EXPECTED expected tag or word (ELR_EL1 for an exception)
//   +0x18 ACTUAL   actual tag or word (ESR_EL1 for an exception)

	.arch	armv8.5-a+memtag
	.text

	.equ	STATUS_CHECKPOINT, 1
	.equ	STATUS_VERIFIED, 2
	.equ	STATUS_TAG_MISMATCH, 3
	.equ	STATUS_DATA_MISMATCH, 4
	.equ	STATUS_EXCEPTION, 5

	.equ	PORT_STATUS, 0x00
	.equ	PORT_ADDRESS, 0x08
	.equ	PORT_EXPECTED, 0x10
	.equ	PORT_ACTUAL, 0x18

	// L1 block descriptors (4 KiB granule, 1 GiB blocks): valid block, AF,
	// and AttrIndx 0 (Tagged Normal, inner shareable) or 1 (Device, never executable).
	.equ	BLOCK_NORMAL_TAGGED, 0x701
	.equ	BLOCK_DEVICE, 0x0060000000000405
	// MAIR_EL1: Attr0 = 0xF0 Tagged Normal write-back, Attr1 = 0x00 Device-nGnRnE.
	.equ	MAIR_VALUE, 0xf0
	// TCR_EL1: T0SZ 32 (4 GiB, walks start at level 1), non-cacheable walks
	// (the tables are written with the MMU off), TG0 4 KiB, EPD1, IPS 32 bits, TBI0.
	.equ	TCR_VALUE, (32 | (1 << 23) | (1 << 37))
	// SCTLR_EL1: the RES1 bits, M, C, I, and ATA (bit 43); TCF stays 0, so
	// tag mismatches never fault and LDG is the only check.
	.equ	SCTLR_VALUE, (0x30d00800 | 1 | (1 << 2) | (1 << 12) | (1 << 43))

_start:
	adr	x9, vectors
	msr	vbar_el1, x9

	// The level-1 table lives in the first page after the image.
	adr	x9, image_end
	add	x9, x9, #0xfff
	and	x9, x9, #~0xfff
	stp	xzr, xzr, [x9]
	stp	xzr, xzr, [x9, #16]

	adr	x10, _start
	lsr	x11, x10, #30
	lsl	x12, x11, #30
	mov	x13, #BLOCK_NORMAL_TAGGED
	orr	x12, x12, x13
	str	x12, [x9, x11, lsl #3]

	lsr	x11, x3, #30
	lsl	x12, x11, #30
	ldr	x13, =BLOCK_DEVICE
	orr	x12, x12, x13
	str	x12, [x9, x11, lsl #3]
	dsb	sy

	ldr	x10, =MAIR_VALUE
	msr	mair_el1, x10
	ldr	x10, =TCR_VALUE
	msr	tcr_el1, x10
	msr	ttbr0_el1, x9
	isb
	tlbi	vmalle1
	dsb	nsh
	isb
	ldr	x10, =SCTLR_VALUE
	msr	sctlr_el1, x10
	isb

	// Fill.
	mov	x4, x2
	mov	x5, x0
	add	x6, x0, x1
fill:
	eor	x4, x4, x4, lsl #13
	eor	x4, x4, x4, lsr #7
	eor	x4, x4, x4, lsl #17
	lsr	x7, x4, #60
	orr	x8, x5, x7, lsl #56
	eor	x9, x4, x5
	stgp	x4, x9, [x8]
	add	x5, x5, #16
	cmp	x5, x6
	b.lo	fill
	dsb	sy

	mov	x10, #STATUS_CHECKPOINT
	str	x10, [x3, #PORT_STATUS]

	// Verify, in the restored VM.
	mov	x4, x2
	mov	x5, x0
verify:
	eor	x4, x4, x4, lsl #13
	eor	x4, x4, x4, lsr #7
	eor	x4, x4, x4, lsl #17
	lsr	x7, x4, #60
	mov	x8, xzr
	ldg	x8, [x5]
	ubfx	x8, x8, #56, #4
	cmp	x8, x7
	b.ne	tag_mismatch
	ldp	x11, x12, [x5]
	cmp	x11, x4
	b.ne	data_mismatch_first
	eor	x9, x4, x5
	cmp	x12, x9
	b.ne	data_mismatch_second
	add	x5, x5, #16
	cmp	x5, x6
	b.lo	verify

	mov	x10, #STATUS_VERIFIED
	str	x10, [x3, #PORT_STATUS]
	b	halt

tag_mismatch:
	str	x5, [x3, #PORT_ADDRESS]
	str	x7, [x3, #PORT_EXPECTED]
	str	x8, [x3, #PORT_ACTUAL]
	mov	x10, #STATUS_TAG_MISMATCH
	str	x10, [x3, #PORT_STATUS]
	b	halt

data_mismatch_first:
	str	x5, [x3, #PORT_ADDRESS]
	str	x4, [x3, #PORT_EXPECTED]
	str	x11, [x3, #PORT_ACTUAL]
	b	data_mismatch_report
data_mismatch_second:
	add	x13, x5, #8
	str	x13, [x3, #PORT_ADDRESS]
	str	x9, [x3, #PORT_EXPECTED]
	str	x12, [x3, #PORT_ACTUAL]
data_mismatch_report:
	mov	x10, #STATUS_DATA_MISMATCH
	str	x10, [x3, #PORT_STATUS]
	b	halt

exception:
	mrs	x20, far_el1
	mrs	x21, elr_el1
	mrs	x22, esr_el1
	str	x20, [x3, #PORT_ADDRESS]
	str	x21, [x3, #PORT_EXPECTED]
	str	x22, [x3, #PORT_ACTUAL]
	mov	x10, #STATUS_EXCEPTION
	str	x10, [x3, #PORT_STATUS]

	// The VMM stops at the final report and never runs the vCPU again.
halt:
	b	halt

	.ltorg

	// VBAR_EL1 needs 2 KiB alignment; the image is loaded page aligned.
	.balign	2048
vectors:
	.rept	16
	b	exception
	.balign	128
	.endr
image_end:
