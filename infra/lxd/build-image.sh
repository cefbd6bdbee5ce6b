#!/bin/sh
# Builds the LXD desktop image unattended from Debian packages and writes it as one unified,
# uncompressed image tarball (metadata.yaml + rootfs/; uncompressed imports in ~3 s here).
#
#   infra/lxd/build-image.sh OUT.tar            build only
#   infra/lxd/build-image.sh OUT.tar --import   build, then `lxc image import` as vdi-desktop
#
# The image: Debian minbase + TigerVNC Xvnc + openbox + xterm + socat (the exec byte relay)
# + xdotool/x11-utils (tests drive the desktop through exec) + QEMU (VM desktops), user
# `desk` (uid 1000), and /sbin/init = tini (a tiny init that reaps children) running
# /usr/local/sbin/vdi-desktop, which mounts a fresh /tmp on every boot (a stale
# /tmp/.X1-lock stops Xvnc after a restart or a copy) and serves RFB on the unix socket
# /run/vdi/rfb.sock inside the container.
#
# With VDI_ROLE=vm in the container's environment the desktop is a virtual machine instead
# (LXD's own VMs need vhost_vsock; QEMU in a system container does not): QEMU (TCG) as
# `desk` boots the golden image mounted read-only at /vdi/golden.qcow2 (and /vdi/vmlinuz,
# /vdi/initrd.img when set) through a qcow2 overlay in the container's own disk, serves
# its display as RFB on the same socket and QMP on /run/vdi/qmp.sock. VDI_INCOMING=1
# starts it waiting for a live migration (-incoming defer); with VDI_POSTCOPY=1 as well (and
# /dev/userfaultfd passed in), QEMU starts as root with the postcopy helper preloaded
# (server/native/uffd-preload.c, built here with the host's cc) and drops to desk itself.
# Runs as root (debootstrap). The Debian mirror is the host's own (its apt sources), or MIRROR.
set -eu

OUT=${1:?usage: build-image.sh OUT.tar [--import]}
SUITE=${SUITE:-bookworm}
ALIAS=${ALIAS:-vdi-desktop}
HERE=$(cd "$(dirname "$0")" && pwd)
PACKAGES=tigervnc-standalone-server,openbox,xterm,socat,tini,x11-utils,xdotool,fonts-dejavu-core,x11-xserver-utils,procps,qemu-system-x86,qemu-utils

if [ -z "${MIRROR:-}" ]; then
  MIRROR=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -v security | head -n1 || true)
