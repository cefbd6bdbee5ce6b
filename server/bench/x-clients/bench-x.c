/*
 * bench-x: the two X clients of the streaming benchmark (compiled at bench time).
 *
 *   bench-x clock X Y
 *       A time code for damage-to-paint latency: every 16 ms it draws the wall-clock time
 *       in ms modulo 2^24 as 24 cells of 16x16 px (MSB first, white = 1) and, below, the
 *       same 24 cells inverted, so a reader can tell a torn or smeared block (the rows do
 *       not complement each other) from a good one. Solid 16x16 cells survive JPEG.
 *       The window is 384x32 px, override-redirect, raised on every tick.
 *
 *   bench-x anim X Y W H FPS
 *       A photo-like moving picture: a plasma (sum of sine tables: smooth gradients) plus
 *       film grain (a noise texture at a random offset per frame), so every frame changes
 *       every pixel, compresses like a photo with JPEG and badly without loss, and holds no
 *       moved content a copy detector could find. Starts paused showing frame 0;
 *       SIGUSR2 runs it, SIGUSR1 pauses it (it then prints "paused frames=N" for the frames
 *       drawn since it last ran). MIT-SHM when the server offers it.
 *
 * Both print "ready 0x<window id>" on stdout once the window is mapped and drawn.
 * Both use CLOCK_REALTIME, the same clock as the browser's Date.now().
 */
#define _GNU_SOURCE
#include <X11/Xlib.h>
#include <X11/Xutil.h>
#include <X11/extensions/XShm.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <time.h>

#define CELL 16      /* px, side of one time-code cell */
#define BITS 24      /* time-code bits: ms modulo 2^24 (4.6 hours) */
#define CLOCK_PERIOD_NS 16000000L /* 16 ms between time-code redraws */

static volatile sig_atomic_t running_flag = 0; /* anim: 1 while animating */
static volatile sig_atomic_t pause_report = 0; /* anim: print the frame count once */
static volatile sig_atomic_t quit_flag = 0;

static void on_signal(int sig) {
  if (sig == SIGUSR2) running_flag = 1;
  else if (sig == SIGUSR1) { running_flag = 0; pause_report = 1; }
  else quit_flag = 1;
}

static void die(const char *msg) {
  fprintf(stderr, "bench-x: %s\n", msg);
  exit(1);
}

