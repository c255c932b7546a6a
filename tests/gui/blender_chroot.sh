#!/bin/sh
# A windowed Blender for tests/gui/modal_check.py: Debian trixie's Blender (4.3) in a chroot, under Xvfb, drawing
# with Mesa's llvmpipe (software OpenGL). Set-up and use: docs/addon.md, "Checking the interactive path in a
# windowed Blender". Arguments go to blender unchanged. Runs as root (unshare, mount, chroot).
#
#   MOTIONMILL_CHROOT        the chroot (default /work/trixie), made with debootstrap, with blender, python3-numpy,
#                            xvfb, xauth and libgl1-mesa-dri installed in it
#   MOTIONMILL_CHROOT_BINDS  host folders made visible at the same path inside (default: /work /root/.pyenv): the
#                            checkout, ../shared, and the backend's virtual environment with the Python it was made
#                            from (the backend runs as a subprocess of Blender, so it must resolve inside the chroot)
#
# The bind mounts (/proc /sys /dev /dev/pts /tmp and the folders above) are made in a private mount namespace
# (unshare -m): they exist only while this Blender runs and never show on the host.
# The MOTIONMILL_* and BLENDER_USER_* variables of the caller's environment are passed through; nothing else is.
set -eu
root=${MOTIONMILL_CHROOT:-/work/trixie}
binds=${MOTIONMILL_CHROOT_BINDS:-/work /root/.pyenv}
[ -x "$root/usr/bin/blender" ] || { echo "no blender in chroot $root (see docs/addon.md)" >&2; exit 2; }
[ -x "$root/usr/bin/xvfb-run" ] || { echo "no xvfb-run in chroot $root (see docs/addon.md)" >&2; exit 2; }
for d in /proc /sys /dev /dev/pts /tmp $binds; do
    mkdir -p "$root$d"
done

# one NAME=value per line, split on newlines only (values may hold spaces)
pass=$(env | grep -E '^(MOTIONMILL_[A-Z_]*|BLENDER_USER_[A-Z_]*)=' | grep -v '^MOTIONMILL_BLENDER_GUI=' || true)
export MM_ROOT="$root" MM_BINDS="/sys /dev /dev/pts /tmp $binds" MM_PASS="$pass" MM_CWD="$PWD"
exec unshare --mount --propagation private /bin/sh -c '
    set -eu
    mount -t proc proc "$MM_ROOT/proc"
    for d in $MM_BINDS; do mount --bind "$d" "$MM_ROOT$d"; done
    IFS="
"
    exec chroot "$MM_ROOT" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        LIBGL_ALWAYS_SOFTWARE=1 $MM_PASS \
        /bin/sh -c "cd \"\$1\" 2>/dev/null || cd /; shift; exec xvfb-run -a -s \"-screen 0 1280x800x24\" blender \"\$@\"" \
        sh "$MM_CWD" "$@"
' sh "$@"
