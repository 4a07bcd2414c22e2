//! Usage rows that are never lost, written off the request path.
//!
//! [`StoreUsageSink::record`] prices the record, logs it (the `usage` log line stays), appends
//! it as one JSON line to the spool segment `usage-spool/current.jsonl` in the data directory and
//! keeps it in a bounded in-memory batch. The lines recorded in one turn of the event loop go to
//! the file in one `write` as soon as that turn ends (the spool appender, part of
//! [`UsageWriter::run`]), so a process that is killed loses nothing recorded before its last
//! turn; a `write` per record was 4% of the relay's CPU. [`UsageWriter`] wakes every
//! `storage.usage_batch_interval_ms` (or when a batch is full), seals the segment (rename), writes
//! its rows in one transaction and deletes the sealed file. If the database fails, sealed
//! segments wait on disk and are retried; rows past `storage.usage_queue_capacity` are not kept in
//! memory and are read back from their segment. At start, [`replay`] writes every segment a
//! previous run left behind. Rows are keyed by request id, so a segment written twice (a crash
//! between commit and delete) adds nothing.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{now_ms, Store, UsageRow};
use crate::limits::Limits;
use crate::pricing::{Cost, PriceTable};
use crate::usage::{log_record, UsageRecord, UsageSink};

const SPOOL_DIR: &str = "usage-spool";
const CURRENT: &str = "current.jsonl";
/// Rows per transaction, and the segment size that wakes the writer early. Large on purpose:
/// each transaction pays a commit and rewrites the last page of every index it appends to, so
/// the cost per row falls with the batch.
const BATCH: usize = 4096;

/// A sealed segment: its file, and its rows when they are still in memory.
struct Sealed {
    path: PathBuf,
    rows: Option<Vec<UsageRow>>,
}

struct Spool {
    dir: PathBuf,
    file: Option<File>,
    /// JSON lines recorded since the appender last ran, not yet in the file.
    unwritten: Vec<u8>,
    pending: Vec<UsageRow>,
    /// Rows appended to the current segment since it was opened.
    appended: usize,
    /// Some rows of the current segment are only in the file.
    overflowed: bool,
    sealed_count: u64,
}

pub struct StoreUsageSink {
    prices: Arc<PriceTable>,
    limits: Arc<Limits>,
    spool: Mutex<Spool>,
    capacity: usize,
    /// Wakes the writer early: a batch is full.
    wake: Notify,
    /// Wakes the appender: the first unwritten line of a turn was recorded.
    unwritten: Notify,
}

impl StoreUsageSink {
    pub fn new(
        data_dir: &Path,
        prices: Arc<PriceTable>,
        limits: Arc<Limits>,
        capacity: usize,
    ) -> Result<Self, String> {
        let dir = spool_dir(data_dir)?;
        Ok(Self {
            prices,
            limits,
            spool: Mutex::new(Spool {
                dir,
                file: None,
                unwritten: Vec::new(),
                pending: Vec::new(),
                appended: 0,
                overflowed: false,
                sealed_count: 0,
            }),
            capacity,
            wake: Notify::new(),
            unwritten: Notify::new(),
        })
    }

    /// The stored row, made of the record's own strings.
    fn row(record: UsageRecord, cost: Cost) -> UsageRow {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        UsageRow {
            request_id: record.request_id,
            at_ms: now_ms(),
            key: record.key,
            account: record.account,
            endpoint: record.endpoint.to_owned(),
            model: record.model,
            stream: record.stream,
            status: record.status,
            success: record.success,
            input_tokens: count(record.tokens.input),
            cached_input_tokens: count(record.tokens.cached_input),
            cache_creation_tokens: count(record.tokens.cache_creation),
            output_tokens: count(record.tokens.output),
            reasoning_tokens: count(record.tokens.reasoning),
            cost_usd: cost.usd,
            priced: cost.priced,
            duration_ms: count(record.duration_ms),
            ttft_ms: record.ttft_ms.map(count),
            attempts: i32::try_from(record.attempts.len()).unwrap_or(i32::MAX),
            client_disconnected: record.client_disconnected,
        }
    }

