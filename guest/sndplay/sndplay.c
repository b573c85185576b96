/*
 * sndplay: a static arm64 Linux program (no libc) that plays the counter
 * signal on an ALSA PCM playback device through the kernel's PCM ioctls,
 * and reports every underrun (XRUN). The sound tests' guest player.
 *
 *   sndplay [OPTIONS] play SECONDS   play SECONDS of the signal on the device
 *   sndplay [OPTIONS] wav SECONDS    write the frames `play` would write (with
 *                                    -c, -t) as a WAV file to stdout (no
 *                                    device: to test the checker)
 * Options:
 *   -D PATH    PCM playback device (default /dev/snd/pcmC0D0p)
 *   -r RATE    frames per second (default 48000)
 *   -p FRAMES  period size in frames (default 1024)
 *   -n COUNT   periods in the ring buffer (default 4)
 *   -f FRAME   the counter value of the first frame (default 0)
 *   -c COUNT   cycles (default 1): COUNT times prepare, play SECONDS, drain
 *              (start, stop, start ...); the counter continues across them
 *   -R         close and reopen the device between cycles (new hw params)
 *   -g MS      pause MS milliseconds between cycles
 *   -t MS      after the signal, play MS milliseconds of silence before each
 *              drain (default 0), for devices that drop what they still
 *              buffer when the stream stops (QEMU's intel-hda does)
 *
 * The signal (docs/sound-guest.md; scripts/check-wav.py checks it): 2
 * channels of signed 16-bit little-endian samples; frame n (a 24-bit
 * counter, n < 2^24) is
 *   left  = n & 0xffff
 *   right = (n >> 16) & 0xff | check(n) << 8
 *   check(n) = ((n * 0x9e3779b1 + 0x7f4a7c15) mod 2^32) >> 24
 * Every frame is different, none is silence (0, 0), and the check byte
 * makes a frame with swapped channels or a corrupted sample stand out.
 *
 * Output, one line each, for a harness to wait for:
 *   SND OPEN <path> rate <r> period <p> buffer <b> frames
 *   SND XRUN underrun before frame <n> (cycle <c>), recovered
 *   SND PLAY OK frames <n> first <f> cycles <c> xruns 0 tail_ms <m> elapsed_ms <t>
 *       max_avail <a> buffer <b>                 (one line)
 *   SND PLAY XRUN frames <n> ... xruns <x> ...   (the same, with underruns; exit 3)
 *   SND <what> FAIL <reason> (errno <e>)         (exit 1)
 * max_avail is the largest number of free frames in the ring buffer that the
 * kernel saw (buffer - max_avail is how close playback came to an underrun).
 * elapsed_ms is CLOCK_MONOTONIC from the first write to the end of the drain.
 */
#include "../include/nolibc.h"

#if defined(__aarch64__)
enum {
    SYS_ioctl = 29, SYS_openat = 56, SYS_close = 57, SYS_write = 64, SYS_exit_group = 94,
    SYS_nanosleep = 101, SYS_clock_gettime = 113,
};
#elif defined(__x86_64__)
/* Only to test this program on an x86-64 host (the wav command). */
enum {
    SYS_ioctl = 16, SYS_openat = 257, SYS_close = 3, SYS_write = 1, SYS_exit_group = 231,
    SYS_nanosleep = 35, SYS_clock_gettime = 228,
};
#else
#error "arm64 (or x86-64 for host tests) only"
#endif
#define O_RDWR 2
#define O_CLOEXEC 02000000
#define EINTR 4
#define EAGAIN 11
#define EPIPE 32
#define ESTRPIPE 86

/* --- the ALSA PCM ioctl ABI (include/uapi/sound/asound.h, 64-bit) ------- */

