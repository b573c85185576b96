/*
 * vsock-test: a static arm64 Linux program (no libc) that checks a vsock
 * stream between two guests and measures its throughput.
 *
 *   vsock-test cid                    print this guest's CID
 *   vsock-test serve PORT             answer clients, one connection at a time
 *   vsock-test send CID PORT BYTES    send BYTES to the server, which checks them
 *   vsock-test recv CID PORT BYTES    have the server send BYTES, check them here
 *   vsock-test cycles CID PORT COUNT  COUNT x (connect, send 4 KiB, check, close)
 *
 * Every connection starts with a 16-byte request from the client: magic
 * "VSKT", mode (0: client sends, 1: server sends), the byte count (u64).
 * The data is a fixed pseudo-random stream (xorshift64*, seed 1), so the
 * receiver checks every byte, not just a sum; it also prints an FNV-1a
 * checksum of what it got. After the data, the receiver answers (or, in
 * mode 1, the client tells the server) an 8-byte verdict: the checksum.
 * Results are single lines a harness can wait for:
 *   VSOCK SEND OK <bytes> bytes <MiB/s> MiB/s fnv <hex>
 *   VSOCK RECV OK ...     VSOCK CYCLES OK <count>
 *   VSOCK <what> FAIL <reason> (errno <n>)
 * Throughput is the guest's own clock (CLOCK_MONOTONIC).
 */
#include "../include/nolibc.h"

#if defined(__aarch64__)
enum {
    SYS_ioctl = 29, SYS_openat = 56, SYS_close = 57, SYS_read = 63, SYS_write = 64,
    SYS_exit_group = 94, SYS_clock_gettime = 113, SYS_socket = 198, SYS_bind = 200,
    SYS_listen = 201, SYS_accept = 202, SYS_connect = 203, SYS_sendto = 206,
};
#elif defined(__x86_64__)
/* Only to test this program on an x86-64 host (vsock loopback, CID 1). */
enum {
    SYS_ioctl = 16, SYS_openat = 257, SYS_close = 3, SYS_read = 0, SYS_write = 1,
    SYS_exit_group = 231, SYS_clock_gettime = 228, SYS_socket = 41, SYS_bind = 49,
    SYS_listen = 50, SYS_accept = 43, SYS_connect = 42, SYS_sendto = 44,
};
#else
#error "arm64 (or x86-64 for host tests) only"
#endif
#define AF_VSOCK 40
#define SOCK_STREAM 1
#define MSG_NOSIGNAL 0x4000
#define VMADDR_CID_ANY 0xffffffffu
#define IOCTL_VM_SOCKETS_GET_LOCAL_CID 0x7b9
#define MAGIC 0x544b5356u /* "VSKT" */

struct sockaddr_vm {
    u16 family, reserved;
    u32 port, cid;
    u8 flags, zero[3];
};


/* --- output ------------------------------------------------------------- */

static char out[256];
static int outlen;

static void put(const char *s) { while (*s && outlen < (int)sizeof out - 1) out[outlen++] = *s++; }
static void putu(u64 v)
{
    char t[24];
    int n = 0;
    do { t[n++] = '0' + v % 10; v /= 10; } while (v);
    while (n) { char c[2] = { t[--n], 0 }; put(c); }
}
static void putx(u64 v)
{
    for (int i = 60; i >= 0; i -= 4) { char c[2] = { "0123456789abcdef"[(v >> i) & 15], 0 }; put(c); }
}
static void flush(void)
{
    out[outlen++] = '\n';
    sys(SYS_write, 1, out, outlen);
    outlen = 0;
}
static void __attribute__((noreturn)) quit(int code)
{
    sys(SYS_exit_group, code, 0, 0);
    for (;;) {}
}
static void __attribute__((noreturn)) fail(const char *what, const char *why, i64 err)
{
    outlen = 0;
    put("VSOCK "); put(what); put(" FAIL "); put(why);
    if (err < 0) { put(" (errno "); putu(-err); put(")"); }
    flush();
    quit(1);
}

/* --- arguments ---------------------------------------------------------- */

static int streq(const char *a, const char *b)
{
    while (*a && *a == *b) { a++; b++; }
    return *a == *b;
}
static u64 number(const char *s, const char *what)
{
    u64 v = 0;
    if (!*s) fail(what, "bad number", 0);
    for (; *s; s++) {
        if (*s == 'K' && !s[1]) return v << 10;
        if (*s == 'M' && !s[1]) return v << 20;
        if (*s == 'G' && !s[1]) return v << 30;
        if (*s < '0' || *s > '9') fail(what, "bad number", 0);
        v = v * 10 + (u64)(*s - '0');
    }
    return v;
}

