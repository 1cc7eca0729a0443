//! Logs that cannot fill the disk or drown the box.
//!
//! - [`RepeatLimit`]: a tracing layer that lets each call site (one `warn!`
//!   in the code) log at most `max_repeats_per_s` lines a second and all of
//!   them together `max_lines_per_s`; what it holds back is counted and
//!   reported as one line ("suppressed N similar messages") when the site
//!   logs again or a second later. A flood of bad packets thus costs a few
//!   lines a second, never a line per packet.
//! - [`RotatingFile`]: the optional log file (`[log] file`), rotated at
//!   `file_max_bytes` into `FILE.1` .. `FILE.<file_keep>`: the disk use is
//!   bounded by `(file_keep + 1) * file_max_bytes`.
//!
//! [`init`] sets both up with the usual `GATEWAYD_LOG` filter (default `info`).
//! The rt thread never logs; everything here runs on the control plane.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tracing::callsite::Identifier;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::limits::Log;

// ------------------------------------------------------------------ limiter

/// The decision on one log line, in virtual time (see [`Limiter`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write it.
    Write,
    /// Drop it (counted).
    Suppress,
}

#[derive(Debug)]
struct Site {
    window_start: Instant,
    in_window: u32,
    suppressed: u64,
    /// What to call the site in the summary line.
    name: String,
}

/// Per-site and global line budgets over one-second windows; sans-IO.
#[derive(Debug)]
pub struct Limiter<K> {
    per_site: u32,
    global: u32,
    sites: HashMap<K, Site>,
    global_start: Instant,
    global_count: u32,
    global_suppressed: u64,
    last_flush: Instant,
}

impl<K: std::hash::Hash + Eq + Clone> Limiter<K> {
    pub fn new(now: Instant, per_site: u32, global: u32) -> Self {
        Limiter {
            per_site: per_site.max(1),
            global: global.max(1),
            sites: HashMap::new(),
            global_start: now,
            global_count: 0,
            global_suppressed: 0,
            last_flush: now,
        }
    }

    /// Decides on one line from `key` (named `name` in summaries).
    pub fn admit(&mut self, now: Instant, key: &K, name: impl FnOnce() -> String) -> Decision {
        if now.saturating_duration_since(self.global_start) >= Duration::from_secs(1) {
            self.global_start = now;
            self.global_count = 0;
        }
        let per_site = self.per_site;
        let site = self.sites.entry(key.clone()).or_insert_with(|| Site {
            window_start: now,
            in_window: 0,
            suppressed: 0,
            name: name(),
        });
        if now.saturating_duration_since(site.window_start) >= Duration::from_secs(1) {
            site.window_start = now;
            site.in_window = 0;
        }
        if site.in_window >= per_site {
            site.suppressed += 1;
            return Decision::Suppress;
        }
        if self.global_count >= self.global {
            self.global_suppressed += 1;
            return Decision::Suppress;
        }
        site.in_window += 1;
        self.global_count += 1;
        Decision::Write
    }

    /// Summary lines due: (site name or "all", count), for sites whose
    /// window has ended with lines held back. At most once a second.
    pub fn take_summaries(&mut self, now: Instant) -> Vec<(String, u64)> {
        if now.saturating_duration_since(self.last_flush) < Duration::from_secs(1) {
            return Vec::new();
        }
        self.last_flush = now;
        let mut out = Vec::new();
        for site in self.sites.values_mut() {
            if site.suppressed > 0 {
                out.push((site.name.clone(), std::mem::take(&mut site.suppressed)));
            }
        }
        if self.global_suppressed > 0 {
            out.push(("all sites (log rate limit)".into(), std::mem::take(&mut self.global_suppressed)));
        }
        out.sort();
        out
    }
}

// -------------------------------------------------------------------- layer

/// The tracing layer around [`Limiter`]; summaries go to `sink`.
pub struct RepeatLimit<W> {
    limiter: Mutex<Limiter<Identifier>>,
    sink: W,
}

