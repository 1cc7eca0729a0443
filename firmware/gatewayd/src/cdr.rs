//! Call detail records: one per call, written when it ends.
//!
//! A record says when the call started, was answered and ended, who called
//! whom from which port or trunk, the rule that routed it and every
//! destination tried with its result, and how it ended: the Q.850 cause with
//! its text, the SIP status the cause maps to (RFC 3398), and which side
//! released it (the caller, the called side, or the gateway itself with its
//! reason). The installer reads them with `show cdr` and in the status's
//! `call_log`; `[log] cdr_file` also appends them to a file as JSON lines,
//! rotated by size like the log file.
//!
//! The gateway (sans-IO) makes a record from the switch's
//! [`gw_call::CallRecord`]; the driver keeps the last [`KEPT`] in the status
//! and writes the file, so no I/O happens in the call path.

use std::collections::VecDeque;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use gw_call::{CallRecord, CauseMap, Release, Side, Target};
use serde::Serialize;

/// Records kept in memory (the status, `show cdr`).
pub const KEPT: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cdr {
    /// Increasing from 1 since gatewayd started.
    pub id: u64,
    /// UTC, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub start: String,
    pub answer: Option<String>,
    pub end: String,
    /// Answer to end, seconds (0 for a call never answered).
    pub talk_s: f64,
    /// The caller's leg: "FXS 1", "FXO 2", "trunk carrier".
    pub from_leg: String,
    /// The group or trunk the call came from (the routing source).
    pub source: String,
    pub calling: Option<String>,
    pub called: String,
    /// The answering leg, if any: "FXS 2", "trunk carrier", ...
    pub to_leg: Option<String>,
    /// `route[N] "name"`, or none when no rule matched.
    pub rule: Option<String>,
    /// Every destination tried, in order, with its result.
    pub tried: Vec<String>,
    pub q850: u8,
    pub cause: String,
    /// The SIP status the final cause maps to (RFC 3398; 200 for a call that
    /// was answered and then cleared normally).
    pub sip_status: u16,
    /// "caller", "called side", or "gateway: <reason>".
    pub released_by: String,
}

/// Wall-clock time of a monotonic instant, from a pair taken at start.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    instant: Instant,
    wall: SystemTime,
}

impl Clock {
    pub fn now() -> Clock {
        Clock { instant: Instant::now(), wall: SystemTime::now() }
    }

    pub fn utc(&self, t: Instant) -> String {
        let wall = if t >= self.instant { self.wall + (t - self.instant) } else { self.wall - (self.instant - t) };
        let ms = wall.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let secs = ms / 1000;
        let rem = secs % 86_400;
        let (y, m, d) = crate::callerid::civil_from_days((secs / 86_400) as i64);
        format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem / 60 % 60, rem % 60, ms % 1000)
    }
}

/// What the gateway knows of a call's two legs beyond the switch.
pub struct Legs {
    pub from: String,
    pub to: Option<String>,
}

/// Builds the record of a call that ended at `now`.
#[allow(clippy::too_many_arguments)]
pub fn record(id: u64, clock: &Clock, now: Instant, r: &CallRecord, release: &Release, by: Side, legs: Legs) -> Cdr {
    let answered = r.answered.is_some();
    let cause = release.cause;
    let sip_status = if answered && cause.get() == 16 {
        200
    } else {
        CauseMap::default().status_for(cause).unwrap_or(500)
    };
    let released_by = match (release.local, by) {
        (Some(reason), _) => format!("gateway: {}", reason.text()),
        (None, Side::A) => "caller".to_string(),
        (None, Side::B) => "called side".to_string(),
    };
    Cdr {
        id,
        start: clock.utc(r.started),
        answer: r.answered.map(|t| clock.utc(t)),
        end: clock.utc(now),
        talk_s: r.answered.map_or(0.0, |t| now.saturating_duration_since(t).as_millis() as f64 / 1000.0),
        from_leg: legs.from,
        source: r.source.clone(),
        calling: r.calling.clone(),
        called: r.called.clone(),
        to_leg: legs.to,
        rule: r.rule.as_ref().map(|(k, name)| match name {
            Some(n) => format!("route[{k}] {n:?}"),
            None => format!("route[{k}]"),
        }),
        tried: r
            .attempts
            .iter()
            .map(|a| match &a.result {
                Some(res) => format!("{} -> {res}", target_name(&a.target)),
                None if answered => format!("{} (answered)", target_name(&a.target)),
                None => format!("{} (no answer)", target_name(&a.target)),
            })
            .collect(),
        q850: cause.get(),
        cause: release.to_string(),
        sip_status,
        released_by,
    }
}

pub fn target_name(t: &Target) -> String {
    match t {
        Target::Owner => "the number's owner".to_string(),
        other => other.to_string(),
    }
}

/// The last [`KEPT`] records, newest last.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CallLog {
    pub records: VecDeque<Cdr>,
}

impl CallLog {
    pub fn push(&mut self, cdr: Cdr) {
        if self.records.len() == KEPT {
            self.records.pop_front();
        }
        self.records.push_back(cdr);
    }