/* Ioctl numbers: 'A' commands; the size of the argument is encoded in them. */
#define PCM_IOCTL_HW_PARAMS 0xc2604111u     /* _IOWR('A', 0x11, hw_params) */
#define PCM_IOCTL_HW_FREE 0x4112u           /* _IO('A', 0x12) */
#define PCM_IOCTL_SW_PARAMS 0xc0884113u     /* _IOWR('A', 0x13, sw_params) */
#define PCM_IOCTL_STATUS 0x80984120u        /* _IOR('A', 0x20, status) */
#define PCM_IOCTL_PREPARE 0x4140u           /* _IO('A', 0x40) */
#define PCM_IOCTL_DRAIN 0x4144u             /* _IO('A', 0x44) */
#define PCM_IOCTL_WRITEI_FRAMES 0x40184150u /* _IOW('A', 0x50, xferi) */

/* Parameter indexes: masks first, then intervals from 8. */
enum {
    PARAM_ACCESS = 0, PARAM_FORMAT = 1, PARAM_SUBFORMAT = 2,
    PARAM_FIRST_INTERVAL = 8,
    PARAM_CHANNELS = 10, PARAM_RATE = 11, PARAM_PERIOD_SIZE = 13, PARAM_PERIODS = 15,
    PARAM_BUFFER_SIZE = 17, PARAM_LAST_INTERVAL = 19,
};
#define ACCESS_RW_INTERLEAVED 3
#define FORMAT_S16_LE 2
#define SUBFORMAT_STD 0
#define INTERVAL_INTEGER 4u /* bit field: openmin 1, openmax 2, integer 4, empty 8 */

struct interval { u32 min, max, flags; };
struct hw_params {
    u32 flags;
    u32 masks[8][8];          /* 3 masks + 5 reserved, 256 bits each */
    struct interval iv[21];   /* 12 intervals + 9 reserved */
    u32 rmask, cmask, info, msbits, rate_num, rate_den;
    u64 fifo_size;
    u8 sync[16], reserved[48];
};
struct sw_params {
    int tstamp_mode;
    u32 period_step, sleep_min;
    u64 avail_min, xfer_align, start_threshold, stop_threshold, silence_threshold, silence_size,
        boundary;
    u32 proto, tstamp_type;
    u8 reserved[56];
};
struct timespec64 { i64 sec, nsec; };
struct pcm_status {
    int state;
    struct timespec64 trigger_tstamp, tstamp;
    u64 appl_ptr, hw_ptr;
    i64 delay;
    u64 avail, avail_max, overrange;
    int suspended_state;
    u32 audio_tstamp_data;
    struct timespec64 audio_tstamp, driver_tstamp;
    u32 audio_tstamp_accuracy;
    u8 reserved[20];
};
struct xferi { i64 result; void *buf; u64 frames; };

_Static_assert(sizeof(struct hw_params) == 608, "snd_pcm_hw_params");
_Static_assert(__builtin_offsetof(struct hw_params, iv) == 260, "hw_params.intervals");
_Static_assert(__builtin_offsetof(struct hw_params, rmask) == 512, "hw_params.rmask");
_Static_assert(sizeof(struct sw_params) == 136, "snd_pcm_sw_params");
_Static_assert(__builtin_offsetof(struct sw_params, boundary) == 64, "sw_params.boundary");
_Static_assert(sizeof(struct pcm_status) == 152, "snd_pcm_status");
_Static_assert(__builtin_offsetof(struct pcm_status, avail_max) == 72, "status.avail_max");
_Static_assert(sizeof(struct xferi) == 24, "snd_xferi");

/* --- system calls ------------------------------------------------------- */


/* The compiler may call these for structure copies and clears. */
void *memset(void *d, int c, u64 n)
{
    u8 *p = d;
    while (n--) *p++ = (u8)c;
    return d;
}
void *memcpy(void *d, const void *s, u64 n)
{
    u8 *p = d;
    const u8 *q = s;
    while (n--) *p++ = *q++;
    return d;
}

/* --- output ------------------------------------------------------------- */

static char out[256];
static int outlen;

