#!/bin/sh
# The grader's kernel launcher: the argv of the private "tslab-graded" kernel spec the grader writes for each
# submission (grader/src/sandbox.ts). Usage: sandbox-kernel.sh SETTINGS CONNECTION_FILE
# As root: new mount and pid namespaces (its own /proc: no other process is visible) in which the kit's checkout is covered by an empty tmpfs (the checks, the
# solutions and the rest of the kit are not there; only node_modules, kernel-lib and grader are bound read-only into
# the work folder), a memory cgroup when one can be made, then the submission's own unprivileged user with no
# capabilities and no new privileges; /tmp, /var/tmp and /dev/shm are private to it. Not root, where the machine
# allows unprivileged user namespaces: the same namespaces and mounts, as the grader's own user. Always: a clean environment, a data-size limit (RLIMIT_DATA: heap and wasm
# memory; an address-space limit would break wasm's reservations) and V8's old-space limit.
set -eu
. "$1"   # WORK KIT NODE_BIN MEM_BYTES OLD_SPACE_MB SANDBOX_USER ROOTNS USERNS CGROUP KERNEL_ENV (see sandbox.ts)

if [ "${2:-}" != "--inside" ]; then
  cp "$2" "$WORK/.kernel/connection.json"
  chmod 600 "$WORK/.kernel/connection.json"
  if [ -n "$SANDBOX_USER" ]; then
    chown "$SANDBOX_USER:$SANDBOX_USER" "$WORK/.kernel/connection.json"
    if [ -n "$CGROUP" ]; then echo $$ > "$CGROUP/cgroup.procs"; fi
  fi
  if [ -n "$SANDBOX_USER" ] && [ "$ROOTNS" = 1 ]; then
    # a mount namespace, and a pid namespace with its own /proc: the kernel sees no other process
    exec unshare --mount --propagation private --pid --fork --kill-child --mount-proc -- /bin/sh "$0" "$1" --inside
  elif [ -z "$SANDBOX_USER" ] && [ "$USERNS" = 1 ]; then
    # not root: the same namespaces inside an unprivileged user namespace (root there, nobody outside)
    exec unshare --user --map-root-user --mount --propagation private --pid --fork --kill-child --mount-proc -- /bin/sh "$0" "$1" --inside
  fi
else
  # the kit's pieces the kernel needs, read-only, in the work folder; then the kit itself covered
  for d in node_modules kernel-lib grader; do
    mount --bind "$KIT/$d" "$WORK/$d"
    mount -o remount,bind,ro "$WORK/$d"
  done
  mount -t tmpfs -o size=64k,mode=0755 kit-hidden-by-grader "$KIT"
  # the machine's shared temporary folders replaced by private empty ones: nothing written there outlives the
  # kernel or reaches another submission. The work folder (under /tmp) is kept aside first, with its read-only
  # parts, and bound back at its path.
  mkdir "$KIT/.work"
  mount --rbind "$WORK" "$KIT/.work"
  for d in /tmp /var/tmp /dev/shm; do
    if [ -d "$d" ]; then mount -t tmpfs -o size=256m,mode=1777 kit-private-tmp "$d"; fi
  done
  mkdir -p "$WORK"
  mount --rbind "$KIT/.work" "$WORK"
  umount -l "$KIT/.work"
fi

# the limit is inherited across exec (and setpriv): the kernel's heap and wasm memory stop at MEM_BYTES
prlimit --data="$MEM_BYTES" --pid $$
if [ -n "$SANDBOX_USER" ]; then
  set -- setpriv --reuid="$SANDBOX_USER" --regid="$SANDBOX_USER" --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all
else
  set --
fi
# shellcheck disable=SC2086
exec "$@" env -i HOME="$WORK/home" TMPDIR="$WORK/tmp" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
  NODE_OPTIONS="--max-old-space-size=$OLD_SPACE_MB" $KERNEL_ENV \
  "$NODE_BIN" "$WORK/node_modules/tslab/bin/tslab" kernel --config-path "$WORK/.kernel/connection.json"
