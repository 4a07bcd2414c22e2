//! Usage rows that are never lost, written off the request path.
//!
//! [`StoreUsageSink::record`] prices the record, logs it (the `usage` log line stays) and puts
//! its row in an in-memory queue. The rows recorded in one turn of the event loop go to the
//! spool segment `usage-spool/current.jsonl` in the data directory, one JSON line each, in one
//! `write` as soon as that turn ends (the spool appender, part of [`UsageWriter::run`]), so a
//! process that is killed loses nothing recorded before its last turn; a `write` per record was
//! 4% of the relay's CPU. The rows of that last turn are lost: the `usage` log line comes before
//! the write, and the relay records a request only after its answer (`crate::usage`), so those
//! clients already have their answers.
//!
//! A row leaves the queue only once its whole line is in the file. When the spool cannot be
//! written (a full disk, a read-only file system), the rows wait in the queue and the append is
//! retried with backoff; a write torn by a full disk is cut back to its last whole line. The
//! queue holds `storage.usage_queue_capacity` rows: while the spool fails and the queue is full,
//! [`UsageSink::accepting`] is false and the relay refuses new requests (503) instead of serving
//! them unrecorded.
//!
//! [`UsageWriter`] wakes every `storage.usage_batch_interval_ms` (or when a segment holds a full
//! batch), seals the segment (rename), writes its rows in one transaction and deletes the sealed
//! file. If the database fails, sealed segments wait on disk and are retried with backoff (only
//! the oldest keeps its rows in memory; the others are read back from their file). At start,
//! [`replay`] writes every segment a previous run left behind. Rows are keyed by request id, so a
//! segment written twice (a crash between commit and delete) adds nothing.
//!
//! A failing spool or store is logged once when it starts failing and once when it works again,
//! not once per row or batch.

#![allow(
    clippy::disallowed_methods,
    reason = "the spool appender writes on its own task by design (one small write per \
              event-loop turn, measured cheaper than a hand-off to the blocking pool); sealed \
              segments are renamed, read and deleted by the writer task, never by a request"
)]

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{now_ms, Store, UsageRow};
use crate::pricing::{Cost, PriceTable};
use crate::runtime_state::Live;
use crate::usage::{log_record, UsageRecord, UsageSink};

/// A text of a usage row as every store can keep it: PostgreSQL refuses a NUL character in any
/// text, and a batch is one statement, so one client's model name with a NUL would keep its batch
/// and every row after it out of the database. It becomes U+FFFD, as invalid UTF-8 does.
fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{fffd}")
    } else {
        text
    }
}

const SPOOL_DIR: &str = "usage-spool";
const CURRENT: &str = "current.jsonl";
/// Rows per transaction, and the segment size that wakes the writer early. Large on purpose:
/// each transaction pays a commit and rewrites the last page of every index it appends to, so
/// the cost per row falls with the batch. Also the most rows encoded for one `write`.
const BATCH: usize = 4096;
/// Rows of the current segment kept in memory for its batch; the rest are read back from the
/// file when the segment is stored.
const PENDING_MAX: usize = 2 * BATCH;
/// The first delay before a failed spool append or store write is tried again; it doubles with
/// each failure in a row, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long a stopping gateway keeps retrying a failing spool before it gives up the rows that
/// are still only in memory.
const STOP_RETRY_BUDGET: Duration = Duration::from_secs(5);

