#!/usr/bin/env bash
# Boots the default guest (Debian's cloud kernel + the project's demo initramfs) from examples/demo.xml and
# shows its console: directly under ironvirt-vmm on hardware KVM, inside the lab elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-vmm.sh >/dev/null
cargo build --release -p ironvirt-lab
exec target/release/ironvirt-lab demo --vmm target/release/ironvirt-vmm --domain examples/demo.xml "$@"