impl<W> RepeatLimit<W> {
    pub fn new(cfg: &Log, sink: W) -> Self {
        RepeatLimit { limiter: Mutex::new(Limiter::new(Instant::now(), cfg.max_repeats_per_s, cfg.max_lines_per_s)), sink }
    }
}

impl<S, W> Layer<S> for RepeatLimit<W>
where
    S: Subscriber,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let now = Instant::now();
        let meta = event.metadata();
        let mut l = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        let d = l.admit(now, &meta.callsite(), || {
            format!("{} ({}:{})", meta.target(), meta.file().unwrap_or("?"), meta.line().unwrap_or(0))
        });
        let summaries = l.take_summaries(now);
        drop(l);
        if !summaries.is_empty() {
            let mut w = self.sink.make_writer();
            let stamp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            for (site, n) in summaries {
                let _ = writeln!(w, "{}  WARN gatewayd::log: suppressed {n} similar messages from {site}", utc(stamp));
            }
        }
        d == Decision::Write
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time.
fn utc(secs: u64) -> String {
    let rem = secs % 86_400;
    let (y, m, d) = crate::callerid::civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

// --------------------------------------------------------------------- file

/// A log file rotated by size; see the module docs.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Option<File>,
    written: u64,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile { path: path.to_path_buf(), max_bytes, keep: keep.max(1), file: Some(file), written })
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let _ = std::fs::remove_file(self.numbered(self.keep));
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(self.numbered(n), self.numbered(n + 1));
        }
        std::fs::rename(&self.path, self.numbered(1))?;
        self.file = Some(OpenOptions::new().create(true).truncate(true).write(true).open(&self.path)?);
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written > 0 && self.written + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        // A single line longer than the cap is cut: the cap holds.
        let take = buf.len().min(self.max_bytes as usize);
        let f = self.file.as_mut().ok_or_else(|| io::Error::other("log file not open"))?;
        f.write_all(&buf[..take])?;
        self.written += take as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

/// Where log lines go: stderr, and the rotating file if configured. Each
/// line is written whole under one lock.
#[derive(Clone)]
pub struct Sink {
    file: Option<Arc<Mutex<RotatingFile>>>,
    stderr: bool,
}

pub struct SinkWriter {
    sink: Sink,
    buf: Vec<u8>,
}

impl Write for SinkWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SinkWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.sink.stderr {
            let _ = io::stderr().write_all(&self.buf);
        }
        if let Some(f) = &self.sink.file {
            let _ = f.lock().unwrap_or_else(|p| p.into_inner()).write(&self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = SinkWriter;
    fn make_writer(&'a self) -> SinkWriter {
        SinkWriter { sink: self.clone(), buf: Vec::with_capacity(256) }
    }
}

impl Sink {
    pub fn new(cfg: &Log, stderr: bool) -> io::Result<Sink> {
        let file = match &cfg.file {
            Some(p) => Some(Arc::new(Mutex::new(RotatingFile::open(p, cfg.file_max_bytes, cfg.file_keep)?))),
            None => None,
        };
        Ok(Sink { file, stderr })
    }
}

/// The subscriber for `cfg`: `GATEWAYD_LOG` filter, repeat limits, stderr
/// and the optional rotating file.
pub fn subscriber(cfg: &Log, stderr: bool) -> io::Result<impl Subscriber + Send + Sync> {
    let sink = Sink::new(cfg, stderr)?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEWAYD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    Ok(tracing_subscriber::registry()
        .with(filter)
        .with(RepeatLimit::new(cfg, sink.clone()))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(sink)
                .with_ansi(cfg.file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr())),
        ))
}