/* --- the data stream ---------------------------------------------------- */

struct stream { u64 state, fnv; u8 word[8]; u32 used; };

static void stream_init(struct stream *s) { s->state = 1; s->fnv = 0xcbf29ce484222325ul; s->used = 8; }
static u8 stream_next(struct stream *s)
{
    if (s->used == 8) {
        u64 x = s->state;
        x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
        s->state = x;
        x *= 0x2545f4914f6cdd1dul;
        for (int i = 0; i < 8; i++) s->word[i] = (u8)(x >> (8 * i));
        s->used = 0;
    }
    return s->word[s->used++];
}
static void fnv(struct stream *s, const u8 *p, u64 n)
{
    for (u64 i = 0; i < n; i++) s->fnv = (s->fnv ^ p[i]) * 0x100000001b3ul;
}

static u8 buf[65536];

static void send_all(int fd, const void *p, u64 n, const char *what)
{
    const u8 *b = p;
    while (n) {
        i64 r = sys6(SYS_sendto, fd, (i64)b, (i64)n, MSG_NOSIGNAL, 0, 0);
        if (r <= 0) fail(what, r == 0 ? "send returned 0" : "send", r);
        b += r; n -= (u64)r;
    }
}
static void recv_all(int fd, void *p, u64 n, const char *what)
{
    u8 *b = p;
    while (n) {
        i64 r = sys(SYS_read, fd, b, n);
        if (r == 0) fail(what, "connection closed early", 0);
        if (r < 0) fail(what, "recv", r);
        b += r; n -= (u64)r;
    }
}

/* Sends `bytes` of the stream; returns its checksum. */
static u64 send_stream(int fd, u64 bytes, const char *what)
{
    struct stream s;
    stream_init(&s);
    while (bytes) {
        u64 n = bytes < sizeof buf ? bytes : sizeof buf;
        for (u64 i = 0; i < n; i++) buf[i] = stream_next(&s);
        fnv(&s, buf, n);
        send_all(fd, buf, n, what);
        bytes -= n;
    }
    return s.fnv;
}

/* Receives `bytes` and checks each against the stream; returns the checksum. */
static u64 recv_stream(int fd, u64 bytes, const char *what)
{
    struct stream s;
    u64 at = 0;
    stream_init(&s);
    while (at < bytes) {
        u64 want = bytes - at < sizeof buf ? bytes - at : sizeof buf;
        i64 r = sys(SYS_read, fd, buf, want);
        if (r == 0) fail(what, "connection closed early", 0);
        if (r < 0) fail(what, "recv", r);
        for (i64 i = 0; i < r; i++) {
            if (buf[i] != stream_next(&s)) {
                outlen = 0;
                put("VSOCK "); put(what); put(" FAIL wrong byte at offset "); putu(at + (u64)i);
                flush();
                quit(1);
            }
        }
        fnv(&s, buf, (u64)r);
        at += (u64)r;
    }
    return s.fnv;
}

static u64 now_ns(void)
{
    i64 ts[2];
    sys(SYS_clock_gettime, 1 /* CLOCK_MONOTONIC */, ts, 0);
    return (u64)ts[0] * 1000000000ul + (u64)ts[1];
}

static void report(const char *what, u64 bytes, u64 ns, u64 sum)
{
    /* MiB/s with two decimals, in integers. */
    u64 centi = ns ? (bytes * 100 / 1048576) * 1000000000ul / ns : 0;
    put("VSOCK "); put(what); put(" OK "); putu(bytes); put(" bytes ");
    putu(centi / 100); put("."); putu(centi / 10 % 10); putu(centi % 10);
    put(" MiB/s fnv "); putx(sum);
    flush();
}

#ifdef TCP_LOOPBACK
/* Host test build: the same protocol over TCP on 127.0.0.1 (CIDs ignored). */
struct sockaddr_in4 { u16 family, port; u32 addr; u8 zero[8]; };
#define VSOCK_ADDR(var, cid_, port_) \
    struct sockaddr_in4 var = { .family = 2, .port = (u16)((port_) >> 8 | (port_) << 8), \
                                .addr = (cid_) == VMADDR_CID_ANY ? 0 : 0x0100007f }
#define SOCKET_FAMILY 2
#else
#define VSOCK_ADDR(var, cid_, port_) \
    struct sockaddr_vm var = { .family = AF_VSOCK, .port = (port_), .cid = (cid_) }
#define SOCKET_FAMILY AF_VSOCK
#endif

static int vsock_socket(const char *what)
{
    i64 fd = sys(SYS_socket, SOCKET_FAMILY, SOCK_STREAM, 0);
    if (fd < 0) fail(what, "socket(AF_VSOCK)", fd);
    return (int)fd;
}