    /// Queues the row's line for the current segment and keeps the row for the next batch. The
    /// appender hands the queued lines to the kernel once the current turn of the event loop ends.
    fn spool(&self, row: UsageRow) {
        let mut spool = self.spool.lock().unwrap_or_else(|p| p.into_inner());
        let first = spool.unwritten.is_empty();
        let start = spool.unwritten.len();
        match serde_json::to_writer(&mut spool.unwritten, &row) {
            Ok(()) => spool.unwritten.push(b'\n'),
            Err(e) => {
                spool.unwritten.truncate(start);
                tracing::error!(request_id = %row.request_id, "cannot encode a usage row: {e}");
            }
        }
        spool.appended += 1;
        if spool.pending.len() < self.capacity {
            spool.pending.push(row);
        } else {
            spool.overflowed = true;
        }
        let full = spool.appended >= BATCH;
        drop(spool);
        if first {
            self.unwritten.notify_one();
        }
        if full {
            self.wake.notify_one();
        }
    }

    /// Appends the queued lines to the current segment in one `write`.
    fn append_unwritten(&self) {
        let mut spool = self.spool.lock().unwrap_or_else(|p| p.into_inner());
        append_unwritten(&mut spool);
    }

    /// Closes the current segment under a new name and hands over its rows.
    fn seal(&self) -> Option<Sealed> {
        let mut spool = self.spool.lock().unwrap_or_else(|p| p.into_inner());
        if spool.appended == 0 {
            return None;
        }
        append_unwritten(&mut spool);
        spool.sealed_count += 1;
        let path = spool.dir.join(format!(
            "sealed-{:013}-{:06}.jsonl",
            now_ms(),
            spool.sealed_count
        ));
        let current = spool.dir.join(CURRENT);
        let renamed = std::fs::rename(&current, &path);
        let no_file = matches!(&renamed, Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        if no_file && !spool.overflowed {
            // The segment could not be opened: the rows are only in memory; write them anyway.
        } else if let Err(e) = renamed {
            // Keep everything as it is; the next flush tries again.
            tracing::error!("cannot seal the usage spool {}: {e}", current.display());
            return None;
        }
        spool.file = None;
        let rows = std::mem::take(&mut spool.pending);
        let overflowed = std::mem::replace(&mut spool.overflowed, false);
        spool.appended = 0;
        Some(Sealed {
            path,
            rows: (!overflowed).then_some(rows),
        })
    }
}

impl UsageSink for StoreUsageSink {
    fn record(&self, record: UsageRecord) {
        let anthropic = matches!(record.endpoint, "messages" | "count_tokens");
        let cost = self.prices.cost(&record.model, &record.tokens, !anthropic);
        log_record(&record, Some((cost.usd, cost.priced)));
        self.limits.add_spend(&record.key, cost.usd);
        self.spool(Self::row(record, cost));
    }
}

/// The background task that moves spooled rows into the store.
pub struct UsageWriter {
    sink: Arc<StoreUsageSink>,
    store: Arc<dyn Store>,
    interval: Duration,
    backlog: VecDeque<Sealed>,
}

impl UsageWriter {
    pub fn new(sink: Arc<StoreUsageSink>, store: Arc<dyn Store>, interval: Duration) -> Self {
        Self {
            sink,
            store,
            interval,
            backlog: VecDeque::new(),
        }
    }

    /// Runs until `stop` is cancelled, then writes everything recorded so far (the caller
    /// cancels only after the relay tasks drained).
    pub async fn run(self, stop: CancellationToken) {
        let sink = Arc::clone(&self.sink);
        let appender = async {
            loop {
                tokio::select! {
                    () = sink.unwritten.notified() => sink.append_unwritten(),
                    () = stop.cancelled() => break,
                }
            }
        };
        // The appender keeps running while a batch is being stored.
        tokio::join!(appender, self.write_batches(&stop));
        // Anything recorded after both stopped (nothing should be) goes to the file too.
        sink.append_unwritten();
    }

