//! `argus import`: reads the input as a stream, packs batches up to the server's limits
//! (`GET /limits`), sends them gzip-compressed, a few at a time, and records progress in a
//! checkpoint so that `--resume` continues after an interruption.
//!
//! Nothing is sent twice under a different identity: each event's id derives from the input's
//! fingerprint (its first MiB) and its line, so a rerun or a resumed run sends the same ids and
//! the server answers what it already has as a duplicate.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::api::{Api, CallError};
use crate::input::{self, ColumnMap, Format, Record};

#[derive(Clone, Debug)]
pub enum Dialect {
    /// `POST /batch/events`: events in Argus's shape (`session_id`, `category`, `name`, …).
    Argus,
    /// `POST /ingest/batch`: DataStream's events (`event_type`, `data`, …) into one stream.
    DataStream { stream: String },
}

#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// `None`: standard input.
    pub path: Option<PathBuf>,
    pub format: Format,
    pub columns: ColumnMap,
    pub dialect: Dialect,
    pub concurrency: usize,
    pub batch_items: Option<usize>,
    pub resume: bool,
    pub checkpoint: PathBuf,
    pub failed: PathBuf,
    pub dry_run: bool,
}

/// What the checkpoint file holds: every line up to `through_line` is acknowledged (stored,
/// already there, or written to the failed file).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    pub fingerprint: String,
    pub through_line: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub failed: u64,
}

impl Checkpoint {
    fn to_json(&self) -> Value {
        json!({"fingerprint": self.fingerprint, "through_line": self.through_line, "stored": self.stored,
            "duplicates": self.duplicates, "failed": self.failed,
            "updated_at": chrono::Utc::now().to_rfc3339()})
    }

    pub fn load(path: &PathBuf) -> Result<Option<Self>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(format!("reading {}: {err}", path.display())),
        };
        let value: Value =
            serde_json::from_str(&text).map_err(|e| format!("{} is not a checkpoint: {e}", path.display()))?;
        let number = |name: &str| value[name].as_u64().unwrap_or(0);
        Ok(Some(Self {
            fingerprint: value["fingerprint"].as_str().unwrap_or("").to_string(),
            through_line: number("through_line"),
            stored: number("stored"),
            duplicates: number("duplicates"),
            failed: number("failed"),
        }))
    }

    /// Written whole to a temporary file, then renamed over the old one: never half a checkpoint.
    fn save(&self, path: &PathBuf) -> Result<(), String> {
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, self.to_json().to_string()).map_err(|e| format!("writing checkpoint: {e}"))?;
        std::fs::rename(&temporary, path).map_err(|e| format!("writing checkpoint: {e}"))
    }
}

/// The id of the event on `line` of the input with `fingerprint`.
pub fn event_id(fingerprint: &str, line: u64) -> Uuid {
    let namespace = Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("argus-import:{fingerprint}").as_bytes());
    Uuid::new_v5(&namespace, line.to_string().as_bytes())
}

struct Batch {
    seq: u64,
    last_line: u64,
    lines: Vec<u64>,
    items: Vec<Value>,
}

enum Work {
    Batch(Batch),
    /// A record that could not be read: a failure of its own, in sequence.
    Unreadable {
        seq: u64,
        line: u64,
        error: String,
    },
}

#[derive(Default)]
struct Counters {
    /// HTTP calls made, `GET /limits` and every resend included (what API Gateway bills).
    calls: AtomicU64,
    stored: AtomicU64,
    duplicates: AtomicU64,
    failed: AtomicU64,
    bytes_read: AtomicU64,
}