static int connect_to(u32 cid, u32 port, const char *what)
{
    VSOCK_ADDR(a, cid, port);
    int fd = vsock_socket(what);
    i64 r = sys(SYS_connect, fd, &a, sizeof a);
    if (r < 0) fail(what, "connect", r);
    return fd;
}

static void request(int fd, u32 mode, u64 bytes, const char *what)
{
    u32 h[4] = { MAGIC, mode, (u32)bytes, (u32)(bytes >> 32) };
    send_all(fd, h, sizeof h, what);
}

static void client(u32 cid, u32 port, u32 mode, u64 bytes, int quiet)
{
    const char *what = mode ? "RECV" : "SEND";
    int fd = connect_to(cid, port, what);
    u64 t0 = now_ns(), sum, peer;
    request(fd, mode, bytes, what);
    if (mode == 0) {
        sum = send_stream(fd, bytes, what);
        recv_all(fd, &peer, sizeof peer, what);
    } else {
        sum = recv_stream(fd, bytes, what);
        send_all(fd, &sum, sizeof sum, what);
        peer = sum;
    }
    u64 t1 = now_ns();
    sys(SYS_close, fd, 0, 0);
    if (peer != sum) fail(what, "the peer's checksum differs", 0);
    if (!quiet) report(what, bytes, t1 - t0, sum);
}

static void __attribute__((noreturn)) serve(u32 port)
{
    VSOCK_ADDR(a, VMADDR_CID_ANY, port);
    int ls = vsock_socket("SERVE");
    i64 r = sys(SYS_bind, ls, &a, sizeof a);
    if (r < 0) fail("SERVE", "bind", r);
    r = sys(SYS_listen, ls, 8, 0);
    if (r < 0) fail("SERVE", "listen", r);
    put("VSOCK SERVE listening on port "); putu(port); flush();
    for (;;) {
        i64 fd = sys(SYS_accept, ls, 0, 0);
        if (fd < 0) fail("SERVE", "accept", fd);
        u32 h[4];
        u8 *p = (u8 *)h;
        u64 got = 0;
        while (got < sizeof h) {
            r = sys(SYS_read, fd, p + got, sizeof h - got);
            if (r <= 0) break;
            got += (u64)r;
        }
        u64 bytes = (u64)h[2] | (u64)h[3] << 32, sum, peer;
        if (got == sizeof h && h[0] == MAGIC && h[1] == 0) {
            /* Checked here too: a wrong byte ends the server with a FAIL line. */
            sum = recv_stream((int)fd, bytes, "SERVE");
            send_all((int)fd, &sum, sizeof sum, "SERVE");
        } else if (got == sizeof h && h[0] == MAGIC && h[1] == 1) {
            sum = send_stream((int)fd, bytes, "SERVE");
            r = sys(SYS_read, fd, &peer, sizeof peer);
            if (r == sizeof peer && peer != sum) fail("SERVE", "the client's checksum differs", 0);
        } else {
            put("VSOCK SERVE bad request ignored"); flush();
        }
        sys(SYS_close, fd, 0, 0);
    }
}

static u32 local_cid(void)
{
    i64 fd = sys6(SYS_openat, -100, (i64)"/dev/vsock", 0, 0, 0, 0);
    u32 cid = 0;
    if (fd < 0) fail("CID", "open /dev/vsock", fd);
    i64 r = sys(SYS_ioctl, fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid);
    if (r < 0) fail("CID", "ioctl", r);
    sys(SYS_close, fd, 0, 0);
    return cid;
}

static void usage(void)
{
    put("usage: vsock-test cid | serve PORT | send CID PORT BYTES | recv CID PORT BYTES | cycles CID PORT COUNT");
    flush();
    quit(2);
}

int main(int argc, char **argv)
{
    if (argc == 2 && streq(argv[1], "cid")) {
        put("VSOCK CID "); putu(local_cid()); flush();
        return 0;
    }
    if (argc == 3 && streq(argv[1], "serve")) serve((u32)number(argv[2], "SERVE"));
    if (argc != 5) usage();
    u32 cid = (u32)number(argv[2], "ARGS"), port = (u32)number(argv[3], "ARGS");
    u64 n = number(argv[4], "ARGS");
    if (streq(argv[1], "send")) client(cid, port, 0, n, 0);
    else if (streq(argv[1], "recv")) client(cid, port, 1, n, 0);
    else if (streq(argv[1], "cycles")) {
        for (u64 i = 0; i < n; i++) client(cid, port, 0, 4096, 1);
        put("VSOCK CYCLES OK "); putu(n); flush();
    } else usage();
    return 0;
}
