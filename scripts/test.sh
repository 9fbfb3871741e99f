#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs the system packages the tests need, then runs
# every workspace test. Tests that need the lab build it under target/lab on first use (Debian's cloud kernel
# and busybox are fetched with apt-get download) and reuse it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --workspace --all-targets
cargo test --workspace -- --test-threads=2
