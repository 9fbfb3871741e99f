#!/bin/busybox sh
# Standard start of an L2 guest's /init: mounts and the virtio modules. The caller's script follows.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
while read -r m; do
    insmod "/lib/modules/lab/$m" 2> /dev/null || echo "lab: insmod $m failed"
done < /etc/lab-modules