static void put(const char *s) { while (*s && outlen < (int)sizeof out - 1) out[outlen++] = *s++; }
static void putu(u64 v)
{
    char t[24];
    int n = 0;
    do { t[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n && outlen < (int)sizeof out - 1) out[outlen++] = t[--n];
}
static void flush(int fd)
{
    out[outlen++] = '\n';
    sys(SYS_write, fd, out, outlen);
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
    put("SND "); put(what); put(" FAIL "); put(why);
    if (err < 0) { put(" (errno "); putu((u64)-err); put(")"); }
    flush(2);
    quit(1);
}

/* --- arguments ---------------------------------------------------------- */

static int streq(const char *a, const char *b)
{
    while (*a && *a == *b) { a++; b++; }
    return *a == *b;
}
static u64 number(const char *s)
{
    u64 v = 0;
    if (!*s) fail("ARGS", "bad number", 0);
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 0xffffffffu) fail("ARGS", "bad number", 0);
        v = v * 10 + (u64)(*s - '0');
    }
    return v;
}

/* --- the signal ----------------------------------------------------------- */

#define COUNTER_LIMIT (1ul << 24)

static u32 check_byte(u32 n) { return (n * 0x9e3779b1u + 0x7f4a7c15u) >> 24; }

/* Fills `frames` frames of the signal from counter value `n` into `buf`. */
static void signal_fill(u16 *buf, u64 frames, u32 n)
{
    for (u64 i = 0; i < frames; i++, n++) {
        buf[2 * i] = (u16)(n & 0xffff);
        buf[2 * i + 1] = (u16)(((n >> 16) & 0xff) | check_byte(n) << 8);
    }
}

/* --- configuration ------------------------------------------------------ */

struct config {
    const char *path;
    u32 rate, period, periods, first, cycles, reopen, gap_ms, tail_ms;
    u64 frames;   /* per cycle */
    u64 tail;     /* frames of silence after the signal, per cycle */
};

/* --- time --------------------------------------------------------------- */

static u64 now_ns(void)
{
    struct timespec64 ts;
    sys(SYS_clock_gettime, 1 /* CLOCK_MONOTONIC */, &ts, 0);
    return (u64)ts.sec * 1000000000ul + (u64)ts.nsec;
}
static void sleep_ms(u32 ms)
{
    struct timespec64 ts = { ms / 1000, (i64)(ms % 1000) * 1000000 };
    while (sys(SYS_nanosleep, &ts, &ts, 0) == -EINTR) {}
}

/* --- the PCM device ------------------------------------------------------- */

struct pcm {
    int fd;
    u64 period, buffer;
};

static void set_mask(struct hw_params *hp, int param, u32 bit)
{
    for (int i = 0; i < 8; i++) hp->masks[param][i] = 0;
    hp->masks[param][bit / 32] = 1u << (bit % 32);
}
static void set_interval(struct hw_params *hp, int param, u32 min, u32 max)
{
    struct interval *iv = &hp->iv[param - PARAM_FIRST_INTERVAL];
    iv->min = min;
    iv->max = max;
    iv->flags = INTERVAL_INTEGER;
}
static u32 interval_value(const struct hw_params *hp, int param)
{
    return hp->iv[param - PARAM_FIRST_INTERVAL].min;
}

/* Every configuration allowed ("any"), then ours: interleaved S16_LE stereo
 * at `rate`, periods of `period` frames (or within [min, max]). */
static void hw_params_init(struct hw_params *hp, const struct config *c, u32 pmin, u32 pmax,
                           u32 nmin, u32 nmax)
{
    memset(hp, 0, sizeof *hp);
    for (int m = PARAM_ACCESS; m <= PARAM_SUBFORMAT; m++)
        for (int i = 0; i < 8; i++) hp->masks[m][i] = ~0u;
    for (int p = PARAM_FIRST_INTERVAL; p <= PARAM_LAST_INTERVAL; p++) {
        hp->iv[p - PARAM_FIRST_INTERVAL].min = 0;
        hp->iv[p - PARAM_FIRST_INTERVAL].max = ~0u;
    }
    hp->rmask = ~0u;
    hp->info = ~0u;
    set_mask(hp, PARAM_ACCESS, ACCESS_RW_INTERLEAVED);
    set_mask(hp, PARAM_FORMAT, FORMAT_S16_LE);
    set_mask(hp, PARAM_SUBFORMAT, SUBFORMAT_STD);
    set_interval(hp, PARAM_CHANNELS, 2, 2);
    set_interval(hp, PARAM_RATE, c->rate, c->rate);
    set_interval(hp, PARAM_PERIOD_SIZE, pmin, pmax);
    set_interval(hp, PARAM_PERIODS, nmin, nmax);
}