fi
if [ -z "${MIRROR:-}" ] && [ -f /etc/apt/sources.list ]; then
  MIRROR=$(awk '$1 == "deb" && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list)
fi
[ -n "${MIRROR:-}" ] || { echo "build-image: no Debian mirror found; set MIRROR" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/vdi-lxd-image.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/rootfs"
start=$(date +%s)

debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
  tail -n 30 "$WORK/debootstrap.log" >&2
  exit 1
}

chroot "$ROOT" useradd --uid 1000 --create-home --shell /bin/sh desk
# postcopy's userfaultfd helper for VM desktops (the host's Debian release is the image's)
mkdir -p "$ROOT/usr/local/lib/vdi"
cc -shared -fPIC -O2 -o "$ROOT/usr/local/lib/vdi/uffd-preload.so" \
  "$HERE/../../server/native/uffd-preload.c" -ldl
mkdir -p "$ROOT/usr/local/sbin"
cat >"$ROOT/usr/local/sbin/vdi-desktop" <<'DESKTOP'
#!/bin/sh
# PID 2 under tini: fresh /tmp, then Xvnc on a unix socket only, then the session.
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp 2>/dev/null || rm -rf /tmp/.X*-lock /tmp/.X11-unix
mkdir -p /run/vdi && chown desk:desk /run/vdi && chmod 0700 /run/vdi
rm -f /run/vdi/rfb.sock
if [ "${VDI_ROLE:-}" = vm ]; then
  mkdir -p /var/lib/vdi && chown desk:desk /var/lib/vdi && chmod 0700 /var/lib/vdi
  DISK=/var/lib/vdi/disk.qcow2
  # a new container's overlay is empty (a moved VM's destination too: the mirror fills it)
  if [ ! -f "$DISK" ]; then
    setpriv --reuid=desk --regid=desk --init-groups qemu-img create -q -f qcow2 -F qcow2 \
      -b /vdi/golden.qcow2 "$DISK" || exit 1
  fi
  set -- qemu-system-x86_64 -name vdi -no-user-config -nodefaults \
    -machine q35,accel=tcg -m "${VDI_VM_MEMORY:-256}" -smp "${VDI_VM_CPUS:-1}" -vga std \
    -drive "file=$DISK,format=qcow2,if=virtio,id=disk0,cache=writeback,discard=unmap" \
    -nic none -display none -vnc unix:/run/vdi/rfb.sock \
    -qmp unix:/run/vdi/qmp.sock,server=on,wait=off -no-shutdown
  [ -f /vdi/vmlinuz ] && set -- "$@" -kernel /vdi/vmlinuz
  [ -f /vdi/initrd.img ] && set -- "$@" -initrd /vdi/initrd.img
  [ -n "${VDI_VM_APPEND:-}" ] && set -- "$@" -append "$VDI_VM_APPEND"
  [ "${VDI_INCOMING:-}" = 1 ] && set -- "$@" -incoming defer
  SANDBOX=on,obsolete=deny,spawn=deny,resourcecontrol=deny
  if [ "${VDI_INCOMING:-}" = 1 ] && [ "${VDI_POSTCOPY:-}" = 1 ] && [ -c /dev/userfaultfd ]; then
    # a postcopy destination: the helper opens /dev/userfaultfd while QEMU is still root,
    # then QEMU drops to desk (-runas; the filter must let it call setuid once). Its QMP and
    # RFB sockets, made while root, must let desk connect: no umask (their directory is
    # desk's own, 0700).
    umask 0
    exec env -i PATH=/usr/bin:/bin LD_PRELOAD=/usr/local/lib/vdi/uffd-preload.so \
      "$@" -runas desk -sandbox "$SANDBOX"
  fi
  exec setpriv --reuid=desk --regid=desk --init-groups --reset-env "$@" \
    -sandbox "$SANDBOX,elevateprivileges=deny"
fi
GEOMETRY=${VDI_GEOMETRY:-1280x800}
setpriv --reuid=desk --regid=desk --init-groups --reset-env env HOME=/home/desk \
  Xvnc :1 -geometry "$GEOMETRY" -depth 24 -rfbport -1 -rfbunixpath /run/vdi/rfb.sock \
  -rfbunixmode 0600 -SecurityTypes None -nolisten tcp -AlwaysShared &
XVNC=$!
i=0
while [ ! -S /run/vdi/rfb.sock ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
setpriv --reuid=desk --regid=desk --init-groups --reset-env env HOME=/home/desk DISPLAY=:1 openbox &
setpriv --reuid=desk --regid=desk --init-groups --reset-env env HOME=/home/desk DISPLAY=:1 xterm &
wait $XVNC
DESKTOP
chmod 0755 "$ROOT/usr/local/sbin/vdi-desktop"
rm -f "$ROOT/sbin/init"
ln -s /usr/bin/tini "$ROOT/sbin/init.tini"
cat >"$ROOT/sbin/init" <<'INIT'
#!/bin/sh
exec /usr/bin/tini -s -g -- /usr/local/sbin/vdi-desktop
INIT
chmod 0755 "$ROOT/sbin/init"
rm -f "$ROOT/sbin/init.tini"
# smaller image: no apt lists, no docs
rm -rf "$ROOT/var/lib/apt/lists/"* "$ROOT/var/cache/apt/"*.bin "$ROOT/usr/share/doc" "$ROOT/usr/share/man"

cat >"$WORK/metadata.yaml" <<META
architecture: x86_64
creation_date: $(date +%s)
properties:
  description: VDI desktop (Debian $SUITE, Xvnc + openbox + xterm, or QEMU)
  os: debian
  release: $SUITE
META

mkdir -p "$(dirname "$OUT")"
tar -C "$WORK" --numeric-owner -cf "$OUT.partial" metadata.yaml rootfs
mv "$OUT.partial" "$OUT"
echo "build-image: $OUT ($(du -m "$OUT" | cut -f1) MiB) in $(($(date +%s) - start)) s"

if [ "${2:-}" = "--import" ]; then
  lxc image delete "$ALIAS" 2>/dev/null || true
  lxc image import "$OUT" --alias "$ALIAS"
fi