    /// `show cdr`: the newest `n` as an aligned table.
    pub fn table(&self, n: usize) -> String {
        if self.records.is_empty() {
            return "no calls yet\n".into();
        }
        let rows: Vec<[String; 8]> = self
            .records
            .iter()
            .rev()
            .take(n)
            .map(|c| {
                [
                    c.id.to_string(),
                    c.start.get(11..19).unwrap_or(&c.start).to_string(),
                    format!("{} {}", c.from_leg, c.calling.as_deref().unwrap_or("-")),
                    c.called.clone(),
                    c.to_leg.clone().unwrap_or_else(|| "-".into()),
                    format!("{:.0}", c.talk_s),
                    format!("{} / SIP {}", c.q850, c.sip_status),
                    c.released_by.clone(),
                ]
            })
            .collect();
        let head = ["id", "start", "from", "called", "answered by", "talk s", "cause", "released by"];
        let mut width = head.map(str::len);
        for r in &rows {
            for (w, cell) in width.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| -> String {
            let mut s = String::new();
            for (k, (c, w)) in cells.iter().zip(width).enumerate() {
                if k + 1 == cells.len() {
                    s.push_str(c);
                } else {
                    s.push_str(&format!("{c:<w$}  "));
                }
            }
            s.push('\n');
            s
        };
        let mut out = line(&head.map(String::from));
        for r in &rows {
            out.push_str(&line(r));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gw_call::{Attempt, Cause, LocalReason, Location};
    use std::time::Duration;

    fn rec(answered: bool) -> (Clock, Instant, CallRecord) {
        let clock = Clock { instant: Instant::now(), wall: UNIX_EPOCH + Duration::from_millis(1_764_806_400_250) };
        let t0 = clock.instant;
        let r = CallRecord {
            source: "phones".into(),
            called: "5551234".into(),
            calling: Some("1001".into()),
            rule: Some((1, Some("outside".into()))),
            attempts: vec![
                Attempt {
                    dest_index: 0,
                    target: Target::Trunk("a".into()),
                    at: t0,
                    result: Some(Release { cause: Cause::new(34).unwrap(), location: Location::PublicRemote, local: None }),
                },
                Attempt { dest_index: 1, target: Target::Trunk("b".into()), at: t0, result: None },
            ],
            started: t0,
            answered: answered.then_some(t0 + Duration::from_secs(2)),
        };
        (clock, t0, r)
    }

    #[test]
    fn an_answered_call_cleared_normally() {
        let (clock, t0, r) = rec(true);
        let release = Release { cause: Cause::new(16).unwrap(), location: Location::PublicRemote, local: None };
        let legs = Legs { from: "FXS 1".into(), to: Some("trunk b".into()) };
        let c = record(7, &clock, t0 + Duration::from_millis(62_500), &r, &release, Side::B, legs);
        assert_eq!(c.start, "2025-12-04T00:00:00.250Z");
        assert_eq!(c.answer.as_deref(), Some("2025-12-04T00:00:02.250Z"));
        assert_eq!(c.end, "2025-12-04T00:01:02.750Z");
        assert_eq!(c.talk_s, 60.5);
        assert_eq!(c.tried, vec![format!("trunk \"a\" -> {}", r.attempts[0].result.unwrap()), "trunk \"b\" (answered)".to_string()]);
        assert_eq!((c.q850, c.sip_status, c.released_by.as_str()), (16, 200, "called side"));
        assert_eq!(c.rule.as_deref(), Some("route[1] \"outside\""));
        let mut log = CallLog::default();
        log.push(c);
        let t = log.table(10);
        assert!(t.starts_with("id  start"), "{t}");
        assert!(t.contains("FXS 1 1001") && t.contains("5551234") && t.contains("16 / SIP 200") && t.contains("called side"), "{t}");
    }

    #[test]
    fn a_refused_call_names_the_gateway_and_maps_the_cause_to_sip() {
        let (clock, t0, mut r) = rec(false);
        r.attempts.clear();
        r.rule = None;
        let release = Release::local(LocalReason::NoRoute);
        let c = record(1, &clock, t0, &r, &release, Side::A, Legs { from: "trunk default".into(), to: None });
        assert_eq!(c.sip_status, 404, "cause 3 -> 404 (RFC 3398)");
        assert_eq!(c.released_by, "gateway: no route");
        assert_eq!((c.answer, c.talk_s, c.to_leg), (None, 0.0, None));
    }

    #[test]
    fn the_log_keeps_the_newest() {
        let (clock, t0, r) = rec(true);
        let release = Release { cause: Cause::new(16).unwrap(), location: Location::PublicRemote, local: None };
        let mut log = CallLog::default();
        for id in 1..=(KEPT as u64 + 5) {
            log.push(record(id, &clock, t0, &r, &release, Side::A, Legs { from: "FXS 1".into(), to: None }));
        }
        assert_eq!(log.records.len(), KEPT);
        assert_eq!(log.records.front().unwrap().id, 6);
        assert!(log.table(1).lines().nth(1).unwrap().starts_with(&format!("{}", KEPT + 5)));
    }
}