static void pcm_open(struct pcm *p, const struct config *c)
{
    struct hw_params hp;
    struct sw_params sp;
    i64 fd = sys6(SYS_openat, -100, (i64)c->path, O_RDWR | O_CLOEXEC, 0, 0, 0);
    if (fd < 0) fail("OPEN", c->path, fd);
    p->fd = (int)fd;

    /* The exact geometry asked for; if the driver refuses it, the nearest
     * it accepts (the kernel then picks the smallest period, largest buffer). */
    hw_params_init(&hp, c, c->period, c->period, c->periods, c->periods);
    i64 r = sys(SYS_ioctl, fd, PCM_IOCTL_HW_PARAMS, &hp);
    if (r == -22 /* EINVAL */) {
        u32 pmin = c->period / 4 ? c->period / 4 : 1;
        hw_params_init(&hp, c, pmin, c->period * 4, 2, c->periods * 4);
        r = sys(SYS_ioctl, fd, PCM_IOCTL_HW_PARAMS, &hp);
    }
    if (r < 0) fail("OPEN", "HW_PARAMS (S16_LE, 2 channels, that rate)", r);
    if (interval_value(&hp, PARAM_RATE) != c->rate || interval_value(&hp, PARAM_CHANNELS) != 2)
        fail("OPEN", "HW_PARAMS gave another rate or channel count", 0);
    p->period = interval_value(&hp, PARAM_PERIOD_SIZE);
    p->buffer = interval_value(&hp, PARAM_BUFFER_SIZE);
    if (p->period == 0 || p->buffer < p->period) fail("OPEN", "HW_PARAMS gave a bad geometry", 0);

    /* Start when the buffer is full, stop on underrun (XRUN), wake up per period. */
    memset(&sp, 0, sizeof sp);
    sp.period_step = 1;
    sp.avail_min = p->period;
    sp.start_threshold = p->buffer;
    sp.stop_threshold = p->buffer;
    r = sys(SYS_ioctl, fd, PCM_IOCTL_SW_PARAMS, &sp);
    if (r < 0) fail("OPEN", "SW_PARAMS", r);

    put("SND OPEN "); put(c->path); put(" rate "); putu(c->rate); put(" period ");
    putu(p->period); put(" buffer "); putu(p->buffer); put(" frames");
    flush(1);
}

static void pcm_close(struct pcm *p)
{
    sys(SYS_ioctl, p->fd, PCM_IOCTL_HW_FREE, 0);
    sys(SYS_close, p->fd, 0, 0);
    p->fd = -1;
}

/* One period of frames, generated just before it is written. */
#define MAX_PERIOD 16384
static u16 chunk[MAX_PERIOD * 2];

struct run { u64 xruns, max_avail; };

/* The kernel's avail_max is the most free space it saw since the last
 * STATUS: read it after each write (and once after PREPARE, to leave out the
 * drain of the previous cycle, during which the buffer runs empty). */
static void note_avail(struct pcm *p, struct run *run, int record)
{
    struct pcm_status st;
    if (sys(SYS_ioctl, p->fd, PCM_IOCTL_STATUS, &st) == 0 && record && st.avail_max > run->max_avail)
        run->max_avail = st.avail_max;
}

/* The frames of a cycle: the signal and the tail, padded with silence to a
 * whole period (as aplay pads its last chunk). Linux's virtio-snd driver (6.12's)
 * sends the device whole periods only, so a drain whose last period is
 * partial never ends: it times out (EIO). */
static u64 cycle_frames(const struct config *c, u64 period)
{
    u64 n = c->frames + c->tail;
    return period ? (n + period - 1) / period * period : n;
}

/* Plays frames [first, first + frames) of the signal, then `tail` frames of
 * silence (and the padding to a whole period), then drains. */
