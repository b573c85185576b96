/*
 * uartsplit: a QEMU TCG plugin (API version 1, QEMU 7.x) for
 * scripts/sound-cost.py. Like the team's uartmark plugin it counts executed
 * instructions and records the counts at every store to the UART data
 * register, but it keeps one count per virtual address range (the range of
 * the translation block's first instruction):
 *
 *   -plugin ./libuartsplit.so,out=FILE,addr=0x9000000,range=LO:HI,range=LO:HI...
 *
 * Up to 7 ranges (hexadecimal, HI exclusive), plus a last count for every
 * other address. For the k-th UART store, record k is the counts at that
 * moment: (ranges + 1) little-endian uint64 values. Instructions of all
 * vCPUs are summed; a range is only meaningful where no two address spaces
 * that run meanwhile share it (PDs linked apart, the guest kernel's half of
 * the address space, the seL4 kernel's window).
 *
 * The API declarations are written out, as in uartmark.c, so that no QEMU
 * headers are needed.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;
typedef uint32_t qemu_plugin_meminfo_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
struct qemu_plugin_hwaddr;
typedef struct {
    const char *target_name;
    struct { int min; int cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus; int max_vcpus; } system; };
} qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info,
                                          uint64_t vaddr, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb,
                                      enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw,
                                      void *userdata);
struct qemu_plugin_hwaddr *qemu_plugin_get_hwaddr(qemu_plugin_meminfo_t info, uint64_t vaddr);
bool qemu_plugin_hwaddr_is_io(const struct qemu_plugin_hwaddr *haddr);
bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t info);
uint64_t qemu_plugin_hwaddr_phys_addr(const struct qemu_plugin_hwaddr *haddr);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

EXPORT int qemu_plugin_version = 1;

#define MAX_RANGES 7
static uint64_t lo[MAX_RANGES], hi[MAX_RANGES];
static int nranges;
static uint64_t counts[MAX_RANGES + 1];
static uint64_t uart_dr = 0x9000000;
static FILE *out;

static void mem_cb(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *ud)
{
    struct qemu_plugin_hwaddr *hw;
    if (!qemu_plugin_mem_is_store(info))
        return;
    hw = qemu_plugin_get_hwaddr(info, vaddr);
    if (!hw || !qemu_plugin_hwaddr_is_io(hw) || qemu_plugin_hwaddr_phys_addr(hw) != uart_dr)
        return;
    fwrite(counts, sizeof(counts[0]), (size_t)nranges + 1, out);
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    uint64_t pc = qemu_plugin_tb_vaddr(tb);
    int b = nranges;
    for (int i = 0; i < nranges; i++) {
        if (pc >= lo[i] && pc < hi[i]) {
            b = i;
            break;
        }
    }
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &counts[b], n);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        qemu_plugin_register_vcpu_mem_cb(insn, mem_cb, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_W, NULL);
    }
}

static void at_exit(qemu_plugin_id_t id, void *ud)
{
    fflush(out);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "out=", 4)) {
            path = argv[i] + 4;
        } else if (!strncmp(argv[i], "addr=", 5)) {
            uart_dr = strtoull(argv[i] + 5, NULL, 0);
        } else if (!strncmp(argv[i], "range=", 6) && nranges < MAX_RANGES) {
            char *end;
            lo[nranges] = strtoull(argv[i] + 6, &end, 16);
            if (*end != ':')
                return -1;
            hi[nranges] = strtoull(end + 1, NULL, 16);
            nranges++;
        } else {
            return -1;
        }
    }
    if (!path || !info->system_emulation)
        return -1;
    out = fopen(path, "wb");
    if (!out)
        return -1;
    setvbuf(out, NULL, _IOFBF, 1 << 16);
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