/// Delays between the tries of a failing write: `first`, doubling with each failure in a row,
/// never more than `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The delay before the next try, after one more failure.
    pub fn failed(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// A try worked: the next failure starts again at `first`.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// A sealed segment: its file, and its rows when they are still in memory.
struct Sealed {
    path: PathBuf,
    rows: Option<Vec<UsageRow>>,
    /// The file holds every row (false only when the segment file vanished under us and the
    /// rows are in memory alone).
    in_file: bool,
}

struct Spool {
    dir: PathBuf,
    file: Option<File>,
    /// Length of the open segment file: where a torn write is cut back to.
    file_len: u64,
    /// The file ends with part of a line that could not be cut back: the next write starts with
    /// a newline, so that part is a damaged line of its own (skipped when read back; its row is
    /// written again in full).
    torn: bool,
    /// Rows recorded whose lines are not in the file yet: in memory only.
    queue: VecDeque<UsageRow>,
    /// The lines of one `write`, reused.
    scratch: Vec<u8>,
    /// Rows of the current segment (in the file), kept for its batch.
    pending: Vec<UsageRow>,
    /// Rows appended to the current segment since it was opened.
    appended: usize,
    /// Some rows of the current segment are only in the file.
    overflowed: bool,
    sealed_count: u64,
    /// The last append failed.
    failing: bool,
    /// The last seal failed.
    seal_failing: bool,
}

/// What counts each priced request against its key's spending (`crate::limits::Limits`).
pub trait SpendMeter: Send + Sync {
    fn add_spend(&self, key: &str, usd: f64);
}

pub struct StoreUsageSink {
    /// Replaced by a configuration reload.
    prices: Arc<Live<PriceTable>>,
    spend: Arc<dyn SpendMeter>,
    spool: Mutex<Spool>,
    capacity: usize,
    /// Wakes the writer early: a batch is full.
    wake: Notify,
    /// Wakes the appender: the first row of a turn was queued.
    unwritten: Notify,
    /// New requests are refused: the spool cannot be written and the queue is full.
    refusing: AtomicBool,
}

impl StoreUsageSink {
    pub fn new(
        data_dir: &Path,
        prices: Arc<Live<PriceTable>>,
        spend: Arc<dyn SpendMeter>,
        capacity: usize,
    ) -> Result<Self, String> {
        let dir = spool_dir(data_dir)?;
        Ok(Self {
            prices,
            spend,
            spool: Mutex::new(Spool {
                dir,
                file: None,
                file_len: 0,
                torn: false,
                queue: VecDeque::new(),
                scratch: Vec::new(),
                pending: Vec::new(),
                appended: 0,
                overflowed: false,
                sealed_count: 0,
                failing: false,
                seal_failing: false,
            }),
            capacity,
            wake: Notify::new(),
            unwritten: Notify::new(),
            refusing: AtomicBool::new(false),
        })
    }

    /// The stored row, made of the record's own strings.
    fn row(record: UsageRecord, cost: Cost) -> UsageRow {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        UsageRow {
            request_id: storable(record.request_id),
            at_ms: now_ms(),
            key: storable(record.key),
            account: record.account.map(storable),
            endpoint: record.endpoint.to_owned(),
            model: storable(record.model),
            client_model: record.client_model.map(storable),
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
            transport: record.transport.as_str().to_owned(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues the row for the current segment. The appender hands the queued rows to the kernel
    /// once the current turn of the event loop ends.
    fn enqueue(&self, row: UsageRow) {
        let mut spool = self.lock();
        let first = spool.queue.is_empty();
        spool.queue.push_back(row);
        let refusing = spool.failing && spool.queue.len() >= self.capacity;
        drop(spool);
        if refusing {
            self.set_refusing(true);
        }
        if first {
            self.unwritten.notify_one();
        }
    }

    /// Whether the last append to the spool failed.
    fn spool_failing(&self) -> bool {
        self.lock().failing
    }

    /// Rows still only in memory.
    fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Appends the queued rows to the current segment. True when none is left in memory. A
    /// change between failing and working is logged once.
    fn append_queued(&self) -> bool {
        let mut spool = self.lock();
        let result = spool.append();
        let queued = spool.queue.len();
        match (&result, spool.failing) {
            (Ok(()), true) => {
                spool.failing = false;
                tracing::warn!(
                    "the usage spool {} can be written again; the usage rows that waited in memory are in it",
                    spool.dir.display()
                );
            }
            (Err(e), false) => {
                spool.failing = true;
                tracing::error!(
                    queued,
                    "cannot write usage rows to the usage spool {} (disk full?): {e}; they wait in memory (at most storage.usage_queue_capacity = {} before new requests are refused with 503) and the write is retried; this is logged again only when it works again",
                    spool.dir.display(),
                    self.capacity
                );
            }
            _ => {}
        }
        let refusing = spool.failing && queued >= self.capacity;
        let wake = spool.appended >= BATCH;
        drop(spool);
        self.set_refusing(refusing);
        if wake {
            self.wake.notify_one();
        }
        result.is_ok()
    }

    fn set_refusing(&self, refusing: bool) {
        if self.refusing.swap(refusing, Ordering::Relaxed) == refusing {
            return;
        }
        if refusing {
            tracing::error!(
                "usage cannot be recorded: the usage spool cannot be written and storage.usage_queue_capacity = {} rows wait in memory; new requests are refused with 503 until the spool can be written again",
                self.capacity
            );
        } else {
            tracing::warn!("usage can be recorded again: new requests are served");
        }
    }

    /// Closes the current segment under a new name and hands over its rows.
    fn seal(&self) -> Option<Sealed> {
        let mut spool = self.lock();
        if spool.appended == 0 {
            return None;
        }
        spool.sealed_count += 1;
        let path = spool.dir.join(format!(
            "sealed-{:013}-{:06}.jsonl",
            now_ms(),
            spool.sealed_count
        ));
        let current = spool.dir.join(CURRENT);
        let renamed = std::fs::rename(&current, &path);
        let no_file = matches!(&renamed, Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        let in_file = if no_file && !spool.overflowed {
            // The segment vanished: its rows are only in memory; write them anyway.
            false
        } else if let Err(e) = renamed {
            // Keep everything as it is; the next flush tries again.
            if !std::mem::replace(&mut spool.seal_failing, true) {
                tracing::error!(
                    "cannot seal the usage spool {}: {e}; retried at every batch, logged again only when it works",
                    current.display()
                );
            }
            return None;
        } else {
            true
        };
        if std::mem::replace(&mut spool.seal_failing, false) {
            tracing::warn!("the usage spool can be sealed again");
        }
        spool.file = None;
        spool.file_len = 0;
        spool.torn = false;
        let rows = std::mem::take(&mut spool.pending);
        let overflowed = std::mem::replace(&mut spool.overflowed, false);
        spool.appended = 0;
        Some(Sealed {
            path,
            rows: (!overflowed).then_some(rows),
            in_file,
        })
    }
}

impl Spool {
    /// Writes the queued rows to the current segment, up to a batch per `write`; a row leaves
    /// the queue only once its whole line is in the file.
    fn append(&mut self) -> std::io::Result<()> {
        while !self.queue.is_empty() {
            self.append_some()?;
        }
        // A burst can leave a large buffer behind; do not keep it for the quiet that follows.
        if self.scratch.capacity() > 1 << 16 {
            self.scratch = Vec::with_capacity(1 << 12);
        }
        Ok(())
    }

    fn append_some(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            let file = open_append(&self.dir.join(CURRENT))?;
            self.file_len = file.metadata()?.len();
            self.torn = false;
            self.file = Some(file);
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        if self.torn {
            buf.push(b'\n');
        }
        let prefix = buf.len();
        let mut batch = Vec::with_capacity(self.queue.len().min(BATCH));
        while batch.len() < BATCH {
            let Some(row) = self.queue.pop_front() else {
                break;
            };
            let start = buf.len();
            match serde_json::to_writer(&mut buf, &row) {
                Ok(()) => {
                    buf.push(b'\n');
                    batch.push(row);
                }
                Err(e) => {
                    buf.truncate(start);
                    tracing::error!(request_id = %row.request_id, "cannot encode a usage row: {e}");
                }
            }
        }
        let (written, result) = match self.file.as_mut() {
            Some(file) => write_some(file, &buf),
            None => (0, Ok(())),
        };
        // Whole lines in the file, and where the last one ends.
        let lines = buf
            .get(prefix.min(written)..written)
            .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
        let whole = buf
            .get(..written)
            .and_then(|b| b.iter().rposition(|&c| c == b'\n'))
            .map_or(0, |at| at + 1);
        if written > whole {
            // A torn line: cut it off, or else make it a damaged line of its own.
            let cut = self.file_len + whole as u64;
            let cut_back = self.file.as_ref().is_some_and(|f| f.set_len(cut).is_ok());
            if cut_back {
                self.file_len = cut;
                self.torn = false;
            } else {
                self.file_len += written as u64;
                self.torn = true;
            }
        } else {
            self.file_len += written as u64;
            self.torn = self.torn && written < prefix;
        }
        self.scratch = buf;
        let mut rows = batch.into_iter();
        for row in rows.by_ref().take(lines) {
            self.appended += 1;
            if self.pending.len() < PENDING_MAX {
                self.pending.push(row);
            } else {
                self.overflowed = true;
            }
        }
        // The rest go back to the front of the queue, in order.
        for row in rows.rev() {
            self.queue.push_front(row);
        }
        result
    }
}

/// Writes as much of `buf` as the file takes: how many bytes went in, and the error that stopped
/// it.
fn write_some(file: &mut File, buf: &[u8]) -> (usize, std::io::Result<()>) {
    let mut done = 0;
    while done < buf.len() {
        match file.write(&buf[done..]) {
            Ok(0) => return (done, Err(std::io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Err(e)),
        }
    }
    (done, Ok(()))
}

impl UsageSink for StoreUsageSink {
    fn record(&self, record: UsageRecord) {
        let cost = self
            .prices
            .get()
            .cost(&record.model, &record.tokens, !record.anthropic_tokens);
        log_record(&record, Some((cost.usd, cost.priced)));
        if let Some(metrics) = crate::metrics::get() {
            metrics.cost(cost.usd);
            metrics.usage_recorded();
        }
        // Only a key with a spending limit counts it (with Redis, a script per record).
        if record.spend_limited {
            self.spend.add_spend(&record.key, cost.usd);
        }
        self.enqueue(Self::row(record, cost));
    }

    fn accepting(&self) -> bool {
        !self.refusing.load(Ordering::Relaxed)
    }
}

/// The background task that moves queued rows into the spool and spooled rows into the store.
pub struct UsageWriter {
    sink: Arc<StoreUsageSink>,
    store: Arc<dyn Store>,
    interval: Duration,
    backlog: VecDeque<Sealed>,
    backoff: Backoff,
    /// The store failed: when to try it again.
    retry_at: Option<Instant>,
}

impl UsageWriter {
    pub fn new(sink: Arc<StoreUsageSink>, store: Arc<dyn Store>, interval: Duration) -> Self {
        Self {
            sink,
            store,
            interval,
            backlog: VecDeque::new(),
            backoff: Backoff::new(RETRY_FIRST, RETRY_MAX),
            retry_at: None,
        }
    }

    /// Runs until `stop` is cancelled, then writes everything recorded so far (the caller
    /// cancels only after the relay tasks drained).
    pub async fn run(mut self, stop: CancellationToken) {
        let sink = Arc::clone(&self.sink);
        // The appender keeps running while a batch is being stored.
        tokio::join!(append_loop(&sink, &stop), self.write_loop(&stop));
        // Every queued row to the spool (retried for a while if it fails), then to the store.
        append_before_exit(&sink).await;
        self.flush(true).await;
        // Last chance: a briefly unavailable database gets a few retries before we exit.
        for _ in 0..5 {
            if self.backlog.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.flush(true).await;
        }
        if !self.backlog.is_empty() {
            tracing::warn!(
                segments = self.backlog.len(),
                "usage rows stay in storage.data_dir/usage-spool and are written at the next start"
            );
        }
    }

    async fn write_loop(&mut self, stop: &CancellationToken) {
        loop {
            let next = self
                .retry_at
                .unwrap_or_else(|| Instant::now() + self.interval);
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = self.sink.wake.notified() => {}
                () = stop.cancelled() => return,
            }
            self.flush(false).await;
        }
    }

    /// Seals the current segment and writes the backlog, oldest first; while the store is
    /// failing, only when its retry is due (unless `now`).
    async fn flush(&mut self, now: bool) {
        if let Some(mut sealed) = self.sink.seal() {
            if !self.backlog.is_empty() && sealed.in_file {
                // Only the oldest waiting segment keeps its rows in memory.
                sealed.rows = None;
            }
            self.backlog.push_back(sealed);
        }
        if !now && self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        while let Some(front) = self.backlog.front() {
            match write_segment(self.store.as_ref(), &front.path, front.rows.as_deref()).await {
                Ok(()) => {
                    self.backlog.pop_front();
                }
                Err(e) => {
                    if self.retry_at.is_none() {
                        tracing::error!(
                            "cannot write usage rows to the store ({e}); they wait in {} and are retried; this is logged again only when it works again",
                            front.path.display()
                        );
                    }
                    self.retry_at = Some(Instant::now() + self.backoff.failed());
                    return;
                }
            }
        }
        if self.retry_at.take().is_some() {
            tracing::warn!("the store accepts usage rows again; the spooled ones are written");
        }
        self.backoff.reset();
    }
}

/// Appends what the relay recorded as soon as each turn of the event loop ends; while the spool
/// fails, retries with backoff.
async fn append_loop(sink: &StoreUsageSink, stop: &CancellationToken) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    loop {
        if sink.spool_failing() {
            tokio::select! {
                () = tokio::time::sleep(backoff.failed()) => {}
                () = stop.cancelled() => return,
            }
        } else {
            tokio::select! {
                () = sink.unwritten.notified() => {}
                () = stop.cancelled() => return,
            }
        }
        if sink.append_queued() {
            backoff.reset();
        }
    }
}

/// At the stop: appends every queued row, retrying a failing spool for up to
/// [`STOP_RETRY_BUDGET`]; what still cannot be written is lost, and said so.
async fn append_before_exit(sink: &StoreUsageSink) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    let mut waited = Duration::ZERO;
    while !sink.append_queued() {
        if waited >= STOP_RETRY_BUDGET {
            tracing::error!(
                lost = sink.queued(),
                "the usage spool still cannot be written at exit: the usage rows that waited in memory are lost"
            );
            return;
        }
        let delay = backoff.failed();
        tokio::time::sleep(delay).await;
        waited += delay;
    }
}

/// Writes one segment (rows from memory, else from its file) and deletes its file.
async fn write_segment(
    store: &dyn Store,
    path: &Path,
    rows: Option<&[UsageRow]>,
) -> Result<(), String> {
    let read;
    let rows = match rows {
        Some(rows) => rows,
        None => {
            read = read_segment(path)?;
            &read[..]
        }
    };
    for chunk in rows.chunks(BATCH) {
        if let Err(e) = store.insert_usage(chunk).await {
            if let Some(metrics) = crate::metrics::get() {
                metrics.store_error();
            }
            return Err(e.to_string());
        }
        if let Some(metrics) = crate::metrics::get() {
            metrics.usage_stored(chunk.len());
        }
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
            // A torn line (power loss mid-write, or a full disk whose partial line could not be
            // cut back; that row follows in full).
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

/// `usage-spool/` in the data directory, owner-only (0700) like the database.
fn spool_dir(data_dir: &Path) -> Result<PathBuf, String> {
    let dir = data_dir.join(SPOOL_DIR);
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // A spool made by an earlier version may be wider.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot restrict {} to its owner: {e}", dir.display()))?;
    }
    #[cfg(not(unix))]
    builder
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
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

#[cfg(test)]
#[path = "usage_writer/tests.rs"]
mod tests;