/// Installs [`subscriber`] as the global one.
pub fn init(cfg: &Log) -> io::Result<()> {
    subscriber(cfg, true)?.try_init().map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_cut_to_the_budget_and_summarized() {
        let t0 = Instant::now();
        let mut l: Limiter<u32> = Limiter::new(t0, 5, 100);
        let mut written = 0;
        // 10,000 lines from one site over 2 s.
        for i in 0..10_000u32 {
            let t = t0 + Duration::from_micros(200 * i as u64);
            if l.admit(t, &1, || "site one".into()) == Decision::Write {
                written += 1;
            }
        }
        assert_eq!(written, 10, "5 a second for 2 s");
        // Another site still gets its own five.
        let t = t0 + Duration::from_millis(1999);
        assert!((0..5).all(|_| l.admit(t, &2, || "site two".into()) == Decision::Write));
        assert_eq!(l.admit(t, &2, || unreachable!()), Decision::Suppress);
        let s = l.take_summaries(t0 + Duration::from_secs(2));
        assert_eq!(s, vec![("site one".to_string(), 9_990), ("site two".to_string(), 1)]);
        assert!(l.take_summaries(t0 + Duration::from_millis(2500)).is_empty(), "once a second");
    }

    #[test]
    fn many_sites_share_the_global_budget() {
        let t0 = Instant::now();
        let mut l: Limiter<u32> = Limiter::new(t0, 5, 20);
        let written = (0..100u32).filter(|k| l.admit(t0, k, || format!("s{k}")) == Decision::Write).count();
        assert_eq!(written, 20);
        let s = l.take_summaries(t0 + Duration::from_secs(1));
        assert_eq!(s, vec![("all sites (log rate limit)".to_string(), 80)]);
    }

    #[test]
    fn rotating_file_stays_under_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.log");
        let mut f = RotatingFile::open(&path, 10_000, 2).unwrap();
        for i in 0..100_000 {
            f.write_all(format!("line {i} some text to fill the file\n").as_bytes()).unwrap();
        }
        let sizes: Vec<u64> = ["gw.log", "gw.log.1", "gw.log.2"]
            .iter()
            .map(|n| std::fs::metadata(dir.path().join(n)).unwrap().len())
            .collect();
        assert!(sizes.iter().all(|s| *s <= 10_000), "{sizes:?}");
        assert!(!dir.path().join("gw.log.3").exists());
        // The newest lines are in the current file.
        let now = std::fs::read_to_string(&path).unwrap();
        assert!(now.ends_with("line 99999 some text to fill the file\n"));
    }

    #[test]
    fn a_log_flood_stays_under_the_cap_with_a_summary() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Log {
            file: Some(dir.path().join("gw.log")),
            file_max_bytes: 64 * 1024,
            file_keep: 2,
            ..Log::default()
        };
        let sub = subscriber(&cfg, false).unwrap();
        let t = Instant::now();
        tracing::subscriber::with_default(sub, || {
            // A million errors from a tight loop (a packet flood's error path), for at least 1.2 s.
            let mut i = 0u64;
            while i < 1_000_000 || t.elapsed() < Duration::from_millis(1200) {
                tracing::warn!(i, "SIP socket receive error");
                i += 1;
            }
            tracing::info!("after the flood");
        });
        let mut total = 0;
        let mut text = String::new();
        for n in ["gw.log", "gw.log.1", "gw.log.2"] {
            if let Ok(s) = std::fs::read_to_string(dir.path().join(n)) {
                total += s.len();
                text += &s;
            }
        }
        let lines = text.lines().filter(|l| l.contains("SIP socket receive error")).count();
        assert!(total <= 3 * 64 * 1024, "{total}");
        let secs = t.elapsed().as_secs() + 1;
        assert!(lines as u64 <= 10 * secs, "{lines} lines in {secs} s");
        assert!(text.contains("suppressed") && text.contains("similar messages"), "{text}");
        assert!(text.contains("after the flood"));
    }

    #[test]
    fn utc_formats_known_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_796_400_000), "2026-12-04T16:00:00Z");
        assert_eq!(utc(1_709_164_800), "2024-02-29T00:00:00Z");
    }
}
