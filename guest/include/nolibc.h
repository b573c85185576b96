/*
 * nolibc.h: what the guest's static arm64 programs without libc share
 * (guest/vsock-test, guest/sndplay): integer types, the raw system call,
 * and _start. Each program names the system-call numbers it uses. They
 * also build for an x86-64 host, for host tests.
 */
#ifndef GUEST_NOLIBC_H
#define GUEST_NOLIBC_H

typedef unsigned long u64;
typedef long i64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

static i64 sys6(i64 n, i64 a, i64 b, i64 c, i64 d, i64 e, i64 f)
{
#if defined(__aarch64__)
    register i64 x8 __asm__("x8") = n;
    register i64 x0 __asm__("x0") = a;
    register i64 x1 __asm__("x1") = b;
    register i64 x2 __asm__("x2") = c;
    register i64 x3 __asm__("x3") = d;
    register i64 x4 __asm__("x4") = e;
    register i64 x5 __asm__("x5") = f;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
#else
    register i64 r10 __asm__("r10") = d;
    register i64 r8 __asm__("r8") = e;
    register i64 r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "+a"(n) : "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return n;
#endif
}
#define sys(n, a, b, c) sys6(n, (i64)(a), (i64)(b), (i64)(c), 0, 0, 0)

int main(int argc, char **argv);

/* The kernel starts us with argc at [sp], then argv. */
#if defined(__aarch64__)
__asm__(".global _start\n"
        "_start:\n"
        "  ldr x0, [sp]\n"
        "  add x1, sp, #8\n"
        "  bl main\n"
        "  mov x8, #94\n"
        "  svc #0\n");
#else
__asm__(".global _start\n"
        "_start:\n"
        "  mov (%rsp), %rdi\n"
        "  lea 8(%rsp), %rsi\n"
        "  and $-16, %rsp\n"
        "  call main\n"
        "  mov %eax, %edi\n"
        "  mov $231, %eax\n"
        "  syscall\n");
#endif

#endif