static int64_t now_ns(clockid_t clk) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until(int64_t deadline_ns) {
  struct timespec ts = { deadline_ns / 1000000000LL, deadline_ns % 1000000000LL };
  /* interrupted by a signal: return, the caller re-checks its flags */
  clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

static Window make_window(Display *dpy, int x, int y, int w, int h) {
  int scr = DefaultScreen(dpy);
  XSetWindowAttributes attrs;
  attrs.override_redirect = True; /* exact place, no decoration, above managed windows */
  attrs.background_pixel = BlackPixel(dpy, scr);
  attrs.event_mask = ExposureMask | StructureNotifyMask;
  Window win = XCreateWindow(dpy, RootWindow(dpy, scr), x, y, (unsigned)w, (unsigned)h, 0, CopyFromParent,
                             InputOutput, CopyFromParent, CWOverrideRedirect | CWBackPixel | CWEventMask, &attrs);
  XMapRaised(dpy, win);
  for (;;) { /* wait until mapped */
    XEvent ev;
    XNextEvent(dpy, &ev);
    if (ev.type == MapNotify) break;
  }
  return win;
}

static void drain_events(Display *dpy, int *exposed) {
  while (XPending(dpy)) {
    XEvent ev;
    XNextEvent(dpy, &ev);
    if (ev.type == Expose) *exposed = 1;
  }
}

/* ---- clock ---- */

static void draw_clock(Display *dpy, Window win, GC white, GC black) {
  uint32_t ms = (uint32_t)((now_ns(CLOCK_REALTIME) / 1000000LL) & ((1u << BITS) - 1));
  XRectangle ones[2 * BITS], zeros[2 * BITS];
  int n1 = 0, n0 = 0;
  for (int i = 0; i < BITS; i++) {
    int bit = (ms >> (BITS - 1 - i)) & 1;
    XRectangle top = { (short)(i * CELL), 0, CELL, CELL };
    XRectangle bottom = { (short)(i * CELL), CELL, CELL, CELL };
    if (bit) { ones[n1++] = top; zeros[n0++] = bottom; }
    else { zeros[n0++] = top; ones[n1++] = bottom; }
  }
  XFillRectangles(dpy, win, white, ones, n1);
  XFillRectangles(dpy, win, black, zeros, n0);
  XRaiseWindow(dpy, win); /* stay above windows that are dragged or mapped later */
  XFlush(dpy);
}

static int run_clock(Display *dpy, int x, int y) {
  int scr = DefaultScreen(dpy);
  Window win = make_window(dpy, x, y, BITS * CELL, 2 * CELL);
  GC white = XCreateGC(dpy, win, 0, NULL), black = XCreateGC(dpy, win, 0, NULL);
  XSetForeground(dpy, white, WhitePixel(dpy, scr));
  XSetForeground(dpy, black, BlackPixel(dpy, scr));
  draw_clock(dpy, win, white, black);
  XSync(dpy, False);
  printf("ready 0x%lx\n", (unsigned long)win);
  fflush(stdout);
  int64_t next = now_ns(CLOCK_MONOTONIC);
  while (!quit_flag) {
    next += CLOCK_PERIOD_NS;
    int64_t now = now_ns(CLOCK_MONOTONIC);
    if (next < now) next = now; /* fell behind: no burst to catch up */
    sleep_until(next);
    int exposed = 0;
    drain_events(dpy, &exposed);
    draw_clock(dpy, win, white, black);
  }
  return 0;
}

/* ---- animation ---- */

#define SINES 1024
#define NOISE 256

typedef struct {
  int w, h;
  uint32_t palette[256];      /* packed 0x00RRGGBB, each channel <= 223 */
  uint32_t *noise;            /* NOISE*NOISE packed grain, each channel <= 32: sums never carry */
  uint8_t s1[SINES], s2[SINES], s3[SINES];
  uint8_t *col, *row;         /* per-frame sine terms by column and by row */
  uint32_t seed;
} Plasma;

static uint32_t rnd(uint32_t *s) { /* xorshift32 */
  *s ^= *s << 13; *s ^= *s >> 17; *s ^= *s << 5;
  return *s;
}

static void plasma_init(Plasma *p, int w, int h) {
  p->w = w; p->h = h; p->seed = 0x9e3779b9u;
  for (int i = 0; i < SINES; i++) {
    double a = 2.0 * 3.14159265358979 * i / SINES;
    p->s1[i] = (uint8_t)(42.0 + 42.0 * __builtin_sin(a));
    p->s2[i] = (uint8_t)(42.0 + 42.0 * __builtin_sin(2.0 * a + 1.0));
    p->s3[i] = (uint8_t)(42.0 + 42.0 * __builtin_cos(a + 0.5));
  }
  for (int i = 0; i < 256; i++) { /* a warm-to-cool colour ramp, like a sunset photo */
    double a = 2.0 * 3.14159265358979 * i / 256.0;
    uint32_t r = (uint32_t)(111.0 + 110.0 * __builtin_sin(a));
    uint32_t g = (uint32_t)(111.0 + 100.0 * __builtin_sin(a + 2.0));
    uint32_t b = (uint32_t)(111.0 + 105.0 * __builtin_sin(a + 4.0));
    p->palette[i] = (r << 16) | (g << 8) | b;
  }
  p->noise = malloc(sizeof(uint32_t) * NOISE * NOISE);
  p->col = malloc((size_t)w);
  p->row = malloc((size_t)h);
  if (!p->noise || !p->col || !p->row) die("out of memory");
  for (int i = 0; i < NOISE * NOISE; i++) {
    uint32_t v = rnd(&p->seed);
    uint32_t l = v % 25, c = (v >> 8) % 8; /* luminance grain plus a little colour */
    p->noise[i] = ((l + c) << 16) | (l << 8) | (l + 7 - c);
  }
}

static void plasma_frame(Plasma *p, uint32_t *out, int stride_px, uint32_t t) {
  for (int x = 0; x < p->w; x++) p->col[x] = p->s1[(uint32_t)(x * 3 + t * 7) & (SINES - 1)];
  for (int y = 0; y < p->h; y++) p->row[y] = p->s2[(uint32_t)(y * 4 - t * 5) & (SINES - 1)];
  uint32_t ox = rnd(&p->seed) & (NOISE - 1), oy = rnd(&p->seed) & (NOISE - 1);
  for (int y = 0; y < p->h; y++) {
    uint32_t *line = out + (size_t)y * stride_px;
    const uint32_t *grain = p->noise + ((y + oy) & (NOISE - 1)) * NOISE;
    uint32_t r = p->row[y];
    for (int x = 0; x < p->w; x++) {
      uint32_t v = p->col[x] + r + p->s3[(uint32_t)(x + y * 2 + t * 11) & (SINES - 1)] + t;
      line[x] = p->palette[v & 255] + grain[(x + ox) & (NOISE - 1)];
    }
  }
}

static int run_anim(Display *dpy, int x, int y, int w, int h, int fps) {
  int scr = DefaultScreen(dpy);
  Visual *vis = DefaultVisual(dpy, scr);
  int depth = DefaultDepth(dpy, scr);
  if (depth != 24 && depth != 32) die("needs a 24-bit display");
  Window win = make_window(dpy, x, y, w, h);
  GC gc = XCreateGC(dpy, win, 0, NULL);
  XShmSegmentInfo shm;
  XImage *img = NULL;
  int use_shm = XShmQueryExtension(dpy);
  if (use_shm) {
    img = XShmCreateImage(dpy, vis, (unsigned)depth, ZPixmap, NULL, &shm, (unsigned)w, (unsigned)h);
    shm.shmid = shmget(IPC_PRIVATE, (size_t)img->bytes_per_line * (size_t)h, IPC_CREAT | 0600);
    if (shm.shmid < 0) die("shmget failed");
    shm.shmaddr = img->data = shmat(shm.shmid, NULL, 0);
    shm.readOnly = False;
    if (!XShmAttach(dpy, &shm)) die("XShmAttach failed");
    XSync(dpy, False);
    shmctl(shm.shmid, IPC_RMID, NULL); /* freed when both sides detach, even if we are killed */
  } else {
    char *data = malloc((size_t)w * (size_t)h * 4);
    if (!data) die("out of memory");
    img = XCreateImage(dpy, vis, (unsigned)depth, ZPixmap, 0, data, (unsigned)w, (unsigned)h, 32, 0);
  }
  if (img->bits_per_pixel != 32) die("needs 32 bits per pixel");
  Plasma p;
  plasma_init(&p, w, h);
  uint32_t t = 0, drawn = 0;
  const int64_t period = 1000000000LL / fps;
  plasma_frame(&p, (uint32_t *)img->data, img->bytes_per_line / 4, t);
#define PUT()                                                                                         \
  do {                                                                                                \
    if (use_shm) XShmPutImage(dpy, win, gc, img, 0, 0, 0, 0, (unsigned)w, (unsigned)h, False);        \
    else XPutImage(dpy, win, gc, img, 0, 0, 0, 0, (unsigned)w, (unsigned)h);                          \
    XSync(dpy, False); /* the server has read the pixels before we overwrite them */               \
  } while (0)
  PUT();
  printf("ready 0x%lx\n", (unsigned long)win);
  fflush(stdout);
  int64_t next = now_ns(CLOCK_MONOTONIC);
  while (!quit_flag) {
    int exposed = 0;
    drain_events(dpy, &exposed);
    if (pause_report) {
      pause_report = 0;
      printf("paused frames=%u\n", drawn);
      fflush(stdout);
      drawn = 0;
    }
    if (!running_flag) {
      if (exposed) PUT();
      struct timespec nap = { 0, 20000000L };
      nanosleep(&nap, NULL); /* a signal cuts it short */
      next = now_ns(CLOCK_MONOTONIC);
      continue;
    }
    plasma_frame(&p, (uint32_t *)img->data, img->bytes_per_line / 4, ++t);
    PUT();
    drawn++;
    next += period;
    int64_t now = now_ns(CLOCK_MONOTONIC);
    if (next < now) next = now; /* fell behind: drop, never burst */
    sleep_until(next);
  }
  return 0;
}

int main(int argc, char **argv) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: sleeps wake up on a signal */
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGUSR2, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  Display *dpy = XOpenDisplay(NULL);
  if (!dpy) die("cannot open the display (DISPLAY unset?)");
  if (argc == 4 && strcmp(argv[1], "clock") == 0) return run_clock(dpy, atoi(argv[2]), atoi(argv[3]));
  if (argc == 7 && strcmp(argv[1], "anim") == 0) {
    int w = atoi(argv[4]), h = atoi(argv[5]), fps = atoi(argv[6]);
    if (w <= 0 || h <= 0 || fps <= 0 || fps > 240) die("bad anim geometry or fps");
    return run_anim(dpy, atoi(argv[2]), atoi(argv[3]), w, h, fps);
  }
  fprintf(stderr, "usage: bench-x clock X Y | bench-x anim X Y W H FPS\n");
  return 2;
}
