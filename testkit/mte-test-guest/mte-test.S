// vmsnap's MTE test guest: bare-metal arm64 code that a VMM runs at EL1 on
// a KVM vCPU with MTE enabled, to prove that a checkpoint and restore keeps
// every allocation tag and every data word in place.
//
// It is position independent and is loaded at the start of a RAM memslot.
// The VMM passes its parameters in registers (src/vmm/mte-guest-protocol.ts
// holds the same numbers on the TypeScript side):
//
//   x0  fill base IPA, 16-byte aligned, in the same 1 GiB block as this code
//   x1  fill length in bytes, a multiple of 16 (a power of two in mutator mode)
//   x2  seed of the xorshift64 sequence, not zero
//   x3  IPA of the report port: no memslot there, in a different 1 GiB
//       block below 4 GiB, so each access to it is a KVM_EXIT_MMIO
//   x4  mode: 0 checkpoint, 1 mutator
//   x5  IPA of the VA region (4 MiB, 2 MiB aligned, in RAM)
//
// Run:
//   1. VBAR_EL1 -> vectors that report any exception. Page tables in the
//      four pages after the image: TTBR0 identity-maps the 1 GiB block holding
//      the code as Tagged Normal memory (MAIR attribute 0xF0) and the port's
//      block as Device-nGnRnE; TTBR1 (4 KiB granule, 39-bit VAs) maps the VA
//      region at VA_BASE: its first 2 MiB by one level-2 block, its second
//      2 MiB by 512 level-3 page descriptors in reverse order (VA page i ->
//      IPA page 511 - i of that half). TCR_EL1.TBI0/TBI1 so that tagged
//      pointers translate; SCTLR_EL1.ATA so that EL1 may touch tags and
//      SCTLR_EL1.TCF = 1 so that a tag mismatch on a load or store is a
//      synchronous tag check fault. MMU on. (IRG is never used, so GCR_EL1
//      and RGSR_EL1 do not matter.)
//   2. Fill: for each 16-byte granule at address a, take the next value r of
//      the sequence; STGP stores the tag r >> 60 and the words r and r ^ a.
//      VA region: for each granule at VA v, STGP through v stores the tag
//      ((v >> 4) ^ (v >> 12)) & 15 and the words v and ~v.
//   3. Checkpoint mode: report CHECKPOINT. The VMM saves the VM here,
//      destroys it, restores it and runs it again, so the next instruction
//      runs in the new VM. Then verify (4).
//      Mutator mode: report PROGRESS with the step count (0), then load
//      COMMAND: a nonzero value n makes the guest do n more mutation steps and
//      report PROGRESS again; 0 makes it verify (4). Step s (from 0) stores,
//      with STGP, the tag v >> 60 and the words v and s into fill granule
//      (s * MUTATOR_P) mod count, where v = splitmix64(seed + (s + 1) * golden).
//      While the count of steps stays below the number of granules, each
//      granule is changed at most once.
//   4. Verify: every fill granule (its last mutation, else its fill value)
//      and every VA region granule through the VA: LDG reads its tag, LDP
//      through a pointer with the expected tag its words; report the first
//      mismatch, or VERIFIED.
//   5. After VERIFIED (when the VMM runs it once more): load from the first
//      fill granule through a pointer whose tag is its allocation tag + 1.
//      That must be a synchronous tag check fault (ESR_EL1.EC 0x25, DFSC
//      0b010001), which the vectors report as EXCEPTION; if the load
//      returns, report NO FAULT.
//
// Report port layout (8-byte stores; the detail words come before STATUS):
//   +0x00 STATUS   1 CHECKPOINT, 2 VERIFIED, 3 TAG MISMATCH, 4 DATA MISMATCH, 5 EXCEPTION,
//                  6 PROGRESS, 7 NO FAULT
//   +0x08 ADDRESS  mismatching granule (FAR_EL1 for an exception, the step count for PROGRESS,
//                  the pointer for NO FAULT)
//   +0x10 EXPECTED expected tag or word (ELR_EL1 for an exception)
//   +0x18 ACTUAL   actual tag or word (ESR_EL1 for an exception)
//   +0x20 COMMAND  (8-byte load, mutator mode) steps to do next, 0 to verify

	.arch	armv8.5-a+memtag
	.text

	.equ	STATUS_CHECKPOINT, 1
	.equ	STATUS_VERIFIED, 2
	.equ	STATUS_TAG_MISMATCH, 3
	.equ	STATUS_DATA_MISMATCH, 4
	.equ	STATUS_EXCEPTION, 5
	.equ	STATUS_PROGRESS, 6
	.equ	STATUS_NO_FAULT, 7

	.equ	PORT_STATUS, 0x00
	.equ	PORT_ADDRESS, 0x08
	.equ	PORT_EXPECTED, 0x10
	.equ	PORT_ACTUAL, 0x18
	.equ	PORT_COMMAND, 0x20

	.equ	MODE_MUTATOR, 1

	// Block descriptors (4 KiB granule): valid block, AF, inner shareable,
	// and AttrIndx 0 (Tagged Normal) or 1 (Device, never executable).
	.equ	BLOCK_NORMAL_TAGGED, 0x701
	.equ	BLOCK_DEVICE, 0x0060000000000405
	.equ	PAGE_NORMAL_TAGGED, 0x703
	.equ	TABLE, 0x3
	// MAIR_EL1: Attr0 = 0xF0 Tagged Normal write-back, Attr1 = 0x00 Device-nGnRnE.
	.equ	MAIR_VALUE, 0xf0
	// TCR_EL1: T0SZ 32 (4 GiB, walks start at level 1), T1SZ 25 (39-bit VAs,
	// walks start at level 1), non-cacheable walks (the tables are written
	// with the MMU off), TG0 4 KiB, TG1 4 KiB (0b10), IPS 32 bits, TBI0, TBI1.
	.equ	TCR_VALUE, (32 | (25 << 16) | (2 << 30) | (1 << 37) | (1 << 38))
	// SCTLR_EL1: the RES1 bits, M, C, I, ATA (bit 43) and TCF = 1 (bits 41:40,
	// synchronous tag check faults at EL1).
	.equ	SCTLR_VALUE, (0x30d00800 | 1 | (1 << 2) | (1 << 12) | (1 << 40) | (1 << 43))

	// The VA region: VA_BASE in the TTBR1 half, level-1 index 0x100, level-2
	// indexes 0x93 (the block) and 0x94 (the level-3 table).
	.equ	VA_BASE, 0xffffffc012600000
	.equ	VA_L1_INDEX, 0x100
	.equ	VA_L2_INDEX, 0x93
	.equ	VA_REGION_SIZE, 0x400000
	.equ	VA_BLOCK_SIZE, 0x200000

	// Mutator: granule of step s is (s * P) mod count; PINV = P^-1 mod 2^64.
	.equ	MUTATOR_P, 0x2545f4914f6cdd1d
	.equ	MUTATOR_PINV, 0x59071d96d81ecd35
	.equ	GOLDEN, 0x9e3779b97f4a7c15
	.equ	MIX1, 0xbf58476d1ce4e5b9
	.equ	MIX2, 0x94d049bb133111eb

	// Registers kept for the whole run: x0..x3 as passed, x6 fill end,
	// x24 mode, x25 VA region IPA, x19 mutation steps done.

_start:
	mov	x24, x4
	mov	x25, x5
	adr	x9, vectors
	msr	vbar_el1, x9

	// Four page-table pages after the image: TTBR0 level 1, TTBR1 level 1,
	// level 2 and level 3. Zero them.
	adr	x9, image_end
	add	x9, x9, #0xfff
	and	x9, x9, #~0xfff
	mov	x10, x9
	add	x11, x9, #0x4000
zero_tables:
	stp	xzr, xzr, [x10], #16
	cmp	x10, x11
	b.lo	zero_tables

	// TTBR0: the code's 1 GiB block and the port's.
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

	// TTBR1: level 1 -> level 2 -> a 2 MiB block and a level-3 table.
	add	x14, x9, #0x1000	// level 1
	add	x15, x9, #0x2000	// level 2
	add	x16, x9, #0x3000	// level 3
	orr	x12, x15, #TABLE
	str	x12, [x14, #(VA_L1_INDEX * 8)]
	mov	x13, #BLOCK_NORMAL_TAGGED
	orr	x12, x25, x13
	str	x12, [x15, #(VA_L2_INDEX * 8)]
	orr	x12, x16, #TABLE
	str	x12, [x15, #((VA_L2_INDEX + 1) * 8)]
	// Level 3: VA page i -> IPA page 511 - i of the region's second half.
	add	x12, x25, #VA_REGION_SIZE
	sub	x12, x12, #0x1000
	mov	x13, #PAGE_NORMAL_TAGGED
	orr	x12, x12, x13
	mov	x10, x16
	add	x11, x16, #0x1000
fill_l3:
	str	x12, [x10], #8
	sub	x12, x12, #0x1000
	cmp	x10, x11
	b.lo	fill_l3
	dsb	sy

	ldr	x10, =MAIR_VALUE
	msr	mair_el1, x10
	ldr	x10, =TCR_VALUE
	msr	tcr_el1, x10
	msr	ttbr0_el1, x9
	msr	ttbr1_el1, x14
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

	// The VA region, through the TTBR1 mapping.
	ldr	x5, =VA_BASE
	add	x10, x5, #VA_REGION_SIZE
fill_va:
	bl	va_pattern
	bic	x8, x5, #0x0f00000000000000
	orr	x8, x8, x7, lsl #56
	stgp	x13, x14, [x8]
	add	x5, x5, #16
	cmp	x5, x10
	b.lo	fill_va
	dsb	sy

	cmp	x24, #MODE_MUTATOR
	b.eq	mutator

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
	mov	x13, x4
	eor	x14, x4, x5
	bl	check_granule
	add	x5, x5, #16
	cmp	x5, x6
	b.lo	verify
	b	verify_va

	// Mutator: x19 steps done, x20 steps left in this run.
mutator:
	mov	x19, xzr
mutator_pause:
	str	x19, [x3, #PORT_ADDRESS]
	mov	x10, #STATUS_PROGRESS
	str	x10, [x3, #PORT_STATUS]
	ldr	x20, [x3, #PORT_COMMAND]
	cbz	x20, mutator_verify
	ldr	x21, =MUTATOR_P
	lsr	x22, x1, #4
	sub	x22, x22, #1		// granule index mask
mutator_step:
	mul	x11, x19, x21
	and	x11, x11, x22
	add	x5, x0, x11, lsl #4
	mov	x12, x19
	bl	mix
	lsr	x7, x13, #60
	orr	x8, x5, x7, lsl #56
	stgp	x13, x12, [x8]
	add	x19, x19, #1
	subs	x20, x20, #1
	b.ne	mutator_step
	dsb	sy
	b	mutator_pause

	// Every fill granule g: its last step s = s0 + k * count (s0 = g * PINV
	// mod count, the largest such s below the step count), else its fill value.
mutator_verify:
	ldr	x21, =MUTATOR_PINV
	lsr	x22, x1, #4
	sub	x22, x22, #1		// granule index mask
	rbit	x23, x1
	clz	x23, x23
	sub	x23, x23, #4		// log2(count)
	mov	x4, x2
	mov	x5, x0
	mov	x26, xzr		// granule index
mutator_verify_granule:
	eor	x4, x4, x4, lsl #13
	eor	x4, x4, x4, lsr #7
	eor	x4, x4, x4, lsl #17
	mul	x11, x26, x21
	and	x11, x11, x22		// s0
	cmp	x11, x19
	b.hs	mutator_verify_fill
	sub	x12, x19, #1
	sub	x12, x12, x11
	lsr	x12, x12, x23
	lsl	x12, x12, x23
	add	x12, x12, x11		// the last step that changed this granule
	bl	mix
	lsr	x7, x13, #60
	mov	x14, x12
	b	mutator_verify_check
mutator_verify_fill:
	lsr	x7, x4, #60
	mov	x13, x4
	eor	x14, x4, x5
mutator_verify_check:
	bl	check_granule
	add	x26, x26, #1
	add	x5, x5, #16
	cmp	x5, x6
	b.lo	mutator_verify_granule

verify_va:
	ldr	x5, =VA_BASE
	add	x10, x5, #VA_REGION_SIZE
verify_va_granule:
	bl	va_pattern
	bl	check_granule
	add	x5, x5, #16
	cmp	x5, x10
	b.lo	verify_va_granule

	mov	x10, #STATUS_VERIFIED
	str	x10, [x3, #PORT_STATUS]

	// The deliberate tag check fault: the first fill granule, its tag + 1.
	mov	x8, xzr
	ldg	x8, [x0]
	ubfx	x8, x8, #56, #4
	add	x8, x8, #1
	and	x8, x8, #0xf
	orr	x15, x0, x8, lsl #56
	ldr	x9, [x15]
	str	x15, [x3, #PORT_ADDRESS]
	mov	x10, #STATUS_NO_FAULT
	str	x10, [x3, #PORT_STATUS]
	b	halt

	// x13 = splitmix64(x2 + (x12 + 1) * GOLDEN); clobbers x16, x17.
mix:
	ldr	x16, =GOLDEN
	add	x17, x12, #1
	madd	x13, x17, x16, x2
	eor	x13, x13, x13, lsr #30
	ldr	x16, =MIX1
	mul	x13, x13, x16
	eor	x13, x13, x13, lsr #27
	ldr	x16, =MIX2
	mul	x13, x13, x16
	eor	x13, x13, x13, lsr #31
	ret

	// The VA region's granule at x5: tag x7, words x13 (the VA) and x14 (its NOT).
va_pattern:
	eor	x7, x5, x5, lsr #8
	ubfx	x7, x7, #4, #4
	mov	x13, x5
	mvn	x14, x5
	ret

	// Checks the granule at x5 (untagged) against tag x7 and words x13, x14;
	// returns if they match, else reports the mismatch. Clobbers x8, x11, x12, x15.
check_granule:
	bic	x15, x5, #0x0f00000000000000
	orr	x15, x15, x7, lsl #56
	mov	x8, xzr
	ldg	x8, [x15]
	ubfx	x8, x8, #56, #4
	cmp	x8, x7
	b.ne	tag_mismatch
	ldp	x11, x12, [x15]
	cmp	x11, x13
	b.ne	data_mismatch_first
	cmp	x12, x14
	b.ne	data_mismatch_second
	ret

tag_mismatch:
	str	x5, [x3, #PORT_ADDRESS]
	str	x7, [x3, #PORT_EXPECTED]
	str	x8, [x3, #PORT_ACTUAL]
	mov	x10, #STATUS_TAG_MISMATCH
	str	x10, [x3, #PORT_STATUS]
	b	halt

data_mismatch_first:
	str	x5, [x3, #PORT_ADDRESS]
	str	x13, [x3, #PORT_EXPECTED]
	str	x11, [x3, #PORT_ACTUAL]
	b	data_mismatch_report
data_mismatch_second:
	add	x11, x5, #8
	str	x11, [x3, #PORT_ADDRESS]
	str	x14, [x3, #PORT_EXPECTED]
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
