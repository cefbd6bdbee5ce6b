/*
 * Postcopy live migration for a QEMU that drops to an unprivileged account (-runas).
 *
 * In postcopy the destination runs the guest before all its memory has arrived and pulls
 * missing pages on demand; QEMU needs a userfaultfd that handles kernel faults for that.
 * On a host with vm.unprivileged_userfaultfd=0 (Debian's default) only a process with
 * CAP_SYS_PTRACE may create one through the userfaultfd(2) system call, and QEMU makes it
 * after it has dropped root. Since Linux 6.1, /dev/userfaultfd hands out the same kind of
 * descriptor to whoever may open the device (root's, mode 0600), by ioctl.
 *
 * Preloaded (LD_PRELOAD) into a destination QEMU started as root, this opens the device
 * while the process is still root, and answers QEMU's userfaultfd system calls (made
 * through libc's syscall()) with USERFAULTFD_IOC_NEW on it. Only this QEMU gets the
 * capability, never the account in general and never the host: the sysctl stays 0. Any
 * other system call, or a host without the device, goes to libc's syscall() unchanged
 * (QEMU then reports postcopy as unsupported, as it would without this).
 *
 * Built by the server on first use (providers/qemu/postcopy.ts) with the host's cc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int uffd_device = -1;

__attribute__((constructor)) static void open_uffd_device(void) {
  /* close-on-exec: a shell that execs QEMU opens it again in QEMU */
  uffd_device = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
}

typedef long (*syscall_fn)(long, ...);

long syscall(long number, ...) {
  va_list ap;
  long a[6];
  va_start(ap, number);
  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
  va_end(ap);
  if (number == SYS_userfaultfd && uffd_device >= 0)
    return ioctl(uffd_device, USERFAULTFD_IOC_NEW, (int)a[0]);
  static syscall_fn next;
  if (!next) next = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
  return next(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
