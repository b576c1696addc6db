#!/bin/bash
# PID 1 of a guestvm guest (see guestvm): make the read-only host root usable,
# put an ext4 file system on the app's first volume (/dev/vda, made on first
# boot, checked on every boot unless guestvm_fsck=0) and mount it on /run/data, start qemu-ga on the
# virtio-serial port org.qemu.guest_agent.0, say READY on the console, then
# wait: the host drives the rest through the agent, and stops the VM.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8

say() { echo "guestvm: $*" >/dev/ttyS0; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
ln -sfn /proc/self/fd /dev/fd
for dir in /etc /var /tmp /root /home; do
    [ -d "$dir" ] || continue
    mkdir -p "/run/layers$dir/upper" "/run/layers$dir/work"
    mount -t overlay overlay -o "lowerdir=$dir,upperdir=/run/layers$dir/upper,workdir=/run/layers$dir/work" "$dir" ||
        say "no writable layer over $dir"
done
modprobe virtio_console 2>/dev/null
modprobe ext4 2>/dev/null

for _ in $(seq 100); do [ -b /dev/vda ] && break; sleep 0.1; done
[ -b /dev/vda ] || say "no /dev/vda"
if [ "$(blkid -o value -s TYPE /dev/vda 2>/dev/null)" != ext4 ]; then
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 /dev/vda && say "made ext4 on /dev/vda"
fi
if ! grep -qw guestvm_fsck=0 /proc/cmdline; then # a benchmark's big volume skips it
    fsck_out=$(e2fsck -fn /dev/vda 2>&1)
    say "boot fsck of /dev/vda: exit $? $(echo "$fsck_out" | tail -n1)"
fi
mkdir -p /run/data
# noinit_itable: no background zeroing of inode tables (a host-made file system) under a measurement
mount -t ext4 -o noinit_itable /dev/vda /run/data || say "cannot mount /dev/vda"

port=""
for _ in $(seq 100); do
    for p in /sys/class/virtio-ports/vport*; do
        [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/${p##*/}
    done
    [ -n "$port" ] && [ -c "$port" ] && break
    sleep 0.1
done
mkdir -p /run/qga
if [ -n "$port" ]; then
    qemu-ga -m virtio-serial -p "$port" -t /run/qga -f /run/qemu-ga.pid -l /run/qemu-ga.log -d ||
        say "qemu-ga did not start"
else
    say "no guest agent port"
fi
say "READY kernel $(uname -r) agent ${port:-none}"
while :; do sleep 3600 & wait $!; done