static void play_cycle(struct pcm *p, const struct config *c, u32 first, u32 cycle, struct run *run)
{
    i64 r = sys(SYS_ioctl, p->fd, PCM_IOCTL_PREPARE, 0);
    if (r < 0) fail("PLAY", "PREPARE", r);
    note_avail(p, run, 0);
    u64 done = 0;
    u64 step = p->period < MAX_PERIOD ? p->period : MAX_PERIOD;
    u64 total = cycle_frames(c, p->period);
    while (done < total) {
        u64 left = total - done;
        u64 n = left < step ? left : step;
        if (done < c->frames) {
            if (n > c->frames - done) n = c->frames - done;
            signal_fill(chunk, n, first + (u32)done);
        } else {
            memset(chunk, 0, n * 4);
        }
        u64 off = 0;
        while (off < n) {
            struct xferi x = { 0, chunk + 2 * off, n - off };
            r = sys(SYS_ioctl, p->fd, PCM_IOCTL_WRITEI_FRAMES, &x);
            if (r == -EINTR || r == -EAGAIN) continue;
            if (r == -EPIPE) {
                /* Underrun: the kernel stopped the stream. Nothing of this
                 * write was taken: prepare and write it again. */
                run->xruns++;
                put("SND XRUN underrun before frame "); putu(first + done + off);
                put(" (cycle "); putu(cycle); put("), recovered");
                flush(1);
                r = sys(SYS_ioctl, p->fd, PCM_IOCTL_PREPARE, 0);
                if (r < 0) fail("PLAY", "PREPARE after an underrun", r);
                note_avail(p, run, 0);
                continue;
            }
            if (r == -ESTRPIPE) fail("PLAY", "WRITEI: the device was suspended", r);
            if (r < 0) fail("PLAY", "WRITEI", r);
            if (x.result <= 0 || (u64)x.result > n - off) fail("PLAY", "WRITEI wrote nothing", 0);
            off += (u64)x.result;
        }
        done += n;
        note_avail(p, run, 1);
    }
    /* DRAIN starts a stream that never reached the start threshold, and
     * returns when the device has played everything. */
    for (;;) {
        r = sys(SYS_ioctl, p->fd, PCM_IOCTL_DRAIN, 0);
        if (r != -EINTR) break;
    }
    if (r == -EPIPE) {
        run->xruns++;
        put("SND XRUN underrun while draining (cycle "); putu(cycle); put(")");
        flush(1);
    } else if (r < 0) {
        fail("PLAY", "DRAIN", r);
    }
}

static void play(const struct config *c)
{
    struct pcm p;
    struct run run = { 0, 0 };
    pcm_open(&p, c);
    u64 t0 = now_ns();
    for (u32 i = 0; i < c->cycles; i++) {
        if (i > 0 && c->reopen) {
            pcm_close(&p);
            pcm_open(&p, c);
        }
        if (i > 0 && c->gap_ms) sleep_ms(c->gap_ms);
        play_cycle(&p, c, c->first + (u32)(i * c->frames), i, &run);
    }
    u64 t1 = now_ns();
    pcm_close(&p);
    put(run.xruns ? "SND PLAY XRUN frames " : "SND PLAY OK frames ");
    putu(c->frames * c->cycles); put(" first "); putu(c->first);
    put(" cycles "); putu(c->cycles); put(" xruns "); putu(run.xruns);
    put(" tail_ms "); putu(c->tail_ms);
    put(" elapsed_ms "); putu((t1 - t0) / 1000000); put(" max_avail "); putu(run.max_avail);
    put(" buffer "); putu(p.buffer);
    flush(1);
    quit(run.xruns ? 3 : 0);
}

/* --- the wav command ---------------------------------------------------- */

static void write_all(const void *buf, u64 n)
{
    const u8 *b = buf;
    while (n) {
        i64 r = sys(SYS_write, 1, b, n);
        if (r == -EINTR) continue;
        if (r <= 0) fail("WAV", "write", r);
        b += r;
        n -= (u64)r;
    }
}
static void le(u8 *p, u32 v, int bytes)
{
    for (int i = 0; i < bytes; i++) p[i] = (u8)(v >> (8 * i));
}

