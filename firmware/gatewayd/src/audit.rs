//! The audit log: who changed what, from where, when.
//!
//! One JSON object per line (`audit.jsonl` next to the configuration):
//! `{"time":"2026-12-04T19:00:00Z","unix":1796…,"user":"admin","from":"192.0.2.1","action":"config.commit","detail":"…"}`.
//! Each entry is appended and synced before [`AuditLog::record`] returns, so
//! it survives a restart or a power cut right after the change. The file is
//! bounded: past `max_bytes` it is renamed to `audit.jsonl.1` (the one
//! before that dropped) and a new one started; [`AuditLog::recent`] reads
//! both. Without a configuration file the log is kept in memory (bounded).
//!
//! The time is an input (`SystemTime`), so tests choose it.

use std::collections::VecDeque;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tracing::warn;

pub const FILE: &str = "audit.jsonl";
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024;
const MEMORY_ENTRIES: usize = 1000;
/// Details longer than this are cut (a whole configuration is not an audit entry).
const MAX_DETAIL: usize = 2000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub time: String,
    pub unix: u64,
    pub user: String,
    pub from: String,
    pub action: String,
    pub detail: String,
}

pub struct AuditLog {
    path: Option<PathBuf>,
    max_bytes: u64,
    memory: VecDeque<Entry>,
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let s = unix % 86_400;
    let (y, m, d) = crate::callerid::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_DETAIL {
        return s.to_string();
    }
    let mut end = MAX_DETAIL;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl AuditLog {
    /// The log at `path` (appended to), or in memory for `None`.
    pub fn open(path: Option<PathBuf>, max_bytes: u64) -> AuditLog {
        AuditLog { path, max_bytes: max_bytes.max(1024), memory: VecDeque::new() }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Appends one entry; an entry that cannot be written is logged as an
    /// error and kept in memory (the change it records has happened).
    pub fn record(&mut self, when: SystemTime, user: &str, from: IpAddr, action: &str, detail: &str) -> Entry {
        let unix = when.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let entry = Entry {
            time: rfc3339(unix),
            unix,
            user: user.to_string(),
            from: from.to_string(),
            action: action.to_string(),
            detail: cut(detail),
        };
        let written = match &self.path {
            Some(path) => match self.append(path, &entry) {
                Ok(()) => true,
                Err(e) => {
                    warn!(path = %path.display(), %e, "audit log not written");
                    false
                }
            },
            None => false,
        };
        if !written {
            if self.memory.len() >= MEMORY_ENTRIES {
                self.memory.pop_front();
            }
            self.memory.push_back(entry.clone());
        }
        tracing::info!(user, %from, action, detail = %entry.detail, "audit");
        entry
    }

    fn append(&self, path: &Path, entry: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
        line.push('\n');
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if size > 0 && size + line.len() as u64 > self.max_bytes {
            std::fs::rename(path, rotated(path))?;
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        f.write_all(line.as_bytes())?;
        f.sync_data()
    }

    /// The last `n` entries, newest first (both files and memory).
    pub fn recent(&self, n: usize) -> Vec<Entry> {
        let mut all: Vec<Entry> = Vec::new();
        if let Some(path) = &self.path {
            for p in [rotated(path), path.clone()] {
                let Ok(text) = std::fs::read_to_string(&p) else { continue };
                // A line cut by a crash mid-write is skipped, not fatal.
                all.extend(text.lines().filter_map(|l| serde_json::from_str::<Entry>(l).ok()));
            }
        }
        all.extend(self.memory.iter().cloned());
        all.sort_by_key(|e| e.unix);
        all.into_iter().rev().take(n).collect()
    }
}

fn rotated(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const FROM: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 9));

    #[test]
    fn entries_survive_a_reopen_and_the_file_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_400_000);
        let mut log = AuditLog::open(Some(path.clone()), 4096);
        log.record(t0, "admin", FROM, "config.commit", "sip.register_expires: 300 -> 120");
        drop(log);
        let mut log = AuditLog::open(Some(path.clone()), 4096);
        let r = log.recent(10);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].user.as_str(), r[0].from.as_str(), r[0].action.as_str()), ("admin", "192.0.2.9", "config.commit"));
        assert_eq!(r[0].time, "2026-12-04T16:00:00Z");
        for i in 0..200 {
            log.record(t0 + Duration::from_secs(i + 1), "admin", FROM, "account.add", &format!("viewer{i}"));
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&path) <= 4096 && size(&rotated(&path)) <= 4096);
        let r = log.recent(5);
        assert_eq!(r[0].detail, "viewer199", "newest first");
        assert_eq!(r.len(), 5);
        // A torn last line (crash while writing) is skipped.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"time\":\"20").unwrap();
        assert_eq!(log.recent(1)[0].detail, "viewer199");
    }

    #[test]
    fn without_a_file_it_is_kept_in_memory_and_long_details_are_cut() {
        let mut log = AuditLog::open(None, DEFAULT_MAX_BYTES);
        let long = "é".repeat(5000);
        log.record(SystemTime::UNIX_EPOCH, "admin", FROM, "config.commit", &long);
        let e = &log.recent(1)[0];
        assert!(e.detail.len() <= MAX_DETAIL + 3 && e.detail.ends_with('…'));
        for _ in 0..(MEMORY_ENTRIES + 5) {
            log.record(SystemTime::UNIX_EPOCH, "admin", FROM, "x", "");
        }
        assert_eq!(log.recent(usize::MAX).len(), MEMORY_ENTRIES);
    }
}