/// Reader bytes counted, for progress over the input's size.
struct Counting<R> {
    inner: R,
    counters: Arc<Counters>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counters.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Items per call unless `--batch-size` says otherwise.
pub const DEFAULT_BATCH_ITEMS: usize = 1_000;

pub struct Summary {
    pub calls: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub failed: u64,
    pub elapsed: Duration,
}

pub async fn run(api: &Api, options: ImportOptions) -> Result<Summary, String> {
    let started = Instant::now();
    // Also the credentials' check: a wrong key or URL stops here, before anything is read.
    let limits = match api.get("/limits").await {
        Ok(limits) => limits,
        Err(err) if err.status.is_some_and(|s| matches!(s, 401 | 403 | 404)) => {
            return Err(format!("GET /limits answered {err}: check --url and --api-key"));
        }
        Err(_) => Value::Null,
    };
    let max_items = limits["bulk"]["max_items"].as_u64().unwrap_or(10_000) as usize;
    // 1,000 a call by default: each call answers well within the function's deadline even when
    // every item carries its id (conditional transactions of 100), and a few calls in flight
    // keep the table busy; `--batch-size` goes up to the server's limit.
    let max_items = options.batch_items.unwrap_or(DEFAULT_BATCH_ITEMS).clamp(1, max_items);
    // Sized to the plain-body limit although bodies go gzip-compressed: a compressed body must
    // still fit Lambda's 6 MB payload (base64 inside it), which a batch of the gzip limit's
    // 25 MiB does only when it compresses more than 5:1. A tenth is kept for the envelope.
    let max_bytes = limits["bulk"]["max_bytes"].as_u64().unwrap_or(5 * 1024 * 1024) as usize * 9 / 10;

    let counters = Arc::new(Counters::default());
    let (raw, total_bytes): (Box<dyn Read + Send>, Option<u64>) = match &options.path {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let size = file.metadata().ok().map(|m| m.len());
            (Box::new(Counting { inner: file, counters: counters.clone() }), size)
        }
        None => (Box::new(Counting { inner: std::io::stdin(), counters: counters.clone() }), None),
    };
    let (reader, fingerprint) = input::open(raw)?;
    let mut checkpoint = Checkpoint { fingerprint: fingerprint.clone(), ..Default::default() };
    if options.resume && !options.dry_run {
        if let Some(saved) = Checkpoint::load(&options.checkpoint)? {
            if saved.fingerprint != fingerprint {
                return Err(format!(
                    "{} was written for another input (its first MiB differs): remove it to start over",
                    options.checkpoint.display()
                ));
            }
            checkpoint = saved;
        }
    }
    let skip_through = checkpoint.through_line;
    counters.stored.store(checkpoint.stored, Ordering::Relaxed);
    counters.duplicates.store(checkpoint.duplicates, Ordering::Relaxed);
    counters.failed.store(checkpoint.failed, Ordering::Relaxed);

    // The reader runs on its own thread (blocking I/O), a few batches ahead of the senders.
    let (work_tx, work_rx) = tokio::sync::mpsc::channel::<Work>(options.concurrency * 2);
    let dialect = options.dialect.clone();
    let reader_fingerprint = fingerprint.clone();
    let records = input::records(reader, options.format, options.columns.clone());
    let reader_thread = std::thread::spawn(move || {
        pack(records, skip_through, &dialect, &reader_fingerprint, max_items, max_bytes, work_tx)
    });