    async fn write_batches(mut self, stop: &CancellationToken) {
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(self.interval) => false,
                () = self.sink.wake.notified() => false,
                () = stop.cancelled() => true,
            };
            self.flush().await;
            if stopping {
                break;
            }
        }
        // Last chance: a briefly unavailable database gets a few retries before we exit.
        for _ in 0..5 {
            if self.backlog.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.flush().await;
        }
        if !self.backlog.is_empty() {
            tracing::warn!(
                segments = self.backlog.len(),
                "usage rows stay in storage.data_dir/usage-spool and are written at the next start"
            );
        }
    }

    async fn flush(&mut self) {
        if let Some(sealed) = self.sink.seal() {
            self.backlog.push_back(sealed);
        }
        while let Some(front) = self.backlog.front_mut() {
            match write_segment(self.store.as_ref(), &front.path, front.rows.take()).await {
                Ok(()) => {
                    self.backlog.pop_front();
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot write usage rows to the store ({e}); they wait in {} and are retried",
                        front.path.display()
                    );
                    return;
                }
            }
        }
    }
}

/// Writes one segment (rows from memory, else from its file) and deletes its file.
async fn write_segment(
    store: &dyn Store,
    path: &Path,
    rows: Option<Vec<UsageRow>>,
) -> Result<(), String> {
    let rows = match rows {
        Some(rows) => rows,
        None => read_segment(path)?,
    };
    for chunk in rows.chunks(BATCH) {
        store.insert_usage(chunk).await.map_err(|e| e.to_string())?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot delete {}: {e}", path.display())),
    }
}

fn read_segment(path: &Path) -> Result<Vec<UsageRow>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<UsageRow>(line) {
            Ok(row) => rows.push(row),
            // Only a torn last line (power loss mid-write) can be damaged.
            Err(e) => tracing::warn!(
                "skipping a damaged usage spool line in {}: {e}",
                path.display()
            ),
        }
    }
    Ok(rows)
}

/// Writes every segment a previous run left in the spool. Returns the rows that were new.
pub async fn replay(data_dir: &Path, store: &dyn Store) -> Result<u64, String> {
    let dir = spool_dir(data_dir)?;
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    // Sealed segments are named by time; the unsealed one is the newest.
    segments.sort_by_key(|p| p.file_name().is_some_and(|n| n == CURRENT));
    let mut new = 0;
    for path in segments {
        let rows = read_segment(&path)?;
        for chunk in rows.chunks(BATCH) {
            new += store
                .insert_usage(chunk)
                .await
                .map_err(|e| format!("cannot replay {}: {e}", path.display()))?;
        }
        std::fs::remove_file(&path)
            .map_err(|e| format!("cannot delete {}: {e}", path.display()))?;
    }
    Ok(new)
}

/// Hands the queued lines to the kernel. A line that cannot be written is still in the batch in
/// memory (unless the batch overflowed), so only a crash before the batch is stored loses it.
fn append_unwritten(spool: &mut Spool) {
    if spool.unwritten.is_empty() {
        return;
    }
    if spool.file.is_none() {
        let path = spool.dir.join(CURRENT);
        match open_append(&path) {
            Ok(file) => spool.file = Some(file),
            Err(e) => tracing::error!("cannot open the usage spool {}: {e}", path.display()),
        }
    }
    if let Some(file) = spool.file.as_mut() {
        if let Err(e) = file.write_all(&spool.unwritten) {
            let lines = spool.unwritten.iter().filter(|&&b| b == b'\n').count();
            tracing::error!("cannot append {lines} usage rows to the usage spool: {e}");
        }
    }
    spool.unwritten.clear();
    // A burst can leave a large buffer behind; do not keep it for the quiet that follows.
    if spool.unwritten.capacity() > 1 << 16 {
        spool.unwritten.shrink_to(1 << 12);
    }
}

fn spool_dir(data_dir: &Path) -> Result<PathBuf, String> {
    let dir = data_dir.join(SPOOL_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}
