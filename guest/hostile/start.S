// Hostile guest: arm64 Image header, entry, exception vectors.
// The VMM loads this like a Linux Image (libvmm/src/linux/image.rs) and
// enters at offset 0 in EL1h, MMU off, DAIF masked, x0 = DTB address.

	.section .head, "ax"
	.globl _start
_start:
	b	entry			// code0
	.long	0			// code1
	.quad	0			// text_offset: at the 2 MiB-aligned RAM base
	.quad	_image_size		// image_size (file + bss), from the linker script
	.quad	0xa			// flags: little-endian, 4K pages, place anywhere
	.quad	0, 0, 0			// res2-res4
	.ascii	"ARM\x64"		// magic
	.long	0			// res5

	.text
entry:
	mov	x19, x0			// DTB address
	msr	daifset, #0xf
	// FP/SIMD on (the SIMD load to the GIC distributor needs it).
	mov	x1, #(3 << 20)
	msr	cpacr_el1, x1
	isb
	adrp	x1, vectors
	add	x1, x1, :lo12:vectors
	msr	vbar_el1, x1
	isb
	adrp	x1, stack_top
	add	x1, x1, :lo12:stack_top
	mov	sp, x1
	// Clear .bss (RAM is cleared by the VMM on reset, but do not rely on it).
	adrp	x1, __bss_start
	add	x1, x1, :lo12:__bss_start
	adrp	x2, __bss_end
	add	x2, x2, :lo12:__bss_end
1:	cmp	x1, x2
	b.hs	2f
	str	xzr, [x1], #8
	b	1b
2:	mov	x0, x19
	bl	hostile_main
3:	wfi
	b	3b

// Exception entry: save x0-x30, ELR, SPSR in a 34-word frame, call
// exc_handler(kind, frame), restore (ELR possibly changed), eret.
.macro	vent kind
	.balign	0x80
	sub	sp, sp, #(34 * 8)
	stp	x0, x1, [sp, #0]
	mov	x0, #\kind
	b	exc_common
.endm

	.balign	2048
vectors:
	vent	0	// current EL, SP_EL0: sync
	vent	1	//   irq
	vent	2	//   fiq
	vent	3	//   serror
	vent	4	// current EL, SP_ELx: sync
	vent	5	//   irq
	vent	6	//   fiq
	vent	7	//   serror
	vent	8	// lower EL, AArch64
	vent	9
	vent	10
	vent	11
	vent	12	// lower EL, AArch32
	vent	13
	vent	14
	vent	15

exc_common:
	stp	x2, x3, [sp, #16]
	stp	x4, x5, [sp, #32]
	stp	x6, x7, [sp, #48]
	stp	x8, x9, [sp, #64]
	stp	x10, x11, [sp, #80]
	stp	x12, x13, [sp, #96]
	stp	x14, x15, [sp, #112]
	stp	x16, x17, [sp, #128]
	stp	x18, x19, [sp, #144]
	stp	x20, x21, [sp, #160]
	stp	x22, x23, [sp, #176]
	stp	x24, x25, [sp, #192]
	stp	x26, x27, [sp, #208]
	stp	x28, x29, [sp, #224]
	mrs	x2, elr_el1
	mrs	x3, spsr_el1
	stp	x30, x2, [sp, #240]
	str	x3, [sp, #256]
	mov	x1, sp
	bl	exc_handler
	ldp	x30, x2, [sp, #240]
	ldr	x3, [sp, #256]
	msr	elr_el1, x2
	msr	spsr_el1, x3
	ldp	x2, x3, [sp, #16]
	ldp	x4, x5, [sp, #32]
	ldp	x6, x7, [sp, #48]
	ldp	x8, x9, [sp, #64]
	ldp	x10, x11, [sp, #80]
	ldp	x12, x13, [sp, #96]
	ldp	x14, x15, [sp, #112]
	ldp	x16, x17, [sp, #128]
	ldp	x18, x19, [sp, #144]
	ldp	x20, x21, [sp, #160]
	ldp	x22, x23, [sp, #176]
	ldp	x24, x25, [sp, #192]
	ldp	x26, x27, [sp, #208]
	ldp	x28, x29, [sp, #224]
	ldp	x0, x1, [sp, #0]
	add	sp, sp, #(34 * 8)
	eret

	.bss
	.balign	16
stack:
	.space	0x10000
stack_top:

	.text
	.globl	simd_ld1, simd_st1
simd_ld1:			// a syndrome-less SIMD load (ISV = 0)
	ld1	{v0.4s}, [x0]
	ret
simd_st1:
	st1	{v0.4s}, [x0]
	ret
