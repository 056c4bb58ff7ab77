// vmsnap's store probe: the smallest guest that lets a VMM make a KVM guest
// store data or tags at an address it chooses, one access at a time, so that
// the conformance suite can ask the real kernel what a guest store does to
// the dirty log (testkit/conformance/rows-dirty-log.ts). It is separate from
// the MTE test guest (testkit/mte-test-guest), which fills and verifies.
//
// Position independent; loaded at the start of a memslot whose 1 GiB block
// also holds the memory it is asked to touch. Parameters:
//
//   x3  IPA of the command port: no memslot there, in a different 1 GiB
//       block below 4 GiB, so each access to it is a KVM_EXIT_MMIO
//
// Run: identity-map the code's 1 GiB block as Tagged Normal memory and the
// port's block as Device-nGnRnE (the MTE test guest's setup: MAIR 0xF0, TBI0,
// SCTLR_EL1.ATA, MMU on, TCF 0 so no tag check ever faults); then forever:
// load COMMAND, ADDRESS and VALUE from the port (the VMM answers each MMIO
// load), do the one access, and store its result to DONE.
//
// Port layout (8-byte accesses):
//   +0x00 COMMAND  load: 1 STR VALUE to ADDRESS, 2 STG tag VALUE (0..15) to the
//                  granule at ADDRESS, 3 LDR from ADDRESS, 4 LDG of ADDRESS
//   +0x08 ADDRESS  load: the address (16-byte aligned for 2 and 4)
//   +0x10 VALUE    load: the word or tag
//   +0x18 DONE     store: the word loaded (3), the tag read (4), else VALUE
//   +0x20 FAR, +0x28 ELR, +0x30 ESR: stores from the exception vector, ESR last

	.arch	armv8.5-a+memtag
	.text

	.equ	PORT_COMMAND, 0x00
	.equ	PORT_ADDRESS, 0x08
	.equ	PORT_VALUE, 0x10
	.equ	PORT_DONE, 0x18
	.equ	PORT_FAR, 0x20
	.equ	PORT_ELR, 0x28
	.equ	PORT_ESR, 0x30

	.equ	BLOCK_NORMAL_TAGGED, 0x701
	.equ	BLOCK_DEVICE, 0x0060000000000405
	.equ	MAIR_VALUE, 0xf0
	.equ	TCR_VALUE, (32 | (1 << 23) | (1 << 37))
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

command:
	ldr	x5, [x3, #PORT_COMMAND]
	ldr	x6, [x3, #PORT_ADDRESS]
	ldr	x7, [x3, #PORT_VALUE]
	cmp	x5, #1
	b.eq	store_word
	cmp	x5, #2
	b.eq	store_tag
	cmp	x5, #3
	b.eq	load_word
	cmp	x5, #4
	b.eq	load_tag
	b	done

store_word:
	str	x7, [x6]
	b	done
store_tag:
	orr	x8, x6, x7, lsl #56
	stg	x8, [x8]
	b	done
load_word:
	ldr	x7, [x6]
	b	done
load_tag:
	mov	x8, x6
	ldg	x8, [x6]
	ubfx	x7, x8, #56, #4
done:
	dsb	sy
	str	x7, [x3, #PORT_DONE]
	b	command

exception:
	mrs	x20, far_el1
	mrs	x21, elr_el1
	mrs	x22, esr_el1
	str	x20, [x3, #PORT_FAR]
	str	x21, [x3, #PORT_ELR]
	str	x22, [x3, #PORT_ESR]
halt:
	b	halt

	.ltorg

	.balign	2048
vectors:
	.rept	16
	b	exception
	.balign	128
	.endr
image_end:
