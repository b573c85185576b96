/*
 * A hostile bare-metal guest for the libvmm VMMs (docs/testing.md,
 * "Hostile-guest system test"). Built twice: HOSTILE_VIRTIO=0 for
 * examples/simple (console: the passed-through PL011), HOSTILE_VIRTIO=1 for
 * examples/virtio (console and disk: the VMM's virtio-MMIO devices).
 *
 * Every boot:
 *   - before enabling anything, GICC_IAR must read spurious (1023), also
 *     once the CPU interface and the distributor are enabled with no source
 *     enabled: nothing may be left over from an earlier boot;
 *   - it learns what to do: simple mode, a character the harness types on
 *     the PL011 ('a' all hostile checks then reset, 'r' a short round then
 *     reset, 'f' all hostile checks, the interrupt checks, power off);
 *     virtio mode, a boot counter at a fixed disk sector (boot 1: 'a',
 *     boots 2-50: 'r', boot 51 and later: 'f');
 *   - before resetting, it leaves interrupts pending (timer, SGI, the
 *     PL011 or virtio-blk interrupt) that the next boot must not see.
 * It prints "HOSTILE PASS <check>" / "HOSTILE FAIL <check>: ..." lines, then
 * "HOSTILE RESULT ...". The MMU stays off: all memory is Device-nGnRnE, so
 * everything is aligned and no barriers are needed beyond the strong order.
 */
#include <stdarg.h>
#include <stdint.h>

#ifndef HOSTILE_VIRTIO
#define HOSTILE_VIRTIO 0
#endif

typedef uint64_t u64;
typedef uint32_t u32;
typedef uint16_t u16;
typedef uint8_t u8;

/* The compiler may call these even with -ffreestanding. */
void *memset(void *d, int c, unsigned long n) { u8 *p = d; while (n--) *p++ = (u8)c; return d; }
void *memcpy(void *d, const void *s, unsigned long n) { u8 *p = d; const u8 *q = s; while (n--) *p++ = *q++; return d; }

/* Guest-physical addresses (board/qemu_virt_aarch64/{simple,virtio}.dts). */
#define GICD 0x08000000UL
#define GICC 0x08010000UL
#define UART 0x09000000UL
#define RAM_BASE 0x40000000UL
#define RAM_END 0x50000000UL /* 256 MiB: system-files/simple.system, virtio.system */
#define VIO_CONSOLE 0x00130000UL
#define VIO_BLOCK 0x00150000UL
#define IRQ_VBLK (32 + 11)
#define IRQ_VCONS (32 + 10)
#define IRQ_UART 33
#define IRQ_VTIMER 27
#define SGI_TEST 5

#define GICD_CTLR 0x000
#define GICD_TYPER 0x004
#define GICD_IGROUPR 0x080
#define GICD_ISENABLER 0x100
#define GICD_ICENABLER 0x180
#define GICD_ISPENDR 0x200
#define GICD_ICPENDR 0x280
#define GICD_ISACTIVER 0x300
#define GICD_ICACTIVER 0x380
#define GICD_IPRIORITYR 0x400
#define GICD_ITARGETSR 0x800
#define GICD_ICFGR 0xC00
#define GICD_SGIR 0xF00
#define GICD_CPENDSGIR 0xF10
#define GICD_SPENDSGIR 0xF20
#define GICC_CTLR 0x00
#define GICC_PMR 0x04
#define GICC_BPR 0x08
#define GICC_IAR 0x0C
#define GICC_EOIR 0x10
#define GICC_RPR 0x14
#define GICC_HPPIR 0x18
#define GICC_APR0 0xD0

#define UART_DR 0x00
#define UART_FR 0x18
#define UART_IMSC 0x38
#define UART_MIS 0x40
#define UART_ICR 0x44
#define FR_RXFE (1u << 4)
#define FR_TXFF (1u << 5)
#define INT_RX (1u << 4)
#define INT_TX (1u << 5)
#define INT_RT (1u << 6)

/* ---- MMIO: plain LDR/STR with an immediate offset, which have a valid
 * syndrome (ISV=1), so the VMM can emulate them. ---- */
static inline u32 r32(u64 a) { u32 v; __asm__ volatile("ldr %w0, [%1]" : "=r"(v) : "r"(a) : "memory"); return v; }
static inline void w32(u64 a, u32 v) { __asm__ volatile("str %w0, [%1]" :: "r"(v), "r"(a) : "memory"); }
static inline u16 r16(u64 a) { u32 v; __asm__ volatile("ldrh %w0, [%1]" : "=r"(v) : "r"(a) : "memory"); return (u16)v; }
static inline void w16(u64 a, u16 v) { __asm__ volatile("strh %w0, [%1]" :: "r"((u32)v), "r"(a) : "memory"); }
static inline u8 r8(u64 a) { u32 v; __asm__ volatile("ldrb %w0, [%1]" : "=r"(v) : "r"(a) : "memory"); return (u8)v; }
static inline void w8(u64 a, u8 v) { __asm__ volatile("strb %w0, [%1]" :: "r"((u32)v), "r"(a) : "memory"); }
static inline u64 r64(u64 a) { u64 v; __asm__ volatile("ldr %0, [%1]" : "=r"(v) : "r"(a) : "memory"); return v; }
static inline void w64(u64 a, u64 v) { __asm__ volatile("str %0, [%1]" :: "r"(v), "r"(a) : "memory"); }

#define SYSREG_R(name) ({ u64 _v; __asm__ volatile("mrs %0, " #name : "=r"(_v)); _v; })
#define SYSREG_W(name, v) __asm__ volatile("msr " #name ", %0; isb" :: "r"((u64)(v)))

static inline void irq_on(void) { __asm__ volatile("msr daifclr, #2" ::: "memory"); }
static inline void irq_off(void) { __asm__ volatile("msr daifset, #2" ::: "memory"); }
static inline void wfi(void) { __asm__ volatile("wfi" ::: "memory"); }
static inline void dsb(void) { __asm__ volatile("dsb sy" ::: "memory"); }

static u64 now(void) { __asm__ volatile("isb"); return SYSREG_R(cntvct_el0); }
static u64 freq(void) { return SYSREG_R(cntfrq_el0); }
static u64 deadline_us(u64 us) { return now() + freq() / 1000000 * us; }
static void delay_us(u64 us) { u64 d = deadline_us(us); while (now() < d) {} }

/* ---- Exceptions (start.S calls exc_handler with the saved frame) ---- */
struct frame { u64 x[31]; u64 elr; u64 spsr; u64 pad; };

static volatile u32 n_dabt, n_iabt, n_undef, n_other, n_serror, n_spurious;
static volatile u64 last_far, last_esr, other_esr;
static volatile u32 irq_count[1024];
static volatile u32 uart_rx_char;
static volatile u32 vblk_isr;

static void irq_handler(void);

void exc_handler(u64 kind, struct frame *f)
{
	if (kind == 5 || kind == 1) { irq_handler(); return; }
	if (kind == 3 || kind == 7) { n_serror++; return; }
	if (kind == 4 || kind == 0) {
		u64 esr = SYSREG_R(esr_el1), ec = esr >> 26;
		if (ec == 0x25) { /* data abort, same EL: the VMM's injected abort */
			n_dabt++; last_far = SYSREG_R(far_el1); last_esr = esr; f->elr += 4;
			return;
		}
		if (ec == 0x21) { /* instruction abort: return to the caller */
			n_iabt++; last_far = SYSREG_R(far_el1); last_esr = esr; f->elr = f->x[30];
			return;
		}
		if (ec == 0x00) { n_undef++; last_esr = esr; f->elr += 4; goto check_elr; }
	}
	n_other++; other_esr = (kind << 56) | SYSREG_R(esr_el1);
	f->elr += 4;
check_elr:
	/* A fault reported at a PC outside RAM (the fetch test): back to the caller. */
	if (f->elr < RAM_BASE || f->elr >= RAM_END) f->elr = f->x[30];
}

/* ---- Console ---- */
#if HOSTILE_VIRTIO
static void vcons_write(const char *s, u32 n);
static int vcons_ready;
#endif
static char line[256];
static u32 line_len;

static void flush_line(void)
{
#if HOSTILE_VIRTIO
	if (vcons_ready && line_len) vcons_write(line, line_len);
#else
	for (u32 i = 0; i < line_len; i++) {
		u64 d = deadline_us(100000);
		while ((r32(UART + UART_FR) & FR_TXFF) && now() < d) {}
		w32(UART + UART_DR, (u8)line[i]);
	}
#endif
	line_len = 0;
}

static void putc_(char c)
{
	if (c == '\n') { line[line_len++] = '\r'; line[line_len++] = '\n'; flush_line(); return; }
	line[line_len++] = c;
	if (line_len >= sizeof(line) - 2) flush_line();
}

static void puts_(const char *s) { while (*s) putc_(*s++); }

static void put_num(u64 v, unsigned base, int width)
{
	char buf[24]; int n = 0;
	do { buf[n++] = "0123456789abcdef"[v % base]; v /= base; } while (v);
	while (n < width) buf[n++] = '0';
	while (n) putc_(buf[--n]);
}

/* %s %c %d %u %x (32-bit), %lu %lx %ld (64-bit); width digits for x. */
static void printf_(const char *fmt, ...)
{
	va_list ap; va_start(ap, fmt);
	for (; *fmt; fmt++) {
		if (*fmt != '%') { putc_(*fmt); continue; }
		fmt++;
		int width = 0, lng = 0;
		while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
		if (*fmt == 'l') { lng = 1; fmt++; }
		switch (*fmt) {
		case 's': puts_(va_arg(ap, const char *)); break;
		case 'c': putc_((char)va_arg(ap, int)); break;
		case 'x': put_num(lng ? va_arg(ap, u64) : va_arg(ap, u32), 16, width); break;
		case 'u': put_num(lng ? va_arg(ap, u64) : va_arg(ap, u32), 10, width); break;
		case 'd': {
			int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int32_t);
			if (v < 0) { putc_('-'); v = -v; }
			put_num((u64)v, 10, width); break;
		}
		default: putc_('%'); putc_(*fmt);
		}
	}
	va_end(ap);
}

static u32 n_checks, n_fails;
static char mode; /* 'a', 'r' or 'f' */

static void check(int ok, const char *name)
{
	n_checks++;
	if (!ok) n_fails++;
	printf_("HOSTILE %s %s\n", ok ? "PASS" : "FAIL", name);
}

static u32 rng_state = 0x2545f491;
static u32 junk(void)
{
	rng_state ^= rng_state << 13; rng_state ^= rng_state >> 17; rng_state ^= rng_state << 5;
	return rng_state;
}

/* ---- GIC ---- */
static void irq_handler(void)
{
	for (;;) {
		u32 iar = r32(GICC + GICC_IAR), id = iar & 0x3ff;
		if (id >= 1020) { n_spurious++; return; }
		irq_count[id]++;
		if (id == IRQ_VTIMER) SYSREG_W(cntv_ctl_el0, 0);
#if !HOSTILE_VIRTIO
		if (id == IRQ_UART) {
			w32(UART + UART_IMSC, 0);
			while (!(r32(UART + UART_FR) & FR_RXFE)) uart_rx_char = r32(UART + UART_DR) & 0xff;
			w32(UART + UART_ICR, 0x7ff);
		}
#else
		if (id == IRQ_VBLK) {
			u32 isr = r32(VIO_BLOCK + 0x060);
			vblk_isr |= isr;
			w32(VIO_BLOCK + 0x064, isr);
		}
		if (id == IRQ_VCONS) w32(VIO_CONSOLE + 0x064, r32(VIO_CONSOLE + 0x060));
#endif
		w32(GICC + GICC_EOIR, iar);
	}
}

static u32 gic_lines(void) { return ((r32(GICD + GICD_TYPER) & 0x1f) + 1) * 32; }

/* Reads IAR until spurious, EOIs what it got; returns how many. */
static u32 gic_drain(u32 *first)
{
	u32 n = 0;
	for (int i = 0; i < 2000; i++) {
		u32 iar = r32(GICC + GICC_IAR);
		if ((iar & 0x3ff) >= 1020) break;
		if (!n && first) *first = iar;
		n++;
		w32(GICC + GICC_EOIR, iar);
	}
	return n;
}

static u32 saved_cfg[64];

/* A sane configuration: everything disabled, inactive, not pending, group 0,
 * priority 0xa0, SPIs to CPU 0, the trigger modes saved at boot. */
static void gic_sane(void)
{
	u32 words = gic_lines() / 32;
	w32(GICD + GICD_CTLR, 0);
	for (u32 n = 0; n < words; n++) {
		w32(GICD + GICD_ICENABLER + 4 * n, ~0u);
		w32(GICD + GICD_ICPENDR + 4 * n, ~0u);
		w32(GICD + GICD_ICACTIVER + 4 * n, ~0u);
		w32(GICD + GICD_IGROUPR + 4 * n, 0);
	}
	for (u32 i = 0; i < words * 32; i += 4) {
		w32(GICD + GICD_IPRIORITYR + i, 0xa0a0a0a0);
		if (i >= 32) w32(GICD + GICD_ITARGETSR + i, 0x01010101);
	}
	for (u32 n = 2; n < words * 2 && n < 64; n++) w32(GICD + GICD_ICFGR + 4 * n, saved_cfg[n]);
	for (u32 i = 0; i < 16; i += 4) w32(GICD + GICD_CPENDSGIR + i, ~0u);
	w32(GICC + GICC_PMR, 0xff);
	w32(GICC + GICC_BPR, 0);
	w32(GICC + GICC_CTLR, 1);
	w32(GICD + GICD_CTLR, 1);
}

static void gic_enable_irq(u32 irq)
{
	w32(GICD + GICD_ISENABLER + 4 * (irq / 32), 1u << (irq % 32));
}

/* ---- Hostile accesses: each must raise exactly one injected data abort. ---- */
static u32 hostile_total, hostile_aborted, hostile_far_bad, hostile_wb_bad;

static void expect_abort(u32 before, u64 far, const char *what, u64 addr)
{
	hostile_total++;
	if (n_dabt == before + 1) {
		hostile_aborted++;
		if (far != ~0ul && last_far != far) {
			hostile_far_bad++;
			printf_("HOSTILE note: %s at %lx: FAR %lx\n", what, addr, last_far);
		}
	} else {
		printf_("HOSTILE note: %s at %lx: %u aborts (want 1), ESR %lx\n", what, addr,
			n_dabt - before, last_esr);
	}
}

#define HOSTILE(what, addr, far, stmt) do { u32 _b = n_dabt; stmt; expect_abort(_b, far, what, addr); } while (0)

static void unclaimed_one(u64 a)
{
	HOSTILE("ldrb", a, a, (void)r8(a));
	HOSTILE("ldrh", a, a, (void)r16(a));
	HOSTILE("ldr w", a, a, (void)r32(a));
	HOSTILE("ldr x", a, a, (void)r64(a));
	HOSTILE("strb", a, a, w8(a, 0x5a));
	HOSTILE("str w", a, a, w32(a, 0xdeadbeef));
	HOSTILE("str x", a, a, w64(a, 0xdeadbeefcafef00dUL));
}

void simd_ld1(u64 a); /* start.S: LD1/ST1 {v0.4s} at a */
void simd_st1(u64 a);

/* Syndrome-less: pair, writeback and SIMD accesses (ISV = 0). */
static void syndromeless_one(u64 a)
{
	u64 base;
	u32 x = 0x11111111, y = 0x22222222;
	u64 p = 0x3333, q = 0x4444;
	HOSTILE("ldp w", a, a, __asm__ volatile("ldp %w0, %w1, [%2]" : "+r"(x), "+r"(y) : "r"(a) : "memory"));
	HOSTILE("ldp x", a, a, __asm__ volatile("ldp %0, %1, [%2]" : "+r"(p), "+r"(q) : "r"(a) : "memory"));
	HOSTILE("stp w", a, a, __asm__ volatile("stp %w0, %w1, [%2]" :: "r"(x), "r"(y), "r"(a) : "memory"));
	HOSTILE("stp x", a, a, __asm__ volatile("stp %0, %1, [%2]" :: "r"(p), "r"(q), "r"(a) : "memory"));
	base = a;
	HOSTILE("ldr post-index", a, a, __asm__ volatile("ldr %w1, [%0], #4" : "+r"(base), "+r"(x) :: "memory"));
	if (base != a) { hostile_wb_bad++; printf_("HOSTILE note: post-index base written back: %lx\n", base); }
	base = a - 4;
	HOSTILE("ldr pre-index", a, a, __asm__ volatile("ldr %w1, [%0, #4]!" : "+r"(base), "+r"(x) :: "memory"));
	if (base != a - 4) { hostile_wb_bad++; printf_("HOSTILE note: pre-index base written back: %lx\n", base); }
	base = a;
	HOSTILE("str post-index", a, a, __asm__ volatile("str %w1, [%0], #8" : "+r"(base) : "r"(x) : "memory"));
	if (base != a) { hostile_wb_bad++; printf_("HOSTILE note: str post-index base written back: %lx\n", base); }
	HOSTILE("ld1 simd", a, a, simd_ld1(a));
	HOSTILE("st1 simd", a, a, simd_st1(a));
}

#if HOSTILE_VIRTIO
/* The stores of syndromeless_one only. */
static void syndromeless_stores(u64 a)
{
	u64 base;
	u32 x = 0x11111111, y = 0x22222222;
	u64 p = 0x3333, q = 0x4444;
	HOSTILE("stp w", a, a, __asm__ volatile("stp %w0, %w1, [%2]" :: "r"(x), "r"(y), "r"(a) : "memory"));
	HOSTILE("stp x", a, a, __asm__ volatile("stp %0, %1, [%2]" :: "r"(p), "r"(q), "r"(a) : "memory"));
	base = a;
	HOSTILE("str post-index", a, a, __asm__ volatile("str %w1, [%0], #8" : "+r"(base) : "r"(x) : "memory"));
	if (base != a) { hostile_wb_bad++; printf_("HOSTILE note: str post-index base written back: %lx\n", base); }
	HOSTILE("st1 simd", a, a, simd_st1(a));
}
#endif

static const u64 unclaimed_common[] = {
	0x0, 0x1000, 0x08001000, 0x08012000, 0x08020000, 0x09010000, 0x0a000000,
	0x0c000000, 0x3ffffff8, RAM_END, RAM_END + 0x1000, 0x80000000UL, 0x4010000000UL,
	0x8000000000UL, 0xfffffffff000UL,
#if HOSTILE_VIRTIO
	/* Just past the pages the devices' registers are read from (see below). */
	UART, 0x00131000, 0x00140000, 0x00151000,
#else
	VIO_CONSOLE, VIO_BLOCK,
#endif
};

static void hostile_accesses(int full)
{
	hostile_total = hostile_aborted = hostile_far_bad = hostile_wb_bad = 0;
	u32 n = sizeof(unclaimed_common) / sizeof(unclaimed_common[0]);
	for (u32 i = 0; i < n; i++)
		if (full || i % 4 == 0) unclaimed_one(unclaimed_common[i]);
#if HOSTILE_VIRTIO
	/* The virtio example maps each device's register page read-only into the guest
	 * (docs/virtio.md, "Register pages"): past a device's window in that page, loads
	 * read zero and stores still get an abort. */
	{
		static const u64 past[] = { VIO_CONSOLE + 0x200, VIO_BLOCK + 0x200, VIO_BLOCK + 0xffc };
		for (u32 i = 0; i < sizeof(past) / sizeof(past[0]); i++) {
			u64 a = past[i];
			check(r32(a) == 0 && r64(a & ~7UL) == 0, "the rest of a register page reads as zero");
			HOSTILE("strb", a, a, w8(a, 0x5a));
			HOSTILE("str w", a, a, w32(a, 0xdeadbeef));
		}
	}
#endif
	printf_("HOSTILE unclaimed: %u accesses, %u aborted, %u wrong FAR\n",
		hostile_total, hostile_aborted, hostile_far_bad);
	check(hostile_total == hostile_aborted && !hostile_far_bad, "unclaimed accesses get an injected abort");

	hostile_total = hostile_aborted = hostile_far_bad = 0;
	syndromeless_one(GICD + GICD_ISENABLER);
	if (full) {
		syndromeless_one(GICD + GICD_CTLR);
		syndromeless_one(GICD + GICD_IPRIORITYR + 0x20);
		syndromeless_one(GICD + GICD_SGIR);
		syndromeless_one(GICD + 0xff0);
		syndromeless_one(RAM_END);
#if HOSTILE_VIRTIO
		/* Register pages: syndrome-less loads read the registers (no exit at all),
		 * syndrome-less stores still get an abort. */
		syndromeless_stores(VIO_BLOCK + 0x070);
		syndromeless_stores(VIO_CONSOLE + 0x100);
		{
			u32 x = 0x11111111, y = 0x22222222;
			__asm__ volatile("ldp %w0, %w1, [%2]" : "+r"(x), "+r"(y) : "r"(VIO_BLOCK) : "memory");
			check(x == 0x74726976 && y == 2, "LDP of a register page reads MagicValue and Version");
			u64 base = VIO_BLOCK;
			x = 0;
			__asm__ volatile("ldr %w1, [%0, #8]!" : "+r"(base), "+r"(x) :: "memory");
			check(x == 2 && base == VIO_BLOCK + 8, "a pre-index load of a register page reads DeviceID");
		}
#endif
	}
	printf_("HOSTILE syndrome-less: %u accesses, %u aborted, %u wrong FAR, %u base written back\n",
		hostile_total, hostile_aborted, hostile_far_bad, hostile_wb_bad);
	check(hostile_total == hostile_aborted && !hostile_far_bad && !hostile_wb_bad,
	      "syndrome-less accesses (LDP/STP, pre/post-index, SIMD) get an injected abort");
	check(n_other == 0 && n_serror == 0 && n_undef == 0, "no unexpected exception");
	if (n_other) printf_("HOSTILE note: unexpected exception %lx\n", other_esr);
}

/* Branch to an address that is no RAM: the VMM sees an instruction abort. */
static void hostile_fetch(void)
{
	u32 before = n_iabt + n_dabt + n_undef + n_other;
	__asm__ volatile("blr %0" :: "r"(RAM_END + 0x10000) : "x30", "memory");
	u32 got = n_iabt + n_dabt + n_undef + n_other - before;
	printf_("HOSTILE fetch from %lx: %u exception(s), %u instruction aborts, ESR %lx\n",
		RAM_END + 0x10000, got, n_iabt, last_esr);
	check(got == 1 && n_iabt == 1, "instruction fetch outside RAM gets an injected abort");
}

/* ---- GIC distributor sweep ---- */
static void gicd_sweep(void)
{
	u32 before = n_dabt;
	u64 t0 = now();
	for (u32 off = 0; off < 0x1000; off += 4) {
		w32(GICD + off, junk());
		(void)r32(GICD + off);
	}
	for (u32 off = 0; off < 0x1000; off++) {
		w8(GICD + off, (u8)junk());
		(void)r8(GICD + off);
	}
	for (u32 off = 0; off < 0x1000; off += 2) {
		w16(GICD + off, (u16)junk());
		(void)r16(GICD + off);
	}
	for (u32 off = 0; off < 0x1000; off += 8) {
		w64(GICD + off, ((u64)junk() << 32) | junk());
		(void)r64(GICD + off);
	}
	/* Misaligned offsets within the page, word-sized: on Device memory
	 * these fault in the guest (alignment) before the VMM sees them, so
	 * they are left out. */
	u64 ms = (now() - t0) * 1000 / freq();
	gic_sane();
	u32 first = 0, drained = gic_drain(&first);
	delay_us(2000);
	drained += gic_drain(0);
	printf_("HOSTILE GICD sweep: 0x000-0xfff, 32/8/16/64-bit, junk values, %lu ms; %u interrupts drained after restore (first IAR %x)\n",
		ms, drained, first);
	check(n_dabt == before, "GICD sweep: emulated, no abort");
	u32 iar = r32(GICC + GICC_IAR);
	check((iar & 0x3ff) == 1023, "GICD restored: nothing pending after the drain");
	if ((iar & 0x3ff) != 1023) { printf_("HOSTILE note: IAR %x after drain\n", iar); w32(GICC + GICC_EOIR, iar); }
	u32 pend = 0, act = 0, en = 0, words = gic_lines() / 32;
	for (u32 n = 0; n < words; n++) {
		pend |= r32(GICD + GICD_ISPENDR + 4 * n);
		act |= r32(GICD + GICD_ISACTIVER + 4 * n);
		en |= r32(GICD + GICD_ISENABLER + 4 * n) & (n ? ~0u : 0xffff0000u);
	}
	printf_("HOSTILE GICD after restore: pending %x active %x enabled %x ctlr %x\n", pend, act, en,
		r32(GICD + GICD_CTLR));
	check(pend == 0 && act == 0 && en == 0 && r32(GICD + GICD_CTLR) == 1, "GICD restore reads back");
}

/* ---- PSCI / SMCCC ---- */
static u64 smc(u64 a0, u64 a1, u64 a2, u64 a3)
{
	register u64 x0 __asm__("x0") = a0, x1 __asm__("x1") = a1, x2 __asm__("x2") = a2, x3 __asm__("x3") = a3;
	__asm__ volatile("smc #0" : "+r"(x0), "+r"(x1), "+r"(x2), "+r"(x3) ::
			 "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14", "x15", "x16", "x17", "memory");
	return x0;
}
static u64 hvc(u64 a0, u64 a1, u64 a2, u64 a3)
{
	register u64 x0 __asm__("x0") = a0, x1 __asm__("x1") = a1, x2 __asm__("x2") = a2, x3 __asm__("x3") = a3;
	__asm__ volatile("hvc #0" : "+r"(x0), "+r"(x1), "+r"(x2), "+r"(x3) ::
			 "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14", "x15", "x16", "x17", "memory");
	return x0;
}

#define PSCI_VERSION 0x84000000UL
#define PSCI_CPU_ON64 0xC4000003UL
#define PSCI_CPU_ON32 0x84000003UL
#define PSCI_AFF_INFO64 0xC4000004UL
#define PSCI_MIGRATE_INFO_TYPE 0x84000006UL
#define PSCI_SYSTEM_OFF 0x84000008UL
#define PSCI_SYSTEM_RESET 0x84000009UL
#define PSCI_FEATURES 0x8400000AUL
#define NOT_SUPPORTED (-1)
#define INVALID_PARAMETERS (-2)

static void psci_junk(int full)
{
	u32 bad = 0;
	int32_t r;
	u64 v = smc(PSCI_VERSION, 0, 0, 0);
	printf_("HOSTILE PSCI_VERSION %lx\n", v);
	/* Unknown function ids: NOT_SUPPORTED. */
	/* 0xC6000001: the call libvmm's reset stub makes (libvmm/src/vm/reset_stub.rs);
	 * from a running guest it is just another unknown id. */
	static const u64 unknown[] = { 0xC6000001, 0x84000099, 0xC4000099, 0x8400001F, 0x12345678, 0xFFFFFFFF,
				       0x86000001,
				       0x0, 0xC3000000, 0xBF00FF01, 0x86000000, 0xC5FFFFFF, 0x8400FFFF };
	for (u32 i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		if (!full && i > 2) break;
		r = (int32_t)smc(unknown[i], junk(), junk(), junk());
		if (r != NOT_SUPPORTED) { bad++; printf_("HOSTILE note: SMC %lx returned %d\n", unknown[i], r); }
		r = (int32_t)hvc(unknown[i], junk(), junk(), junk());
		if (r != NOT_SUPPORTED) { bad++; printf_("HOSTILE note: HVC %lx returned %d\n", unknown[i], r); }
	}
	/* CPU_ON: vCPU 0 is on, no other exists; entry points outside RAM. */
	static const u64 targets[] = { 0, 1, 2, 0xff, 0x100, 0xffffffff, 0xffffffffffffffffUL, 0x80000000UL };
	static const u64 entries[] = { 0x0, RAM_END, 0x40000001, RAM_BASE, 0xffffffffffffffffUL };
	for (u32 t = 0; t < sizeof(targets) / sizeof(targets[0]); t++) {
		for (u32 e = 0; e < sizeof(entries) / sizeof(entries[0]); e++) {
			if (!full && e > 0) break;
			r = (int32_t)smc(PSCI_CPU_ON64, targets[t], entries[e], junk());
			if (r >= 0) { bad++; printf_("HOSTILE note: CPU_ON(%lx, %lx) returned %d\n", targets[t], entries[e], r); }
			r = (int32_t)smc(PSCI_CPU_ON32 | ((u64)junk() << 32 & (full ? ~0ul : 0)), targets[t], entries[e], 0);
			if (r >= 0) { bad++; printf_("HOSTILE note: CPU_ON32(%lx, %lx) returned %d\n", targets[t], entries[e], r); }
		}
	}
	/* AFFINITY_INFO: self at level 0 is ON (0); junk is INVALID_PARAMETERS. */
	r = (int32_t)smc(PSCI_AFF_INFO64, 0, 0, 0);
	if (r != 0) { bad++; printf_("HOSTILE note: AFFINITY_INFO(0, 0) returned %d\n", r); }
	static const u64 aff[][2] = { { 1, 0 }, { 0xff, 0 }, { 0, 7 }, { 0xdeadbeef, 0xdeadbeef }, { ~0ul, ~0ul } };
	for (u32 i = 0; i < sizeof(aff) / sizeof(aff[0]); i++) {
		r = (int32_t)smc(PSCI_AFF_INFO64, aff[i][0], aff[i][1], junk());
		if (r != INVALID_PARAMETERS && r != 1 /* OFF */) {
			bad++; printf_("HOSTILE note: AFFINITY_INFO(%lx, %lx) returned %d\n", aff[i][0], aff[i][1], r);
		}
	}
	/* FEATURES of junk ids. */
	r = (int32_t)smc(PSCI_FEATURES, 0x12345678, 0, 0);
	if (r != NOT_SUPPORTED) { bad++; printf_("HOSTILE note: FEATURES(junk) returned %d\n", r); }
	/* SMC32 ids with junk in the upper 32 bits of x0: harmless ids only
	 * (an implementation may ignore the upper half). */
	static const u64 upper[] = { 0xdeadbeef00000000UL, 0xffffffff00000000UL, 0x0000000100000000UL };
	for (u32 i = 0; i < 3; i++) {
		u64 a = smc(upper[i] | PSCI_VERSION, 0, 0, 0);
		u64 b = smc(upper[i] | PSCI_MIGRATE_INFO_TYPE, 0, 0, 0);
		u64 c = smc(upper[i] | PSCI_FEATURES, PSCI_VERSION, 0, 0);
		if (full || i == 0)
			printf_("HOSTILE SMC32 with x0 upper %lx: VERSION %lx MIGRATE_INFO_TYPE %lx FEATURES %lx\n",
				upper[i] >> 32, a, b, c);
	}
	/* Non-zero SMC/HVC immediates. */
	{
		register u64 x0 __asm__("x0") = PSCI_VERSION;
		__asm__ volatile("smc #0x1234" : "+r"(x0) :: "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10",
				 "x11", "x12", "x13", "x14", "x15", "x16", "x17", "memory");
		register u64 y0 __asm__("x0") = 0xC4001234;
		__asm__ volatile("hvc #0xffff" : "+r"(y0) :: "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10",
				 "x11", "x12", "x13", "x14", "x15", "x16", "x17", "memory");
	}
	check(bad == 0 && (v >> 16) == 1, "PSCI/SMCCC junk answered correctly");
	check(n_other == 0 && n_undef == 0, "PSCI junk: no unexpected exception");
}

#if HOSTILE_VIRTIO
/* ---- virtio-MMIO (version 2) ---- */
#define VIRTIO_MAGIC 0x000
#define VIRTIO_VERSION 0x004
#define VIRTIO_DEVICE_ID 0x008
#define VIRTIO_DEVICE_FEATURES 0x010
#define VIRTIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_DRIVER_FEATURES 0x020
#define VIRTIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_QUEUE_SEL 0x030
#define VIRTIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_QUEUE_NUM 0x038
#define VIRTIO_QUEUE_READY 0x044
#define VIRTIO_QUEUE_NOTIFY 0x050
#define VIRTIO_INTERRUPT_STATUS 0x060
#define VIRTIO_INTERRUPT_ACK 0x064
#define VIRTIO_STATUS 0x070
#define VIRTIO_QUEUE_DESC 0x080
#define VIRTIO_QUEUE_DRIVER 0x090
#define VIRTIO_QUEUE_DEVICE 0x0a0
#define VIRTIO_CONFIG 0x100
#define ST_ACK 1
#define ST_DRIVER 2
#define ST_DRIVER_OK 4
#define ST_FEATURES_OK 8
#define ST_NEEDS_RESET 0x40
#define ST_FAILED 0x80
#define F_INDIRECT (1u << 28)
#define DESC_NEXT 1
#define DESC_WRITE 2
#define DESC_INDIRECT 4
#define QN 8

struct vdesc { u64 addr; u32 len; u16 flags; u16 next; };
struct vavail { u16 flags, idx, ring[QN], used_event; };
struct vused_elem { u32 id, len; };
struct vused { u16 flags, idx; struct vused_elem ring[QN]; u16 avail_event; };

struct vq {
	u64 base;
	u32 index;
	struct vdesc desc[QN] __attribute__((aligned(16)));
	struct vavail avail __attribute__((aligned(16)));
	struct vused used __attribute__((aligned(16)));
	u16 last_used;
};

static struct vq cons_txq __attribute__((aligned(4096)));
static struct vq cons_rxq __attribute__((aligned(4096)));
static u8 cons_rxbuf[QN * 64] __attribute__((aligned(16)));
static struct vq blk_q __attribute__((aligned(4096)));
static struct vdesc indirect_table[8] __attribute__((aligned(16)));
static char cons_buf[256] __attribute__((aligned(16)));
static u8 blk_data[8 * 512] __attribute__((aligned(4096)));
static struct { u32 type, reserved; u64 sector; } blk_hdr __attribute__((aligned(16)));
static u8 blk_status __attribute__((aligned(16)));

static void set64(u64 dev, u32 reg, u64 v) { w32(dev + reg, (u32)v); w32(dev + reg + 4, (u32)(v >> 32)); }

