#!/usr/bin/env bash
# RustSec advisory check, offline: clones the advisory database snapshot (a git bundle) into
# target/advisory-dbs/ where deny.toml's [advisories] db-path/db-urls point, then runs
# `cargo deny --offline check advisories` (fetching disabled). Fails on any vulnerability,
# unsoundness or yanked version that deny.toml does not ignore with a reason.
#
#   bash scripts/advisories.sh [BUNDLE]      (default: ../shared/advisory-db/advisory-db.bundle)
#
# docs/reliability.md ("Supply chain") records the snapshot's date and how to refresh it.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle="${1:-${LARDER_ADVISORY_BUNDLE:-../shared/advisory-db/advisory-db.bundle}}"
if [ ! -f "$bundle" ]; then
  echo "advisories: no advisory database bundle at $bundle" >&2
  echo "  (CI expects ../shared/advisory-db/advisory-db.bundle beside the repository; see docs/reliability.md)" >&2
  exit 1
fi
if ! cargo deny --version >/dev/null 2>&1; then cargo install cargo-deny --locked --quiet; fi
# The directory name cargo-deny derives from db-urls in deny.toml.
db="target/advisory-dbs/advisory-db-3157b0e258782691"
rm -rf "$db"
mkdir -p "$(dirname "$db")"
git -c init.defaultBranch=main clone --quiet "$bundle" "$db"
echo "advisory database snapshot: $(git -C "$db" log -1 --format='%H %cI')"
cargo deny --offline check advisories
