//! The `tally` binary: parses the command line and hands over to [`cli::run`].

mod cli;

/// mimalloc rather than glibc's malloc: queries allocate and free many short-lived buffers
/// (Arrow arrays, the funnel's per-person vectors), which it serves with less locking and fewer
/// page faults (BENCHMARKS.md has the A/B).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::run()
}
