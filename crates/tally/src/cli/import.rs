//! `tally import`: bulk import of newline-delimited JSON events through the `BatchProcessor`,
//! straight into the data directory (the server must not be running on it).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use tally_catalog::{Catalog, Project};
use tally_collect::Limits;
use tally_core::EventRecord;
use tally_core::IdentityOp;
use tally_process::{
    BatchProcessor, EventProcessor, IpMode, PiiPolicy, ProcessorConfig, ProjectSchemas,
};
use tally_store::{ProjectBatch, Store};

use super::{DataDirArg, open_catalog, open_store};

#[derive(Debug, clap::Args)]
pub(crate) struct ImportArgs {
    /// A file of events, one JSON object per line; `.gz` files are decompressed.
    file: PathBuf,
    /// Project name or id (may be left out when there is only one project).
    #[arg(long)]
    project: Option<String>,
    /// Events processed and written per chunk.
    #[arg(long, default_value_t = 50_000)]
    chunk: usize,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// What is kept of the events' IP addresses, as `tally serve --ip-mode`.
    #[arg(long, default_value = "truncate", value_parser = clap::value_parser!(IpMode))]
    ip_mode: IpMode,
    /// PII rules, as `tally serve --pii-policy`.
    #[arg(long, env = "TALLY_PII_POLICY")]
    pii_policy: Option<PathBuf>,
    #[command(flatten)]
    data: DataDirArg,
}

pub(crate) fn resolve_project(catalog: &Catalog, name: Option<&str>) -> anyhow::Result<Project> {
    match name {
        Some(n) => Ok(catalog.find_project(n)?),
        None => {
            let mut all = catalog.list_projects()?;
            anyhow::ensure!(
                all.len() == 1,
                "there are {} projects: name one with --project",
                all.len()
            );
            Ok(all.remove(0))
        }
    }
}

/// Counts the bytes read from the file (compressed, for .gz), for the progress bar.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

pub(crate) async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let catalog = open_catalog(&args.data.data_dir)?;
    let project = resolve_project(&catalog, args.project.as_deref())?;
    let store = open_store(
        &args.data.data_dir,
        &catalog,
        "; stop it first, or send the events to its POST /v1/events",
    )?;
    let schemas = ProjectSchemas {
        schemas: catalog
            .schemas(&project.id)?
            .into_iter()
            .map(|s| (s.event.clone(), s))
            .collect(),
        strict: project.strict_schemas,
        consent: project.consent,
    };
    let file =
        File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let read = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: file,
        read: Arc::clone(&read),
    };
    let gz = args.file.extension().is_some_and(|e| e == "gz");
    let reader: Box<dyn std::io::BufRead + Send> = if gz {
        Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(counting),
        ))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, counting))
    };

    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    };

    // Processing runs on a blocking thread and hands chunks to the writer task, so parsing and
    // writing overlap (one core each).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<EventRecord>>(2);
    let processor = Arc::new(EventProcessor::new(ProcessorConfig {
        ip_mode: args.ip_mode,
        pii: PiiPolicy::load(args.pii_policy.as_deref()).map_err(anyhow::Error::msg)?,
        pii_salt: catalog.pii_salt()?,
        ..ProcessorConfig::default()
    }));
    let batch = BatchProcessor::new(processor, args.chunk, Limits::default().max_event_bytes);
    let pid = project.id.clone();
    let bar2 = bar.clone();
    let worker = tokio::task::spawn_blocking(move || {
        batch.run(
            &pid,
            &schemas,
            reader,
            |chunk| tx.blocking_send(chunk),
            |_| {
                bar2.set_position(read.load(Ordering::Relaxed));
            },
        )
    });
    let mut written = 0u64;
    let mut duplicates = 0u64;
    let mut merged = std::collections::HashSet::new();
    while let Some(chunk) = rx.recv().await {
        // Events that carry both an anonymous and a user id merge the two, as on ingest.
        let merges: Vec<IdentityOp> = chunk
            .iter()
            .filter_map(|r| IdentityOp::implied_by(r.user_id.as_deref(), r.anonymous_id.as_deref()))
            .filter(|op| match op {
                IdentityOp::Merge { from, into, .. } => merged.insert((from.clone(), into.clone())),
                _ => true,
            })
            .collect();
        if !merges.is_empty() {
            catalog.apply_identity(&project.id, &merges)?;
        }
        // `maintain` flushes every million rows, so the buffer never fills during an import.
        let outcome = store
            .write(vec![ProjectBatch {
                project: project.id.clone(),
                records: chunk,
            }])
            .await?;
        written += outcome.stored as u64;
        duplicates += outcome.duplicates as u64;
        bar.set_message(format!("{written} events"));
        store.maintain().await?;
    }
    let stats = worker
        .await?
        .map_err(|e| anyhow::anyhow!("import failed: {e}"))?;
    store.flush_now().await?;
    bar.finish_and_clear();
    println!(
        "imported {written} events into {} ({} lines, {} rejected, {duplicates} duplicates skipped)",
        project.name, stats.lines, stats.rejected
    );
    for (line, e) in &stats.errors {
        println!("  line {line}: {}: {} ({})", e.field, e.message, e.code);
    }
    Ok(())
}
