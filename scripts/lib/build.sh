# Sourced by the end-to-end suites: build every binary and example they run with the one command whose feature
# resolution matches `cargo test --workspace --all-targets` (scripts/test.sh runs that first). The same package
# set and targets give the same features, so after the test build this finishes in seconds; a narrower command
# (`cargo build -p dps-local`) resolves features per package and recompiles dozens of crates (measured: 2 to 5
# minutes each on the CI machine).
build_workspace() {
    cargo build --quiet --workspace --all-targets
}
