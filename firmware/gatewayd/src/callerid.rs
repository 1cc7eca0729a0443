//! Caller ID for an incoming call: from the SIP caller to the sender the rt
//! thread runs.
//!
//! The control plane builds the whole [`CallerIdSender`] (message, procedure,
//! timing) here and hands it to the rt thread by value; the rt thread only
//! plays it and reports its line steps, which drive the FXS port's ringing
//! and polarity (`gw_line::FxsLine::handle_caller_id`).
//!
//! What goes on the line:
//! - the number: the SIP caller's user part when it is a telephone number
//!   (digits, an optional leading `+` dropped); "anonymous" and the like give
//!   the "private" reason, anything else "unavailable";
//! - the name (MDMF only): the From display name, printable ASCII (others
//!   become `?`), cut to 15 characters for Bell 202 (GR-30) and 50 for ETSI;
//!   "Anonymous" gives "private", no display name "unavailable";
//! - the date and time: UTC plus the configured offset.

use gw_dsp::callerid::{self, AbsenceReason, CallerId, FskStandard, MAX_MESSAGE, MAX_NAME};
use gw_dsp::callerid_line::{CallerIdSender, Procedure, Timing};
use gw_hal::RingCadence;

use crate::config::{CallerIdConfig, CallerIdFormat, CallerIdMode};

/// Longest name GR-30 allows on the line.
pub const GR30_MAX_NAME: usize = 15;
/// Longest number GR-30 allows on the line.
pub const GR30_MAX_NUMBER: usize = 15;

/// Builds the delivery for one incoming call, or `None` when caller ID is
/// off for `country`. `unix_secs` is the wall clock.
pub fn sender(
    cfg: &CallerIdConfig,
    country: &str,
    cadence: &RingCadence,
    number: Option<&str>,
    name: Option<&str>,
    unix_secs: u64,
) -> Result<Option<CallerIdSender>, String> {
    let mode = cfg.mode.resolve(country);
    let (procedure, standard) = match mode {
        CallerIdMode::Off | CallerIdMode::Auto => return Ok(None),
        CallerIdMode::Bell202 => (Procedure::Gr30, FskStandard::Bell202),
        CallerIdMode::EtsiFsk => (Procedure::EtsiAfterFirstRing, FskStandard::V23),
        CallerIdMode::EtsiDtas => (Procedure::EtsiDtAs, FskStandard::V23),
        CallerIdMode::EtsiRpas => (Procedure::EtsiRpAs, FskStandard::V23),
        CallerIdMode::Dtmf => {
            let cid = message_fields(number, None, unix_secs, cfg.utc_offset_minutes, usize::MAX, MAX_NAME)?;
            let mut digits = [0u8; 24];
            let n = callerid::dtmf_clip(&cid, &mut digits).map_err(|e| format!("DTMF CLIP digits: {e:?}"))?;
            return CallerIdSender::dtmf_clip(&digits[..n], true)
                .map(Some)
                .map_err(|e| format!("DTMF CLIP sender: {e:?}"));
        }
    };
    let (max_number, max_name) = match standard {
        FskStandard::Bell202 => (GR30_MAX_NUMBER, GR30_MAX_NAME),
        FskStandard::V23 => (usize::MAX, MAX_NAME),
    };
    let cid = message_fields(number, name, unix_secs, cfg.utc_offset_minutes, max_number, max_name)?;
    let mut msg = [0u8; MAX_MESSAGE];
    let n = match cfg.format {
        CallerIdFormat::Mdmf => callerid::encode_mdmf(&cid, &mut msg),
        CallerIdFormat::Sdmf => callerid::encode_sdmf(&cid, &mut msg),
    }
    .map_err(|e| format!("caller ID message: {e:?}"))?;
    let mut timing = Timing::default_for(procedure);
    if matches!(procedure, Procedure::Gr30 | Procedure::EtsiAfterFirstRing) {
        timing.first_ring_ms = first_ring_ms(cadence);
    }
    CallerIdSender::with_timing(procedure, standard, &msg[..n], cfg.level_dbm0, timing)
        .map(Some)
        .map_err(|e| format!("caller ID sender: {e:?}"))
}

/// The first ring of a cadence: its rings up to the long pause (2 s for the
/// US 2/4 s cadence; 400-200-400 ms for the UK double ring), within the
/// 200..3000 ms a first ring may last.
pub fn first_ring_ms(cadence: &RingCadence) -> u32 {
    let p = cadence.periods();
    let group: u32 = p[..p.len() - 1].iter().map(|&v| u32::from(v)).sum();
    group.clamp(200, 3000)
}

