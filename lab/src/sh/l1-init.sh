#!/bin/busybox sh
# L1's /init: set up a minimal userspace, load KVM, run the payload, power off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
ip link set lo up 2> /dev/null
while read -r m; do
    insmod "/lib/modules/lab/$m" || echo "IRONVIRT-LAB: l1-insmod-failed $m"
done < /etc/lab-modules
if [ -c /dev/kvm ]; then
    read -r up _ < /proc/uptime
    echo "IRONVIRT-LAB: l1-ready $(uname -r) uptime=$up"
else
    echo "IRONVIRT-LAB: l1-no-kvm /dev/kvm missing after loading kvm-amd"
fi
[ -f /lab/env ] && . /lab/env
cd /tmp
sh -c '. /lab/functions.sh; . /lab/payload.sh'
echo "IRONVIRT-LAB: payload-status $?"
echo "IRONVIRT-LAB: l1-done"
poweroff -f
