#!/bin/sh
# Builds the small test guest for the qemu provider, entirely from installed Debian
# packages (linux-image-amd64, busybox-static, cpio, e2fsprogs, qemu-utils):
#
#   <out>/vmlinuz       the host's Debian kernel, copied from /boot
#   <out>/initrd.img    a busybox initramfs with the virtio-blk and ext4 modules
#   <out>/golden.qcow2  a 64 MiB ext4 disk (no journal), mounted by the guest at /data
#
# Usage: infra/guest/build-guest.sh [out-dir]   (default: <repo>/.cache/guest)
# Env:   GUEST_KERNEL_VERSION=<uname -r style>  pick a kernel when several are installed
#
# Idempotent: when the outputs exist and were made by this very script for the same
# kernel, it only prints where they are. No root needed beyond reading /boot.
set -eu

script_dir=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
out=${1:-"$repo_root/.cache/guest"}
disk_size_mb=64

die() { echo "build-guest: $*" >&2; exit 1; }

for tool in busybox cpio gzip mke2fs qemu-img sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "missing tool '$tool' (apt-get install busybox-static cpio e2fsprogs qemu-utils)"
done

# The newest kernel in /boot that also has its modules installed.
kver=${GUEST_KERNEL_VERSION:-}
if [ -z "$kver" ]; then
  for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -V); do
    [ -d "/lib/modules/$k" ] && kver=$k
  done
fi
[ -n "$kver" ] || die "no kernel found in /boot with modules in /lib/modules (apt-get install linux-image-amd64)"
kernel="/boot/vmlinuz-$kver"
moddir="/lib/modules/$kver"
[ -r "$kernel" ] || die "cannot read $kernel"
[ -f "$moddir/modules.dep" ] || die "no $moddir/modules.dep"
busybox_bin=$(command -v busybox)
# A dynamically linked busybox would need its libraries in the initramfs.
if command -v ldd >/dev/null 2>&1 && ldd "$busybox_bin" >/dev/null 2>&1; then
  die "$busybox_bin is dynamically linked; install busybox-static"
fi

mkdir -p "$out"
# Test runs may call this concurrently: one builds, the others wait and find it done.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$out/.build.lock"
  flock 9
fi

# The stamp ties the outputs to this script's content and the kernel they were built for.
stamp="$(sha256sum "$0" | cut -d' ' -f1) $kver"
if [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ] && [ -f "$out/golden.qcow2" ] &&
   [ "$(cat "$out/build.sha256" 2>/dev/null || true)" = "$stamp" ]; then
  echo "build-guest: up to date in $out (kernel $kver)"
  echo "kernel=$out/vmlinuz"
  echo "initrd=$out/initrd.img"
  echo "image=$out/golden.qcow2"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/vdi-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# --- kernel modules: what a virtio-blk disk with ext4 needs, dependencies first ----------
# Names as in modules.dep; ext4 and jbd2 also soft-depend on a crc32c implementation.
wanted="kernel/crypto/crc32c_generic.ko kernel/drivers/block/virtio_blk.ko kernel/drivers/virtio/virtio_pci.ko kernel/fs/ext4/ext4.ko"
order="$work/modules.order"
: >"$order"

# Appends a module after its dependencies (modules.dep lists direct and indirect ones;
# recursing keeps the order right whatever modules.dep's own ordering is).
add_module() {
  grep -qx "$1" "$order" && return 0
  line=$(grep -E "^$1(\.xz|\.zst|\.gz)?:" "$moddir/modules.dep" || true)
  if [ -z "$line" ]; then
    # built into this kernel: nothing to load
    grep -q "^$1\$" "$moddir/modules.builtin" 2>/dev/null || echo "build-guest: note: $1 not found as a module" >&2
    return 0
  fi
  deps=${line#*:}
  for d in $deps; do add_module "$(echo "$d" | sed -E 's/\.(xz|zst|gz)$//')"; done
  grep -qx "$1" "$order" || echo "$1" >>"$order"
}
for m in $wanted; do add_module "$m"; done

initramfs="$work/initramfs"
mkdir -p "$initramfs/bin" "$initramfs/sbin" "$initramfs/proc" "$initramfs/sys" "$initramfs/dev" \
         "$initramfs/data" "$initramfs/tmp" "$initramfs/root" "$initramfs/etc" "$initramfs/lib/modules"
cp "$busybox_bin" "$initramfs/bin/busybox"
for applet in $("$busybox_bin" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$initramfs/bin/$applet"
done

: >"$initramfs/etc/modules"
while read -r m; do
  src=$(ls "$moddir/$m" "$moddir/$m.xz" "$moddir/$m.zst" "$moddir/$m.gz" 2>/dev/null | head -n1 || true)
  [ -n "$src" ] || die "module file for $m missing"
  base=$(basename "$m")
  # busybox insmod takes plain .ko files only
  case "$src" in
    *.xz) xz -dc "$src" >"$initramfs/lib/modules/$base" ;;
    *.zst) zstd -qdc "$src" >"$initramfs/lib/modules/$base" ;;
    *.gz) gzip -dc "$src" >"$initramfs/lib/modules/$base" ;;
    *) cp "$src" "$initramfs/lib/modules/$base" ;;
  esac
  echo "$base" >>"$initramfs/etc/modules"
