#!/usr/bin/env bash
# Installs what ironvirt's tests and its lab need on Debian 12 (run as root, or with sudo available).
#   - qemu-system-x86: the lab's outer VM (QEMU TCG with emulated AMD-V) and the baseline VMM inside it
#   - busybox-static, cpio, lz4, kmod: building lab initramfs images and unpacking the cloud kernel
#   - libvirt-clients: virt-xml-validate (and virsh) as the reference for our XML
#   - acpica-tools: iasl, to check the ACPI tables we generate
#   - qemu-utils: qemu-img, the reference for disk images
#   - dnsmasq-base, nftables, iperf3: virtual networks (DHCP/DNS, NAT rules) and their lab test
#   - e2fsprogs: mkfs.ext4 and debugfs carry files in and out of the lab; strace times VMM start-up (bench)
#   - lvm2, nfs-common: logical storage pools (pvcreate/vgcreate/lvcreate…) and netfs pools (mount.nfs)
#   - fio: the disk benchmark the VM-level bench runs inside its guests (shipped with its libraries on a disk)
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

packages=(busybox-static cpio lz4 kmod libvirt-clients acpica-tools qemu-utils e2fsprogs strace dnsmasq-base nftables iperf3 lvm2 nfs-common fio)
missing=()
for p in qemu-system-x86 "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The lab fetches Debian's kernel with `apt-get download`, which needs package lists even when every
# package above is already installed.
have_lists() { compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; }
if [ "${#missing[@]}" -eq 0 ]; then
    have_lists || $SUDO apt-get update -q
    echo "install-deps: everything is installed"
    exit 0
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q

# qemu-system-x86 must come from the same Debian suite as an installed qemu-utils: machines that carry
# qemu-utils from bookworm-backports need qemu-system-x86 from there too, or apt refuses the pair.
qemu_suite=()
if dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q 'bpo12'; then
    if ! apt-cache policy | grep -q 'bookworm-backports'; then
        echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/ironvirt-backports.list >/dev/null
        $SUDO apt-get update -q
    fi
    qemu_suite=(-t bookworm-backports)
fi
$SUDO apt-get install -y -q --no-install-recommends "${qemu_suite[@]}" qemu-system-x86 qemu-utils
$SUDO apt-get install -y -q --no-install-recommends "${packages[@]}"