/* Reset, ACK, DRIVER, features (VERSION_1 + `lo`), FEATURES_OK; 0 if refused. */
static int vio_begin(u64 dev, u32 lo)
{
	w32(dev + VIRTIO_STATUS, 0);
	w32(dev + VIRTIO_STATUS, ST_ACK);
	w32(dev + VIRTIO_STATUS, ST_ACK | ST_DRIVER);
	w32(dev + VIRTIO_DEVICE_FEATURES_SEL, 0);
	u32 offered = r32(dev + VIRTIO_DEVICE_FEATURES);
	w32(dev + VIRTIO_DRIVER_FEATURES_SEL, 0);
	w32(dev + VIRTIO_DRIVER_FEATURES, lo & offered);
	w32(dev + VIRTIO_DRIVER_FEATURES_SEL, 1);
	w32(dev + VIRTIO_DRIVER_FEATURES, 1); /* VERSION_1 */
	w32(dev + VIRTIO_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
	return (r32(dev + VIRTIO_STATUS) & ST_FEATURES_OK) != 0;
}

/* Programs queue `q->index` with `num` entries at the given addresses; returns QueueReady. */
static u32 vq_program(struct vq *q, u32 num, u64 desc, u64 drv, u64 devaddr)
{
	w32(q->base + VIRTIO_QUEUE_SEL, q->index);
	w32(q->base + VIRTIO_QUEUE_NUM, num);
	set64(q->base, VIRTIO_QUEUE_DESC, desc);
	set64(q->base, VIRTIO_QUEUE_DRIVER, drv);
	set64(q->base, VIRTIO_QUEUE_DEVICE, devaddr);
	w32(q->base + VIRTIO_QUEUE_READY, 1);
	return r32(q->base + VIRTIO_QUEUE_READY);
}

static u32 vq_setup(struct vq *q)
{
	u8 *p = (u8 *)&q->desc[0];
	u8 *end = (u8 *)(&q->last_used + 1);
	while (p < end) *p++ = 0;
	q->last_used = 0;
	return vq_program(q, QN, (u64)q->desc, (u64)&q->avail, (u64)&q->used);
}

static void vq_submit(struct vq *q, u16 head)
{
	q->avail.ring[q->avail.idx % QN] = head;
	dsb();
	q->avail.idx++;
	dsb();
	w32(q->base + VIRTIO_QUEUE_NOTIFY, q->index);
}

/* Waits for the next used entry; returns its len, or -1 on timeout. */
static int64_t vq_wait(struct vq *q, u64 us)
{
	u64 d = deadline_us(us);
	while (q->used.idx == q->last_used) {
		if (now() > d) return -1;
	}
	u32 len = q->used.ring[q->last_used % QN].len;
	q->last_used++;
	return len;
}

static void vcons_write(const char *s, u32 n)
{
	if (n > sizeof(cons_buf)) n = sizeof(cons_buf);
	for (u32 i = 0; i < n; i++) cons_buf[i] = s[i];
	cons_txq.desc[0] = (struct vdesc){ (u64)cons_buf, n, 0, 0 };
	vq_submit(&cons_txq, 0);
	if (vq_wait(&cons_txq, 1000000) < 0) vcons_ready = 0; /* console lost: stop printing */
}

static int vcons_init(void)
{
	if (r32(VIO_CONSOLE + VIRTIO_MAGIC) != 0x74726976 || r32(VIO_CONSOLE + VIRTIO_DEVICE_ID) != 3) return 0;
	if (!vio_begin(VIO_CONSOLE, 0)) return 0;
	/* receiveq 0 (buffers the device may fill; never read) and transmitq 1 */
	cons_rxq.base = VIO_CONSOLE;
	cons_rxq.index = 0;
	if (!vq_setup(&cons_rxq)) return 0;
	for (u16 i = 0; i < QN; i++) {
		cons_rxq.desc[i] = (struct vdesc){ (u64)&cons_rxbuf[i * 64], 64, DESC_WRITE, 0 };
		cons_rxq.avail.ring[i] = i;
	}
	cons_rxq.avail.idx = QN;
	cons_txq.base = VIO_CONSOLE;
	cons_txq.index = 1;
	if (!vq_setup(&cons_txq)) return 0;
	cons_rxq.avail.flags = 1; /* VIRTQ_AVAIL_F_NO_INTERRUPT: the console is polled */
	cons_txq.avail.flags = 1;
	w32(VIO_CONSOLE + VIRTIO_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
	vcons_ready = 1;
	return 1;
}

/* One block request through descriptors 0-2; returns the status byte, or -1 on timeout. */
static int blk_rw(u32 type, u64 sector, u8 *buf, u32 len)
{
	blk_hdr.type = type; blk_hdr.reserved = 0; blk_hdr.sector = sector;
	blk_status = 0xee;
	blk_q.desc[0] = (struct vdesc){ (u64)&blk_hdr, 16, DESC_NEXT, 1 };
	blk_q.desc[1] = (struct vdesc){ (u64)buf, len, (u16)(DESC_NEXT | (type == 0 ? DESC_WRITE : 0)), 2 };
	blk_q.desc[2] = (struct vdesc){ (u64)&blk_status, 1, DESC_WRITE, 0 };
	vq_submit(&blk_q, 0);
	if (vq_wait(&blk_q, 5000000) < 0) return -1;
	return blk_status;
}

static int blk_init(u32 lo)
{
	if (r32(VIO_BLOCK + VIRTIO_MAGIC) != 0x74726976 || r32(VIO_BLOCK + VIRTIO_DEVICE_ID) != 2) return 0;
	if (!vio_begin(VIO_BLOCK, lo)) return 0;
	blk_q.base = VIO_BLOCK;
	blk_q.index = 0;
	if (!vq_setup(&blk_q)) return 0;
	w32(VIO_BLOCK + VIRTIO_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
	return 1;
}

/* A hostile chain: submit head `head` (descriptors already written), wait. */
static void hostile_chain(const char *what, u16 head, u32 *answered, u32 *total)
{
	blk_status = 0xee;
	(*total)++;
	vq_submit(&blk_q, head);
	int64_t len = vq_wait(&blk_q, 300000);
	u32 st = r32(VIO_BLOCK + VIRTIO_STATUS);
	if (len >= 0 || (st & ST_NEEDS_RESET)) (*answered)++;
	printf_("HOSTILE virtq %s: used len %d, status byte %x, device status %x\n", what, (int32_t)len, blk_status, st);
	if (st & ST_NEEDS_RESET || len < 0) {
		/* Start over with a fresh queue. */
		blk_init(F_INDIRECT);
	}
}

static void hostile_virtio(void)
{
	u32 refused = 0, tries = 0;
	struct vq *q = &blk_q;
	u64 d = (u64)q->desc, a = (u64)&q->avail, u = (u64)&q->used;
	u32 max;
	q->base = VIO_BLOCK; q->index = 0;

	/* Queue made ready before FEATURES_OK. */
	w32(VIO_BLOCK + VIRTIO_STATUS, 0);
	w32(VIO_BLOCK + VIRTIO_STATUS, ST_ACK | ST_DRIVER);
	u32 rdy = vq_program(q, QN, d, a, u);
	w32(VIO_BLOCK + VIRTIO_QUEUE_NOTIFY, 0);
	w32(VIO_BLOCK + VIRTIO_STATUS, ST_ACK | ST_DRIVER | ST_DRIVER_OK); /* DRIVER_OK without FEATURES_OK */
	blk_rw(0, 0, blk_data, 512);
	printf_("HOSTILE virtq ready before features: QueueReady %u, device status %x\n", rdy,
		r32(VIO_BLOCK + VIRTIO_STATUS));

	/* Bad queue geometry after a proper FEATURES_OK. */
	vio_begin(VIO_BLOCK, F_INDIRECT);
	w32(VIO_BLOCK + VIRTIO_QUEUE_SEL, 0);
	max = r32(VIO_BLOCK + VIRTIO_QUEUE_NUM_MAX);
	const struct { const char *what; u32 num; u64 d, a, u; } bad[] = {
		{ "size 7", 7, d, a, u },
		{ "size 0", 0, d, a, u },
		{ "size 3", 3, d, a, u },
		{ "size max*2", max * 2, d, a, u },
		{ "size 0xffff", 0xffff, d, a, u },
		{ "desc at 0", QN, 0, a, u },
		{ "desc outside RAM", QN, RAM_END, a, u },
		{ "desc across RAM end", QN, RAM_END - 64, a, u },
		{ "avail outside RAM", QN, d, 0x9000000, u },
		{ "used outside RAM", QN, d, a, 0xfffffffffffff000UL },
		{ "desc misaligned", QN, d + 8, a, u },
		{ "used misaligned", QN, d, a, u + 2 },
		{ "desc wraps", QN, 0xfffffffffffffff0UL, a, u },
	};
	for (u32 i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tries++;
		w32(VIO_BLOCK + VIRTIO_QUEUE_READY, 0);
		u32 r = vq_program(q, bad[i].num, bad[i].d, bad[i].a, bad[i].u);
		w32(VIO_BLOCK + VIRTIO_QUEUE_NOTIFY, 0);
		if (!r) refused++;
		else printf_("HOSTILE note: virtq %s accepted\n", bad[i].what);
	}
	printf_("HOSTILE virtq bad geometry: %u of %u refused (QueueNumMax %u)\n", refused, tries, max);
	check(refused == tries, "virtqueues with bad size or addresses are refused");

	/* Hostile descriptor chains on a proper queue. */
	u32 answered = 0, total = 0;
	if (!blk_init(F_INDIRECT)) { check(0, "virtio-blk set up for the hostile chains"); return; }
	struct vdesc *D = q->desc;
	blk_hdr.type = 0; blk_hdr.sector = 0;
	/* loop of two */
	D[0] = (struct vdesc){ (u64)&blk_hdr, 16, DESC_NEXT, 1 };
	D[1] = (struct vdesc){ (u64)blk_data, 512, DESC_NEXT | DESC_WRITE, 0 };
	hostile_chain("loop 0->1->0", 0, &answered, &total);
	/* self loop */
	D[3] = (struct vdesc){ (u64)&blk_hdr, 16, DESC_NEXT, 3 };
	hostile_chain("self loop", 3, &answered, &total);
	/* next out of range */
	D[0] = (struct vdesc){ (u64)&blk_hdr, 16, DESC_NEXT, 200 };
	hostile_chain("next 200", 0, &answered, &total);
	/* head out of range */
	hostile_chain("head 9999", 9999, &answered, &total);
	/* header outside RAM */
	D[0] = (struct vdesc){ 0x1000, 16, DESC_NEXT, 1 };
	D[1] = (struct vdesc){ (u64)blk_data, 512, DESC_NEXT | DESC_WRITE, 2 };
	D[2] = (struct vdesc){ (u64)&blk_status, 1, DESC_WRITE, 0 };
	hostile_chain("header at 0x1000", 0, &answered, &total);
	/* data (device-written) across the end of RAM */
	D[0] = (struct vdesc){ (u64)&blk_hdr, 16, DESC_NEXT, 1 };
	D[1] = (struct vdesc){ RAM_END - 256, 512, DESC_NEXT | DESC_WRITE, 2 };
	hostile_chain("read into RAM end", 0, &answered, &total);
	/* data at the top of the address space (wraps) */
	D[1] = (struct vdesc){ 0xffffffffffffff00UL, 0x200, DESC_NEXT | DESC_WRITE, 2 };
	hostile_chain("data wraps", 0, &answered, &total);
	/* huge data length */
	D[1] = (struct vdesc){ (u64)blk_data, 0xffffffff, DESC_NEXT | DESC_WRITE, 2 };
	hostile_chain("data len 0xffffffff", 0, &answered, &total);
	/* zero lengths */
	D[0] = (struct vdesc){ (u64)&blk_hdr, 0, DESC_NEXT, 1 };
	D[1] = (struct vdesc){ (u64)blk_data, 512, DESC_NEXT | DESC_WRITE, 2 };
	hostile_chain("header len 0", 0, &answered, &total);
	D[0] = (struct vdesc){ (u64)&blk_hdr, 16, DESC_NEXT, 1 };
	D[1] = (struct vdesc){ (u64)blk_data, 0, DESC_NEXT | DESC_WRITE, 2 };
	hostile_chain("data len 0", 0, &answered, &total);
	D[2] = (struct vdesc){ (u64)&blk_status, 0, DESC_WRITE, 0 };
	D[1] = (struct vdesc){ (u64)blk_data, 512, DESC_NEXT | DESC_WRITE, 2 };
	hostile_chain("status len 0", 0, &answered, &total);
	/* write request whose header the device would have to write */
	blk_hdr.type = 1; blk_hdr.sector = 1ul << 40;
	D[0] = (struct vdesc){ (u64)&blk_hdr, 16, DESC_NEXT | DESC_WRITE, 1 };
	D[1] = (struct vdesc){ (u64)blk_data, 512, DESC_NEXT, 2 };
	D[2] = (struct vdesc){ (u64)&blk_status, 1, DESC_WRITE, 0 };
	hostile_chain("write far past the disk end", 0, &answered, &total);
	blk_hdr.type = 0x7fff; blk_hdr.sector = 0;
	D[0] = (struct vdesc){ (u64)&blk_hdr, 16, DESC_NEXT, 1 };
	hostile_chain("unknown request type", 0, &answered, &total);
	/* indirect: a table that points at itself, one out of RAM, one of length 5 */
	blk_hdr.type = 0;
	indirect_table[0] = (struct vdesc){ (u64)&blk_hdr, 16, DESC_NEXT, 1 };
	indirect_table[1] = (struct vdesc){ (u64)indirect_table, sizeof(indirect_table), DESC_INDIRECT | DESC_NEXT, 0 };
	D[4] = (struct vdesc){ (u64)indirect_table, sizeof(indirect_table), DESC_INDIRECT, 0 };
	hostile_chain("nested indirect", 4, &answered, &total);
	indirect_table[1] = (struct vdesc){ (u64)blk_data, 512, DESC_NEXT | DESC_WRITE, 0 };
	hostile_chain("indirect loop", 4, &answered, &total);
	D[4] = (struct vdesc){ RAM_END - 16, 64, DESC_INDIRECT, 0 };
	hostile_chain("indirect table outside RAM", 4, &answered, &total);
	D[4] = (struct vdesc){ (u64)indirect_table, 5, DESC_INDIRECT, 0 };
	hostile_chain("indirect length 5", 4, &answered, &total);
	/* The avail index moved far ahead: DEVICE_NEEDS_RESET expected. */
	blk_hdr.type = 0;
	D[0] = (struct vdesc){ (u64)&blk_hdr, 16, DESC_NEXT, 1 };
	D[1] = (struct vdesc){ (u64)blk_data, 512, DESC_NEXT | DESC_WRITE, 2 };
	D[2] = (struct vdesc){ (u64)&blk_status, 1, DESC_WRITE, 0 };
	q->avail.idx += 0x4000;
	hostile_chain("avail index +0x4000", 0, &answered, &total);
	printf_("HOSTILE virtq hostile chains: %u of %u answered (used entry or NEEDS_RESET), no hang\n", answered, total);
	check(answered == total, "hostile descriptor chains are answered");
	check(n_other == 0, "virtio: no unexpected exception");
}

#define COUNTER_SECTOR 1000
#define PATTERN_SECTOR 2048 /* 8 sectors = one 4 KiB block */
#define ODD_SECTOR 3001     /* 3 sectors, not block-aligned: read-modify-write */
#define COUNTER_MAGIC 0x484f5354494c4531UL /* "HOSTILE1" */

static u8 pattern_byte(u32 boot, u32 sector, u32 i) { return (u8)(boot * 131 + sector * 7 + i * 13 + (i >> 8)); }

/* Reads the boot counter and (bump) checks the previous boot's pattern and
 * counts this boot; writes this boot's pattern and reads it back. */
static u32 blk_boot_io(int full, int bump)
{
	u32 ok = 1;
	u64 cap = r64(VIO_BLOCK + VIRTIO_CONFIG);
	int s = blk_rw(0, COUNTER_SECTOR, blk_data, 512);
	u64 *w = (u64 *)blk_data;
	u32 boot = (s == 0 && w[0] == COUNTER_MAGIC) ? (u32)w[1] + (bump ? 1 : 0) : 1;
	if (s != 0) { ok = 0; printf_("HOSTILE note: counter read status %d\n", s); }
	if (bump && boot > 1) {
		/* The previous boot's pattern must still be there. */
		s = blk_rw(0, PATTERN_SECTOR, blk_data, 8 * 512);
		u32 bad = 0;
		for (u32 i = 0; i < 8 * 512; i++) bad += blk_data[i] != pattern_byte(boot - 1, PATTERN_SECTOR + i / 512, i % 512);
		if (s != 0 || bad) { ok = 0; printf_("HOSTILE note: previous pattern: status %d, %u bytes differ\n", s, bad); }
	}
	for (u32 i = 0; i < 512; i++) blk_data[i] = 0;
	w[0] = COUNTER_MAGIC; w[1] = boot;
	s = blk_rw(1, COUNTER_SECTOR, blk_data, 512);
	if (s != 0) { ok = 0; printf_("HOSTILE note: counter write status %d\n", s); }
	for (u32 i = 0; i < 8 * 512; i++) blk_data[i] = pattern_byte(boot, PATTERN_SECTOR + i / 512, i % 512);
	int sw = blk_rw(1, PATTERN_SECTOR, blk_data, 8 * 512);
	for (u32 i = 0; i < 8 * 512; i++) blk_data[i] = 0;
	int sr = blk_rw(0, PATTERN_SECTOR, blk_data, 8 * 512);
	u32 bad = 0;
	for (u32 i = 0; i < 8 * 512; i++) bad += blk_data[i] != pattern_byte(boot, PATTERN_SECTOR + i / 512, i % 512);
	if (sw || sr || bad) { ok = 0; printf_("HOSTILE note: pattern write %d read %d, %u bytes differ\n", sw, sr, bad); }
	if (full) {
		for (u32 i = 0; i < 3 * 512; i++) blk_data[i] = pattern_byte(boot, ODD_SECTOR + i / 512, i % 512) ^ 0x5a;
		sw = blk_rw(1, ODD_SECTOR, blk_data, 3 * 512);
		for (u32 i = 0; i < 5 * 512; i++) blk_data[i] = 0;
		sr = blk_rw(0, ODD_SECTOR - 1, blk_data, 5 * 512);
		bad = 0;
		for (u32 i = 0; i < 3 * 512; i++)
			bad += blk_data[512 + i] != (u8)(pattern_byte(boot, ODD_SECTOR + i / 512, i % 512) ^ 0x5a);
		if (sw || sr || bad) { ok = 0; printf_("HOSTILE note: unaligned sectors write %d read %d, %u bytes differ\n", sw, sr, bad); }
		/* The last sector, and one past the end (IOERR). */
		int sl = blk_rw(0, cap - 1, blk_data, 512);
		int sp = blk_rw(0, cap, blk_data, 512);
		if (sl != 0 || sp != 1) { ok = 0; printf_("HOSTILE note: last sector %d, past the end %d (want 0, 1)\n", sl, sp); }
	}
	printf_("HOSTILE disk: capacity %lu sectors, boot counter %u, pattern at sector %u%s\n", cap, boot,
		PATTERN_SECTOR, full ? ", unaligned sectors, last sector, past the end" : "");
	check(ok && cap == 131072, "virtio-blk: a correct driver writes and reads back the pattern");
	return boot;
}
#endif /* HOSTILE_VIRTIO */

/* ---- Interrupt checks ---- */
static int wait_irq(u32 irq, u32 before, u64 us, int use_wfi)
{
	u64 d = deadline_us(us);
	while (irq_count[irq] == before && now() < d) {
		if (use_wfi) wfi();
	}
	return irq_count[irq] != before;
}

static void interrupt_checks(void)
{
	gic_sane();
	gic_enable_irq(IRQ_VTIMER);
	gic_enable_irq(SGI_TEST);
	irq_on();

	/* Virtual timer, busy waiting and then idling in WFI. */
	u32 b = irq_count[IRQ_VTIMER];
	SYSREG_W(cntv_tval_el0, freq() / 200); /* 5 ms */
	SYSREG_W(cntv_ctl_el0, 1);
	check(wait_irq(IRQ_VTIMER, b, 1000000, 0), "virtual timer (PPI 27) fires");
	b = irq_count[IRQ_VTIMER];
	SYSREG_W(cntv_tval_el0, freq() / 100); /* 10 ms */
	SYSREG_W(cntv_ctl_el0, 1);
	printf_("HOSTILE waiting in WFI for the timer\n");
	check(wait_irq(IRQ_VTIMER, b, 1000000, 1), "virtual timer wakes a WFI");

	/* SGI to itself: TargetListFilter 0b10. */
	b = irq_count[SGI_TEST];
	w32(GICD + GICD_SGIR, (2u << 24) | SGI_TEST);
	check(wait_irq(SGI_TEST, b, 100000, 0), "SGI to self (GICD_SGIR) arrives");
	b = irq_count[SGI_TEST];
	w32(GICD + GICD_SGIR, (1u << 16) | SGI_TEST); /* target list: CPU 0 */
	check(wait_irq(SGI_TEST, b, 100000, 0), "SGI by target list arrives");

	/* A burst: 16 SGIs and 16 SPIs pending at once, more than the list
	 * registers hold; each must arrive exactly once. */
	irq_off();
	u32 first_spi = gic_lines() > 128 ? 96 : 64, before[32], lost = 0, twice = 0;
	for (u32 i = 0; i < 16; i++) {
		before[i] = irq_count[i];
		before[16 + i] = irq_count[first_spi + i];
		gic_enable_irq(i);
		gic_enable_irq(first_spi + i);
	}
	for (u32 i = 0; i < 16; i++) w32(GICD + GICD_SGIR, (2u << 24) | i);
	w32(GICD + GICD_ISPENDR + 4 * (first_spi / 32), 0xffffu << (first_spi % 32));
	irq_on();
	delay_us(100000);
	for (u32 i = 0; i < 32; i++) {
		u32 id = i < 16 ? i : first_spi + i - 16, got = irq_count[id] - before[i];
		if (got == 0) lost++;
		if (got > 1) twice++;
		if (got != 1 && lost + twice <= 4) printf_("HOSTILE note: burst: interrupt %u arrived %u times\n", id, got);
	}
	for (u32 i = 0; i < 16; i++) {
		w32(GICD + GICD_ICENABLER + 4 * ((first_spi + i) / 32), 1u << ((first_spi + i) % 32));
		if (i != SGI_TEST) w32(GICD + GICD_ICENABLER, 1u << i);
	}
	printf_("HOSTILE burst: 16 SGIs + SPIs %u-%u: %u lost, %u more than once\n", first_spi, first_spi + 15, lost, twice);
	check(lost == 0 && twice == 0, "a burst of 32 interrupts (more than the list registers) arrives, each once");

#if !HOSTILE_VIRTIO
	/* The passed-through PL011 (SPI 1): TX, then RX with a key the harness types. */
	gic_enable_irq(IRQ_UART);
	b = irq_count[IRQ_UART];
	w32(UART + UART_ICR, 0x7ff);
	w32(UART + UART_IMSC, INT_TX);
	w32(UART + UART_DR, '.');
	int tx = wait_irq(IRQ_UART, b, 500000, 0);
	w32(UART + UART_IMSC, 0);
	putc_('\n');
	check(tx, "PL011 TX interrupt (SPI 1) arrives");
	b = irq_count[IRQ_UART];
	while (!(r32(UART + UART_FR) & FR_RXFE)) (void)r32(UART + UART_DR);
	w32(UART + UART_ICR, 0x7ff);
	w32(UART + UART_IMSC, INT_RX | INT_RT);
	printf_("HOSTILE press a key for the PL011 RX interrupt\n");
	int rx = wait_irq(IRQ_UART, b, 30000000, 1);
	w32(UART + UART_IMSC, 0);
	printf_("HOSTILE RX interrupt: got %c\n", rx ? (char)uart_rx_char : '?');
	check(rx && uart_rx_char == 'k', "PL011 RX interrupt (SPI 1) arrives with the typed key");
#else
	/* The virtio-blk used-buffer interrupt (SPI 11). */
	gic_enable_irq(IRQ_VBLK);
	b = irq_count[IRQ_VBLK];
	vblk_isr = 0;
	int s = blk_rw(0, COUNTER_SECTOR, blk_data, 512);
	int got = wait_irq(IRQ_VBLK, b, 1000000, 1);
	printf_("HOSTILE virtio-blk interrupt: status %d, InterruptStatus %x\n", s, vblk_isr);
	check(got && (vblk_isr & 1), "virtio-blk used-buffer interrupt (SPI 11) arrives");
#endif
	irq_off();
	check(n_spurious < 100 && irq_count[1022] == 0, "no interrupt storm");
	printf_("HOSTILE interrupts: timer %u, SGI %u, device %u, spurious %u\n", irq_count[IRQ_VTIMER],
		irq_count[SGI_TEST], irq_count[HOSTILE_VIRTIO ? IRQ_VBLK : IRQ_UART], n_spurious);
}

/* Leaves interrupts pending in the CPU interface for the reset to clean up. */
static void leave_interrupts_pending(void)
{
	gic_sane();
	gic_enable_irq(IRQ_VTIMER);
	gic_enable_irq(SGI_TEST);
	SYSREG_W(cntv_tval_el0, 0);
	SYSREG_W(cntv_ctl_el0, 1); /* fires at once; IRQs are masked */
	w32(GICD + GICD_SGIR, (2u << 24) | SGI_TEST);
	w8(GICD + GICD_IPRIORITYR + (HOSTILE_VIRTIO ? IRQ_VBLK : IRQ_UART), 0x80);
#if !HOSTILE_VIRTIO
	gic_enable_irq(IRQ_UART);
	w32(UART + UART_IMSC, INT_TX);
	w32(UART + UART_DR, '~');
	delay_us(3000);
	w32(UART + UART_IMSC, 0); /* the line drops; the vGIC still holds the interrupt */
#else
	gic_enable_irq(IRQ_VBLK);
	blk_rw(0, COUNTER_SECTOR, blk_data, 512);
	/* and one request the device has not answered at the reset */
	blk_hdr.type = 0; blk_hdr.sector = PATTERN_SECTOR;
	blk_q.desc[0] = (struct vdesc){ (u64)&blk_hdr, 16, DESC_NEXT, 1 };
	blk_q.desc[1] = (struct vdesc){ (u64)blk_data, 4096, DESC_NEXT | DESC_WRITE, 2 };
	blk_q.desc[2] = (struct vdesc){ (u64)&blk_status, 1, DESC_WRITE, 0 };
	delay_us(3000);
#endif
	/* The device interrupt has the highest priority (set above): acknowledge
	 * it and never EOI it, so it is active at the reset; the others stay
	 * pending. A passed-through IRQ is then unacknowledged at seL4. */
	u32 hp = r32(GICC + GICC_HPPIR);
	u32 act = r32(GICC + GICC_IAR);
	printf_("HOSTILE leaving interrupts pending: HPPIR %x, left active: IAR %x\n", hp, act);
#if HOSTILE_VIRTIO
	vq_submit(&blk_q, 0);
#endif
}

/* At boot, before enabling anything: nothing from an earlier boot. */
static void boot_checks(u32 *iar0, u32 *iar1, u32 *iar2, u32 *ctlr0, u32 *pend, u32 *rpr, u32 *apr)
{
	/* Running priority idle (0xff) and no active priority: an interrupt
	 * acknowledged but never EOId before the reset must be forgotten, or
	 * nothing of its priority or lower can ever be taken again. */
	*rpr = r32(GICC + GICC_RPR);
	*apr = r32(GICC + GICC_APR0);
	*ctlr0 = r32(GICC + GICC_CTLR) | r32(GICC + GICC_PMR) << 8;
	*iar0 = r32(GICC + GICC_IAR);
	if ((*iar0 & 0x3ff) < 1020) w32(GICC + GICC_EOIR, *iar0);
	/* The CPU interface on, distributor off: only list registers could answer. */
	w32(GICC + GICC_PMR, 0xff);
	w32(GICC + GICC_CTLR, 1);
	delay_us(1000);
	*iar1 = r32(GICC + GICC_IAR);
	if ((*iar1 & 0x3ff) < 1020) w32(GICC + GICC_EOIR, *iar1);
	/* The distributor on with no source enabled. */
	w32(GICD + GICD_CTLR, 1);
	delay_us(2000);
	*iar2 = r32(GICC + GICC_IAR);
	if ((*iar2 & 0x3ff) < 1020) w32(GICC + GICC_EOIR, *iar2);
	*pend = 0;
	for (u32 n = 0; n < gic_lines() / 32; n++)
		*pend |= r32(GICD + GICD_ISPENDR + 4 * n) | r32(GICD + GICD_ISACTIVER + 4 * n) |
			 r32(GICD + GICD_ISENABLER + 4 * n) * (n != 0);
	for (u32 i = 0; i < 16; i += 4) *pend |= r32(GICD + GICD_SPENDSGIR + i);
	w32(GICD + GICD_CTLR, 0);
	w32(GICC + GICC_CTLR, 0);
}

void hostile_main(u64 dtb)
{
	u32 iar0, iar1, iar2, ctlr0, pend, rpr, apr;
	u32 cntv0 = (u32)SYSREG_R(cntv_ctl_el0);
	boot_checks(&iar0, &iar1, &iar2, &ctlr0, &pend, &rpr, &apr);
	for (u32 n = 0; n < 64; n++) saved_cfg[n] = r32(GICD + GICD_ICFGR + 4 * n);
	rng_state ^= (u32)now();
	u32 boot = 0;
	(void)boot;
#if !HOSTILE_VIRTIO
	w32(UART + UART_IMSC, 0);
	w32(UART + UART_ICR, 0x7ff);
#else
	u32 vstat = r32(VIO_BLOCK + VIRTIO_STATUS) | r32(VIO_CONSOLE + VIRTIO_STATUS), vready = 0;
	for (u32 q = 0; q < 2; q++) {
		w32(VIO_CONSOLE + VIRTIO_QUEUE_SEL, q); vready |= r32(VIO_CONSOLE + VIRTIO_QUEUE_READY);
	}
	w32(VIO_BLOCK + VIRTIO_QUEUE_SEL, 0); vready |= r32(VIO_BLOCK + VIRTIO_QUEUE_READY);
	vcons_init();
#endif
	printf_("\nHOSTILE guest up: DTB %lx, CurrentEL %lx, GICC_PMR<<8|GICC_CTLR %x, CNTV_CTL %x\n", dtb,
		SYSREG_R(CurrentEL) >> 2, ctlr0, cntv0);
	printf_("HOSTILE boot IAR: at entry %x, CPU interface on %x, distributor on %x; GICD pending/active/enabled %x\n",
		iar0, iar1, iar2, pend);
	check((iar0 & 0x3ff) == 1023 && (iar1 & 0x3ff) == 1023 && (iar2 & 0x3ff) == 1023 && pend == 0,
	      "boot: no interrupt left over from an earlier boot");
	check((cntv0 & 1) == 0, "boot: virtual timer off");
	printf_("HOSTILE boot GICC_RPR %x GICC_APR0 %x\n", rpr, apr);
	check(rpr == 0xff && apr == 0, "boot: no active priority left over (GICC_RPR 0xff, GICC_APR0 0)");
	check(ctlr0 == 0, "boot: GIC CPU interface in its reset state (GICC_CTLR 0, GICC_PMR 0)");
#if HOSTILE_VIRTIO
	printf_("HOSTILE virtio at boot: device status %x, queue ready %x\n", vstat, vready);
	check(vstat == 0 && vready == 0, "boot: virtio devices reset");
	/* The request left in flight by the previous boot must not land in
	 * this boot's RAM (same image, same buffer addresses). */
	delay_us(20000);
	u32 stale = 0;
	for (u32 i = 0; i < sizeof(blk_data); i++) stale += blk_data[i] != 0;
	for (u8 *p = (u8 *)&blk_q; p < (u8 *)(&blk_q + 1); p++) stale += *p != 0;
	stale += blk_status != 0;
	check(stale == 0, "boot: no DMA from an earlier boot's request in guest RAM");
	check(blk_init(0), "virtio-blk: set up");
	boot = blk_boot_io(0, 1);
	mode = boot >= 51 ? 'f' : boot == 1 ? 'a' : 'r';
	printf_("HOSTILE boot %u (disk counter): mode %c\n", boot, mode);
#else
	while (!(r32(UART + UART_FR) & FR_RXFE)) (void)r32(UART + UART_DR);
	printf_("HOSTILE command? (a: all then reset, r: short round then reset, f: final)\n");
	for (;;) {
		if (!(r32(UART + UART_FR) & FR_RXFE)) {
			char c = (char)(r32(UART + UART_DR) & 0xff);
			if (c == 'a' || c == 'r' || c == 'f') { mode = c; break; }
		}
	}
	printf_("HOSTILE mode %c\n", mode);
#endif
	int full = mode != 'r';
	hostile_accesses(full);
	psci_junk(full);
	if (full) {
		gicd_sweep();
		hostile_fetch();
#if HOSTILE_VIRTIO
		hostile_virtio();
		if (blk_init(0)) boot = blk_boot_io(1, 0);
		else check(0, "virtio-blk: set up after the hostile queues");
#endif
	}
	if (mode == 'f') {
		interrupt_checks();
		check(n_other == 0 && n_serror == 0, "no unexpected exception in the whole run");
		printf_("HOSTILE RESULT %s: %u checks, %u failed\n", n_fails ? "FAIL" : "PASS", n_checks, n_fails);
		flush_line();
		smc(PSCI_SYSTEM_OFF, 0, 0, 0);
		printf_("HOSTILE FAIL SYSTEM_OFF returned\n");
		for (;;) wfi();
	}
	leave_interrupts_pending();
	printf_("HOSTILE RESULT %s: %u checks, %u failed; resetting\n", n_fails ? "FAIL" : "PASS", n_checks, n_fails);
	flush_line();
	smc(PSCI_SYSTEM_RESET, 0, 0, 0);
	printf_("HOSTILE FAIL SYSTEM_RESET returned\n");
	for (;;) wfi();
}