static void wav(const struct config *c)
{
    /* The padding as for the period asked (-p): what `play` writes when the
     * device grants it. */
    u64 tail = cycle_frames(c, c->period) - c->frames;
    u64 total = (c->frames + tail) * c->cycles;
    if (total * 4 > 0xffffffffu - 36) fail("WAV", "too long for a WAV file", 0);
    u8 h[44];
    memcpy(h, "RIFF", 4);
    memcpy(h + 8, "WAVEfmt ", 8);
    memcpy(h + 36, "data", 4);
    le(h + 4, (u32)(36 + total * 4), 4);
    le(h + 16, 16, 4);             /* fmt chunk size */
    le(h + 20, 1, 2);              /* PCM */
    le(h + 22, 2, 2);              /* channels */
    le(h + 24, c->rate, 4);
    le(h + 28, c->rate * 4, 4);    /* bytes per second */
    le(h + 32, 4, 2);              /* bytes per frame */
    le(h + 34, 16, 2);             /* bits per sample */
    le(h + 40, (u32)(total * 4), 4);
    write_all(h, sizeof h);
    for (u32 i = 0; i < c->cycles; i++) {
        u32 first = c->first + (u32)(i * c->frames);
        for (u64 done = 0; done < c->frames;) {
            u64 n = c->frames - done < MAX_PERIOD ? c->frames - done : MAX_PERIOD;
            signal_fill(chunk, n, first + (u32)done);
            write_all(chunk, n * 4);
            done += n;
        }
        memset(chunk, 0, sizeof chunk);
        for (u64 done = 0; done < tail;) {
            u64 n = tail - done < MAX_PERIOD ? tail - done : MAX_PERIOD;
            write_all(chunk, n * 4);
            done += n;
        }
    }
    quit(0);
}

/* --- main --------------------------------------------------------------- */

static void __attribute__((noreturn)) usage(void)
{
    put("usage: sndplay [-D PATH] [-r RATE] [-p FRAMES] [-n PERIODS] [-f FIRST] [-c CYCLES] [-R] "
        "[-g MS] [-t MS] play|wav SECONDS");
    flush(2);
    quit(2);
}

int main(int argc, char **argv)
{
    struct config c = { "/dev/snd/pcmC0D0p", 48000, 1024, 4, 0, 1, 0, 0, 0, 0, 0 };
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *o = argv[i];
        if (streq(o, "-R")) { c.reopen = 1; continue; }
        if (o[1] == 0 || o[2] != 0 || i + 1 >= argc) usage();
        const char *v = argv[++i];
        switch (o[1]) {
        case 'D': c.path = v; break;
        case 'r': c.rate = (u32)number(v); break;
        case 'p': c.period = (u32)number(v); break;
        case 'n': c.periods = (u32)number(v); break;
        case 'f': c.first = (u32)number(v); break;
        case 'c': c.cycles = (u32)number(v); break;
        case 'g': c.gap_ms = (u32)number(v); break;
        case 't': c.tail_ms = (u32)number(v); break;
        default: usage();
        }
    }
    if (argc - i != 2) usage();
    u64 seconds = number(argv[i + 1]);
    if (c.rate < 1000 || c.rate > 384000) fail("ARGS", "rate out of range", 0);
    if (c.period < 16 || c.period > MAX_PERIOD) fail("ARGS", "period out of range (16..16384)", 0);
    if (c.periods < 2 || c.periods > 1024) fail("ARGS", "periods out of range (2..1024)", 0);
    if (c.cycles < 1 || c.cycles > 1000) fail("ARGS", "cycles out of range (1..1000)", 0);
    if (c.tail_ms > 10000) fail("ARGS", "tail out of range (0..10000 ms)", 0);
    c.frames = seconds * c.rate;
    c.tail = (u64)c.tail_ms * c.rate / 1000;
    if (c.frames == 0 || c.first + c.frames * c.cycles > COUNTER_LIMIT)
        fail("ARGS", "the counter would pass 2^24 (lower -f, SECONDS or -c)", 0);
    if (streq(argv[i], "play")) play(&c);
    if (streq(argv[i], "wav")) wav(&c);
    usage();
}
