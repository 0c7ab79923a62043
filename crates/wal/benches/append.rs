//! Append throughput: batches of 100 payloads of 300 bytes, with and without a sync per batch.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tally_wal::{Wal, WalConfig};

const BATCH: usize = 100;
const PAYLOAD_BYTES: usize = 300;

fn append(c: &mut Criterion) {
    let payloads: Vec<Vec<u8>> = (0..BATCH)
        .map(|i| (0..PAYLOAD_BYTES).map(|j| (i * 31 + j) as u8).collect())
        .collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();

    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Bytes((BATCH * PAYLOAD_BYTES) as u64));

    let tmp = tempfile::tempdir().expect("temp dir");
    let (mut wal, _) = Wal::open(WalConfig::new(tmp.path().join("sync"))).expect("open WAL");
    group.bench_function("100x300B+sync", |b| {
        b.iter(|| {
            let last = wal.append(black_box(&refs)).expect("append");
            wal.sync().expect("sync");
            black_box(last)
        })
    });

    // Without syncs, hundreds of MB go through per run: closed segments are removed outside
    // the timed section so the benchmark does not fill the disk. (Automatic rotation, which
    // syncs the full segment, is part of what is measured.)
    let (mut wal, _) = Wal::open(WalConfig::new(tmp.path().join("nosync"))).expect("open WAL");
    group.bench_function("100x300B", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(wal.append(black_box(&refs)).expect("append"));
            }
            let elapsed = start.elapsed();
            if let Some(closed) = wal.segments().iter().rev().find(|s| !s.is_current) {
                wal.remove_segments_through(closed.id).expect("remove");
            }
            elapsed
        })
    });
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