fn message_fields(
    number: Option<&str>,
    name: Option<&str>,
    unix_secs: u64,
    utc_offset_minutes: i32,
    max_number: usize,
    max_name: usize,
) -> Result<CallerId, String> {
    let mut cid = CallerId::new();
    let local = unix_secs as i64 + i64::from(utc_offset_minutes) * 60;
    let (month, day, hour, minute) = civil(local);
    cid.set_datetime(month, day, hour, minute).map_err(|e| format!("date/time: {e:?}"))?;

    match number.map(str::trim) {
        Some(n) if is_private(n) => cid.number_absent = Some(AbsenceReason::Private),
        Some(n) => {
            let digits = n.strip_prefix('+').unwrap_or(n);
            let ok = !digits.is_empty()
                && digits.len() <= max_number.min(callerid::MAX_NUMBER)
                && digits.bytes().all(|b| b.is_ascii_digit());
            if ok {
                cid.set_number(digits.as_bytes()).map_err(|e| format!("number: {e:?}"))?;
            } else {
                cid.number_absent = Some(AbsenceReason::Unavailable);
            }
        }
        None => cid.number_absent = Some(AbsenceReason::Unavailable),
    }

    match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) if is_private(n) => cid.name_absent = Some(AbsenceReason::Private),
        Some(n) => {
            let ascii: Vec<u8> = n
                .chars()
                .take(max_name)
                .map(|c| if (' '..='~').contains(&c) { c as u8 } else { b'?' })
                .collect();
            cid.set_name(&ascii).map_err(|e| format!("name: {e:?}"))?;
        }
        None => cid.name_absent = Some(AbsenceReason::Unavailable),
    }
    Ok(cid)
}

fn is_private(s: &str) -> bool {
    ["anonymous", "private", "restricted", "unknown"].iter().any(|w| s.eq_ignore_ascii_case(w))
}

/// Month, day, hour and minute of a time in seconds since 1970-01-01 (the
/// proleptic Gregorian calendar).
fn civil(secs: i64) -> (u8, u8, u8, u8) {
    let rem = secs.rem_euclid(86_400);
    let (hour, minute) = ((rem / 3600) as u8, ((rem % 3600) / 60) as u8);
    let (_, month, day) = civil_from_days(secs.div_euclid(86_400));
    (month, day, hour, minute)
}

