//! The `tally` binary: parses the command line and hands over to [`cli::run`].

mod cli;

/// mimalloc rather than glibc's malloc: queries allocate and free many short-lived buffers
/// (Arrow arrays, the funnel's per-person vectors), and with glibc's `malloc`, `free` and page
/// faults took ~13% of a funnel's profile. It makes the funnel ~15% faster and keeps more freed
/// memory for reuse (BENCHMARKS.md has the A/B, peak memory included).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::run()
}