done <"$order"

echo 'root:x:0:0:root:/root:/bin/sh' >"$initramfs/etc/passwd"
echo 'root:x:0:' >"$initramfs/etc/group"

cat >"$initramfs/init" <<'INIT'
#!/bin/sh
# PID 1 of the VDI test guest: a shell on the VGA console, the disk at /data.
export PATH=/bin:/sbin HOME=/root TERM=linux
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmp /tmp
for m in $(cat /etc/modules); do insmod "/lib/modules/$m" 2>/dev/null; done

# virtio-blk probes asynchronously: give the disk up to 10 s to appear.
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if mount -t ext4 -o rw /dev/vda /data; then data=/data; else data="(no disk: /dev/vda did not mount)"; fi

hostname vdi-guest
cat >/etc/profile <<'PROFILE'
export PS1='vdi-guest:\w# '
alias ll='ls -l'
PROFILE

# Job control needs the shell to own its terminal: setsid makes a new session and
# cttyhack (with console=tty0 it resolves the active VT) makes that its controlling tty.
exec </dev/tty1 >/dev/tty1 2>&1
while true; do
  clear
  # yellow on blue: recognisable in screenshots, and shows whether a screendump keeps colours
  printf '\033[1;33;44m%-80s\033[0m' " VDI test guest  ($(uname -r))"
  echo " disk: $data   type commands here"
  echo
  setsid cttyhack sh -l
  echo "shell exited; restarting"
  sleep 1
done
INIT
chmod 755 "$initramfs/init"

(cd "$initramfs" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -6 >"$work/initrd.img"

# --- the golden disk: ext4 without a journal, so that what the guest syncs is readable
# offline (debugfs does not replay journals) ----------------------------------------------
stage="$work/disk"
mkdir -p "$stage"
cat >"$stage/README" <<'README'
VDI test guest data disk (golden image). Desktops boot from linked clones of it.
README
echo "golden" >"$stage/origin"
mke2fs -q -F -t ext4 -O ^has_journal -L vdi-data -m 0 -E root_owner=0:0 -d "$stage" \
  "$work/golden.raw" "${disk_size_mb}M" >/dev/null
qemu-img convert -q -f raw -O qcow2 "$work/golden.raw" "$work/golden.qcow2"

# Replace the outputs only once everything is built, so an interrupted run leaves the
# previous good set (or nothing) and the stamp last.
rm -f "$out/build.sha256"
cp "$kernel" "$out/vmlinuz.tmp" && mv -f "$out/vmlinuz.tmp" "$out/vmlinuz"
mv -f "$work/initrd.img" "$out/initrd.img"
mv -f "$work/golden.qcow2" "$out/golden.qcow2"
# The golden image is never written by desktops (they get overlays): keep it read-only.
chmod 0444 "$out/golden.qcow2"
chmod 0644 "$out/vmlinuz" "$out/initrd.img"
echo "$stamp" >"$out/build.sha256"

echo "build-guest: built in $out (kernel $kver, modules: $(tr '\n' ' ' <"$initramfs/etc/modules"))"
echo "kernel=$out/vmlinuz"
echo "initrd=$out/initrd.img"
echo "image=$out/golden.qcow2"
