#!/bin/bash
# PID 1 of the zfsvm guest (see zfsvm): make the read-only host root usable,
# start udev (for /dev/zvol/* links), load zfs, create the pool, run the job,
# report its exit status on the serial console and power off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
ln -sfn /proc/self/fd /dev/fd
for arg in $(cat /proc/cmdline); do
    case "$arg" in zfsvm_*=*) export "${arg?}" ;; esac
done

finish() {
    sync
    echo "ZFSVM_EXIT=$1" >/dev/ttyS0
    echo o >/proc/sysrq-trigger
    sleep 60
}

# writable layers in guest RAM over the host's folders
for dir in /etc /var /tmp /root /home; do
    [ -d "$dir" ] || continue
    mkdir -p "/run/layers$dir/upper" "/run/layers$dir/work"
    mount -t overlay overlay -o "lowerdir=$dir,upperdir=/run/layers$dir/upper,workdir=/run/layers$dir/work" "$dir" ||
        echo "zfsvm guest: no writable layer over $dir"
done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out "$zfsvm_out" ||
    echo "zfsvm guest: $zfsvm_out not shared"

if [ -x /lib/systemd/systemd-udevd ]; then
    /lib/systemd/systemd-udevd --daemon >/dev/null 2>&1
    udevadm trigger --action=add >/dev/null 2>&1
    udevadm settle -t 30 >/dev/null 2>&1
fi

modprobe zfs || { echo "zfsvm guest: modprobe zfs failed"; finish 90; }
eval "$(grep '^export ZFSVM_' "$zfsvm_job")"
disk=""
for _ in $(seq 100); do
    for blk in /sys/block/vd*; do
        if [ "$(cat "$blk/serial" 2>/dev/null)" = "$ZFSVM_SERIAL" ]; then disk=/dev/${blk##*/}; fi
    done
    [ -n "$disk" ] && break
    sleep 0.1
done
[ -n "$disk" ] || { echo "zfsvm guest: pool disk not found"; finish 91; }
zpool create -f -o cachefile=none -O mountpoint="/run/$ZFSVM_POOL" "$ZFSVM_POOL" "$disk" ||
    { echo "zfsvm guest: zpool create failed"; finish 92; }
echo "zfsvm guest: kernel $(uname -r), zfs $(cat /sys/module/zfs/version), pool $ZFSVM_POOL on $disk"

bash "$zfsvm_job" </dev/null
status=$?
zpool export "$ZFSVM_POOL" >/dev/null 2>&1 || echo "zfsvm guest: pool export failed"
finish "$status"