    let failed_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&options.failed)
        .map_err(|e| format!("{}: {e}", options.failed.display()))?;
    let failed_file = Arc::new(std::sync::Mutex::new(failed_file));
    let progress = tokio::spawn(report_progress(counters.clone(), total_bytes, started));

    let path = match (&options.dialect, options.dry_run) {
        (Dialect::Argus, false) => "/batch/events",
        (Dialect::Argus, true) => "/batch/events?validate_only=true",
        (Dialect::DataStream { .. }, false) => "/ingest/batch",
        (Dialect::DataStream { .. }, true) => "/ingest/batch?validate_only=true",
    };
    let mut done: BTreeMap<u64, u64> = BTreeMap::new();
    let mut next_seq = 0u64;
    let mut fatal = None;
    {
        use futures::StreamExt;
        let work = tokio_stream_of(work_rx);
        let mut sent = work
            .map(|work| {
                let (api, counters, failed_file, dialect) =
                    (api.clone(), counters.clone(), failed_file.clone(), options.dialect.clone());
                async move {
                    match work {
                        Work::Unreadable { seq, line, error } => {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                            record_failure(
                                &failed_file,
                                line,
                                None,
                                &json!({"code": "UNREADABLE", "message": error}),
                                &Value::Null,
                            );
                            Ok((seq, line))
                        }
                        Work::Batch(batch) => send_batch(&api, path, &dialect, batch, &counters, &failed_file).await,
                    }
                }
            })
            .buffer_unordered(options.concurrency.max(1));
        while let Some(result) = sent.next().await {
            match result {
                Ok((seq, last_line)) => {
                    done.insert(seq, last_line);
                    while let Some(line) = done.remove(&next_seq) {
                        checkpoint.through_line = line;
                        next_seq += 1;
                    }
                    checkpoint.stored = counters.stored.load(Ordering::Relaxed);
                    checkpoint.duplicates = counters.duplicates.load(Ordering::Relaxed);
                    checkpoint.failed = counters.failed.load(Ordering::Relaxed);
                    if !options.dry_run {
                        checkpoint.save(&options.checkpoint)?;
                    }
                }
                Err(err) => {
                    fatal = Some(err);
                    break;
                }
            }
        }
    }
    progress.abort();
    if options.path.is_some() || std::io::stderr().is_terminal() {
        eprintln!();
    }
    if let Some(err) = fatal {
        return Err(format!(
            "stopped: {err}. Lines up to {} are done; run again with --resume to continue",
            checkpoint.through_line
        ));
    }
    reader_thread.join().map_err(|_| "the reader thread panicked".to_string())??;
    Ok(Summary {
        // GET /limits, plus every batch call.
        calls: 1 + counters.calls.load(Ordering::Relaxed),
        stored: counters.stored.load(Ordering::Relaxed),
        duplicates: counters.duplicates.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

fn tokio_stream_of<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Packs records into batches (after `skip_through`), adding ids; runs on the reader thread.
fn pack(
    records: Box<dyn Iterator<Item = Record> + Send>,
    skip_through: u64,
    dialect: &Dialect,
    fingerprint: &str,
    max_items: usize,
    max_bytes: usize,
    work: tokio::sync::mpsc::Sender<Work>,
) -> Result<(), String> {
    let id_field = match dialect {
        Dialect::Argus => "id",
        Dialect::DataStream { .. } => "event_id",
    };
    // Sequence numbers follow line order (a batch is sent before a later unreadable line), so
    // the checkpoint's contiguous prefix of finished sequence numbers is a prefix of lines.
    let mut seq = 0u64;
    let mut batch: Vec<(u64, Value)> = Vec::new();
    let mut bytes = 0usize;
    // A closed channel means the senders stopped (a fatal error): stop reading.
    let send = |work_item: Work| work.blocking_send(work_item).map_err(|_| "stopped".to_string());
    let flush = |batch: &mut Vec<(u64, Value)>, seq: &mut u64| -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        let (lines, items): (Vec<u64>, Vec<Value>) = std::mem::take(batch).into_iter().unzip();
        let last_line = lines.last().copied().unwrap_or(0);
        send(Work::Batch(Batch { seq: *seq, last_line, lines, items }))?;
        *seq += 1;
        Ok(())
    };
    for record in records {
        if record.line <= skip_through {
            continue;
        }
        let mut event = match record.event {
            Ok(Value::Object(event)) => event,
            other => {
                flush(&mut batch, &mut seq)?;
                bytes = 0;
                let error = other.err().unwrap_or_else(|| "an event is a JSON object".into());
                send(Work::Unreadable { seq, line: record.line, error })?;
                seq += 1;
                continue;
            }
        };
        // DataStream events name their id only with a timestamp (a retry must be the same event):
        // without one the server stamps the receipt, and the event goes without a derived id.
        if id_field == "id" || event.get("timestamp").is_some_and(|t| !t.is_null()) {
            event.entry(id_field).or_insert_with(|| Value::String(event_id(fingerprint, record.line).to_string()));
        }
        let size = serde_json::to_vec(&event).map_or(0, |v| v.len()) + 1;
        if !batch.is_empty() && (batch.len() >= max_items || bytes + size > max_bytes) {
            flush(&mut batch, &mut seq)?;
            bytes = 0;
        }
        batch.push((record.line, Value::Object(event)));
        bytes += size;
    }
    flush(&mut batch, &mut seq)
}

fn record_failure(
    file: &std::sync::Mutex<std::fs::File>,
    line: u64,
    status: Option<u64>,
    error: &Value,
    event: &Value,
) {
    if let Ok(mut file) = file.lock() {
        let entry = json!({"line": line, "status": status, "error": error, "event": event});
        let _ = writeln!(file, "{entry}");
    }
}

/// Sends one batch until every item is decided: per-item 503s are sent again (same ids), a 413
/// splits the batch, other per-item failures go to the failed file. `Err` only when the
/// server cannot be reached or keeps failing: the import stops, resumable.
async fn send_batch(
    api: &Api,
    path: &str,
    dialect: &Dialect,
    batch: Batch,
    counters: &Counters,
    failed_file: &std::sync::Mutex<std::fs::File>,
) -> Result<(u64, u64), CallError> {
    let mut pending: Vec<(u64, Value)> = batch.lines.into_iter().zip(batch.items).collect();
    let mut round = 0u32;
    let mut chunk_limit = pending.len();
    while !pending.is_empty() {
        let mut retry = Vec::new();
        let mut split = false;
        let chunks: Vec<Vec<(u64, Value)>> = pending.chunks(chunk_limit.max(1)).map(<[_]>::to_vec).collect();
        for chunk in chunks {
            if split {
                // A 413 came back: the rest is sent again at the smaller size.
                retry.extend(chunk);
                continue;
            }
            let items: Vec<&Value> = chunk.iter().map(|(_, item)| item).collect();
            let body = match dialect {
                Dialect::Argus => json!({"mode": "partial", "items": items}),
                Dialect::DataStream { stream } => json!({"stream_id": stream, "events": items}),
            };
            counters.calls.fetch_add(1, Ordering::Relaxed);
            let answer = match api.post_gzip(path, &body).await {
                Ok(answer) => answer,
                Err(err) if err.status == Some(413) && chunk.len() > 1 => {
                    chunk_limit = chunk.len() / 2;
                    split = true;
                    retry.extend(chunk);
                    continue;
                }
                // Credentials, URL or route wrong: nothing can succeed; stop, resumable.
                Err(err) if err.status.is_some_and(|s| matches!(s, 401 | 403 | 404 | 405 | 415)) => return Err(err),
                Err(err) if err.status.is_some_and(|s| (400..500).contains(&s) && s != 429) => {
                    // The whole request is refused (e.g. a malformed stream id): every item fails.
                    for (line, item) in &chunk {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        let error = err.body.get("error").cloned().unwrap_or(json!({"message": err.message}));
                        record_failure(failed_file, *line, err.status.map(u64::from), &error, item);
                    }
                    continue;
                }
                Err(err) => return Err(err),
            };
            let results = answer["results"].as_array().cloned().unwrap_or_default();
            // Every item needs its answer: one the server did not give (a cut-off or unreadable
            // reply) is sent again, with its id, rather than assumed stored.
            let mut answered = vec![false; chunk.len()];
            for result in results {
                let Some(index) = result["index"].as_u64().map(|i| i as usize).filter(|i| *i < chunk.len()) else {
                    continue;
                };
                answered[index] = true;
                let (line, item) = &chunk[index];
                match result["status"].as_u64() {
                    Some(201) => counters.stored.fetch_add(1, Ordering::Relaxed),
                    Some(200) if result["duplicate"] == true => counters.duplicates.fetch_add(1, Ordering::Relaxed),
                    Some(200) => counters.stored.fetch_add(1, Ordering::Relaxed),
                    Some(503) => {
                        retry.push((*line, item.clone()));
                        0
                    }
                    status => {
                        record_failure(failed_file, *line, status, &result["error"], item);
                        counters.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            retry.extend(chunk.iter().zip(&answered).filter(|(_, done)| !**done).map(|(pair, _)| pair.clone()));
        }
        pending = retry;
        if !pending.is_empty() && !split {
            round += 1;
            if round > api.max_attempts {
                return Err(CallError {
                    status: Some(503),
                    body: Value::Null,
                    message: format!("{} items still not written after {round} rounds", pending.len()),
                });
            }
            tokio::time::sleep(crate::api::backoff(round, None)).await;
        }
    }
    Ok((batch.seq, batch.last_line))
}

/// A progress line every second on a terminal (rewritten in place), every 5 s otherwise.
async fn report_progress(counters: Arc<Counters>, total_bytes: Option<u64>, started: Instant) {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal { Duration::from_secs(1) } else { Duration::from_secs(5) };
    loop {
        tokio::time::sleep(every).await;
        let done = counters.stored.load(Ordering::Relaxed) + counters.duplicates.load(Ordering::Relaxed);
        let failed = counters.failed.load(Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / elapsed;
        let share =
            total_bytes.filter(|t| *t > 0).map(|t| counters.bytes_read.load(Ordering::Relaxed) as f64 / t as f64);
        let position = match share {
            Some(share) if share > 0.0 => {
                let eta = elapsed * (1.0 - share.min(1.0)) / share;
                format!(" {:>5.1}% read, ETA {}", share * 100.0, clock(eta))
            }
            _ => String::new(),
        };
        let line = format!("{done} events sent ({failed} failed), {rate:.0} events/s{position}");
        if terminal {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_per_input_and_line() {
        assert_eq!(event_id("abc", 7), event_id("abc", 7));
        assert_ne!(event_id("abc", 7), event_id("abc", 8));
        assert_ne!(event_id("abc", 7), event_id("abd", 7));
    }

    #[test]
    fn checkpoints_round_trip_atomically() {
        let dir = std::env::temp_dir().join(format!("argus-cli-test-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("import.checkpoint");
        assert_eq!(Checkpoint::load(&path).unwrap(), None);
        let saved = Checkpoint { fingerprint: "f".into(), through_line: 42, stored: 40, duplicates: 1, failed: 1 };
        saved.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), Some(saved));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn packing_respects_items_bytes_and_the_resume_point() {
        let mut records: Vec<Record> = (1..=10).map(|line| Record { line, event: Ok(json!({"n": line})) }).collect();
        records[7].event = Err("bad".into());
        let (tx, mut rx) = tokio::sync::mpsc::channel(100);
        pack(Box::new(records.into_iter()), 3, &Dialect::Argus, "fp", 3, 1 << 20, tx).unwrap();
        let mut seen = Vec::new();
        while let Ok(work) = rx.try_recv() {
            match work {
                Work::Batch(batch) => {
                    assert!(batch.items.iter().all(|i| i["id"].is_string()));
                    seen.push((batch.seq, batch.lines.clone()));
                }
                Work::Unreadable { seq, line, .. } => seen.push((seq, vec![line])),
            }
        }
        // Line 8 is unreadable: the batch before it goes first, sequence follows line order.
        assert_eq!(seen, [(0, vec![4, 5, 6]), (1, vec![7]), (2, vec![8]), (3, vec![9, 10])]);
    }
}