/// Year, month and day of a day count since 1970-01-01 (H. Hinnant's
/// civil-from-days algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, u8, u8) {
    // Shift the epoch to 0000-03-01 so leap days end each 400-year era.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gw_dsp::callerid_line::{CallerIdReceiver, LineStep, ReceiverEvent};

    fn cfg(mode: CallerIdMode) -> CallerIdConfig {
        CallerIdConfig { mode, ..CallerIdConfig::default() }
    }

    fn us() -> RingCadence {
        RingCadence::new(&[2000, 4000]).unwrap()
    }

    /// 2026-12-03 08:45:00 UTC.
    const NOW: u64 = 1_796_287_500;

    /// Runs a sender to its end: the audio and the steps with their sample times.
    fn run(mut tx: CallerIdSender) -> (Vec<i16>, Vec<(LineStep, u64)>) {
        let (mut audio, mut steps) = (Vec::new(), Vec::new());
        let mut frame = [0i16; 80];
        for _ in 0..2000 {
            tx.fill(&mut frame);
            audio.extend_from_slice(&frame);
            while let Some(s) = tx.poll_event() {
                steps.push((s, tx.now()));
            }
            if tx.is_done() {
                break;
            }
        }
        (audio, steps)
    }

    fn received(standard: FskStandard, audio: &[i16]) -> Vec<ReceiverEvent> {
        let mut rx = CallerIdReceiver::new(standard);
        let mut out = Vec::new();
        for f in audio.chunks(80) {
            rx.process(f);
            while let Some(e) = rx.poll_event() {
                out.push(e);
            }
        }
        out
    }

    fn decoded(standard: FskStandard, audio: &[i16]) -> CallerId {
        received(standard, audio)
            .into_iter()
            .find_map(|e| match e {
                ReceiverEvent::CallerId(c) => Some(c),
                _ => None,
            })
            .expect("a caller ID message in the audio")
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1, 1, 0, 0));
        assert_eq!(civil(NOW as i64), (12, 3, 8, 45));
        assert_eq!(civil(951_782_400), (2, 29, 0, 0), "2000-02-29");
        assert_eq!(civil(-60), (12, 31, 23, 59));
    }

    #[test]
    fn bell202_between_first_and_second_ring_carries_number_name_and_time() {
        let tx = sender(&cfg(CallerIdMode::Auto), "US", &us(), Some("+15551234567"), Some("Alice Example"), NOW)
            .unwrap()
            .expect("US has caller ID");
        let (audio, steps) = run(tx);
        let kinds: Vec<LineStep> = steps.iter().map(|s| s.0).collect();
        assert_eq!(kinds, [LineStep::RingOn, LineStep::RingOff, LineStep::Done]);
        let ring = (steps[1].1 - steps[0].1) as i64;
        assert!((ring - 2000 * 8).abs() <= 80, "first ring as long as the cadence's: {ring} samples");
        let c = decoded(FskStandard::Bell202, &audio);
        assert_eq!(c.number(), b"15551234567");
        assert_eq!(c.name(), b"Alice Example");
        assert_eq!(c.datetime, Some(*b"12030845"));
        // The data fits in the cadence's 4 s pause with GR-30's 200 ms to spare.
        assert!(steps[2].1 < 6000 * 8, "done at {} ms", steps[2].1 / 8);
    }

    #[test]
    fn etsi_dtas_reverses_the_line_and_sends_v23_before_ringing() {
        let tx = sender(&cfg(CallerIdMode::Auto), "UK", &RingCadence::new(&[400, 200, 400, 2000]).unwrap(), Some("01632960123"), None, NOW)
            .unwrap()
            .unwrap();
        let (audio, steps) = run(tx);
        let kinds: Vec<LineStep> = steps.iter().map(|s| s.0).collect();
        assert_eq!(kinds, [LineStep::ReversePolarity, LineStep::Done]);
        let events = received(FskStandard::V23, &audio);
        assert!(
            events.iter().any(|e| matches!(e, ReceiverEvent::AlertingSignal { duration_ms } if (80..=120).contains(duration_ms))),
            "DT-AS before the data: {events:?}"
        );
        let c = decoded(FskStandard::V23, &audio);
        assert_eq!(c.number(), b"01632960123");
        assert_eq!(c.name_absent, Some(AbsenceReason::Unavailable));
    }

    #[test]
    fn anonymous_caller_is_private_and_odd_names_are_cleaned() {
        let tx = sender(&cfg(CallerIdMode::Bell202), "DE", &us(), Some("anonymous"), Some("Zoë Ångström-Weiß the Third"), NOW)
            .unwrap()
            .unwrap();
        let c = decoded(FskStandard::Bell202, &run(tx).0);
        assert_eq!(c.number_absent, Some(AbsenceReason::Private));
        assert_eq!(c.name(), b"Zo? ?ngstr?m-We", "cut to GR-30's 15 characters");
        let tx = sender(&cfg(CallerIdMode::EtsiFsk), "DE", &us(), Some("alice"), Some("Anonymous"), NOW).unwrap().unwrap();
        let c = decoded(FskStandard::V23, &run(tx).0);
        assert_eq!(c.number_absent, Some(AbsenceReason::Unavailable), "a SIP user name is not a number");
        assert_eq!(c.name_absent, Some(AbsenceReason::Private));
    }

    #[test]
    fn sdmf_has_no_name() {
        let c = CallerIdConfig { mode: CallerIdMode::Bell202, format: CallerIdFormat::Sdmf, ..CallerIdConfig::default() };
        let tx = sender(&c, "US", &us(), Some("5551234"), Some("Alice"), NOW + 3600).unwrap().unwrap();
        let c = decoded(FskStandard::Bell202, &run(tx).0);
        assert_eq!(c.number(), b"5551234");
        assert_eq!(c.name(), b"");
        assert_eq!(c.datetime, Some(*b"12030945"));
    }

    #[test]
    fn dtmf_clip_digits() {
        let tx = sender(&cfg(CallerIdMode::Auto), "NL", &us(), Some("0201234567"), None, NOW).unwrap().unwrap();
        let (audio, steps) = run(tx);
        assert_eq!(steps.first().map(|s| s.0), Some(LineStep::ReversePolarity));
        let events = received(FskStandard::V23, &audio);
        assert!(
            events.iter().any(|e| matches!(e, ReceiverEvent::DtmfClip(c) if c.number() == b"0201234567")),
            "{events:?}"
        );
    }

    #[test]
    fn off_and_unknown_countries_send_nothing() {
        assert!(sender(&cfg(CallerIdMode::Off), "US", &us(), Some("1"), None, NOW).unwrap().is_none());
        assert!(sender(&cfg(CallerIdMode::Auto), "JP", &us(), Some("1"), None, NOW).unwrap().is_none());
    }

    #[test]
    fn first_ring_of_cadences() {
        assert_eq!(first_ring_ms(&us()), 2000);
        assert_eq!(first_ring_ms(&RingCadence::new(&[400, 200, 400, 2000]).unwrap()), 1000);
        assert_eq!(first_ring_ms(&RingCadence::new(&[1000, 4000]).unwrap()), 1000);
        assert_eq!(first_ring_ms(&RingCadence::new(&[100, 100]).unwrap()), 200);
    }
}
