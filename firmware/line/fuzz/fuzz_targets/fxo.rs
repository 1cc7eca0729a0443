//! Arbitrary line events, detector results (caller ID with arbitrary
//! strings), digits, call-control requests and time steps against one FXO
//! line: it never panics, its seize/media/receiver outputs stay paired, and
//! once the exchange stops ringing and the far end leaves, the line is on
//! hook and idle.
#![no_main]

use std::time::{Duration, Instant};

use gw_hal::FxoEvent;
use gw_line::{
    AnswerSupervision, CallerIdFault, CallerIdInfo, DialMode, FxoAction, FxoCallerId, FxoConfig, FxoLine, FxoState,
    LineTone, TwoStage,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cfg_byte, rest)) = data.split_first() else { return };
    let mut cfg = FxoConfig::for_country(["US", "UK", "DE"][usize::from(cfg_byte % 3)]).unwrap();
    cfg.caller_id = [FxoCallerId::None, FxoCallerId::BeforeFirstRing, FxoCallerId::AfterFirstRing, FxoCallerId::Either]
        [usize::from(cfg_byte >> 2) % 4];
    cfg.answer = match (cfg_byte >> 4) % 3 {
        0 => AnswerSupervision::PolarityReversal,
        1 => AnswerSupervision::SpeechEnergy,
        _ => AnswerSupervision::AssumedAfter(Duration::from_secs(3)),
    };
    if cfg_byte & 0x40 != 0 {
        cfg.dial = DialMode::Pulse;
    }
    if cfg_byte & 0x80 != 0 {
        cfg.two_stage = Some(TwoStage::new("12"));
    }
    let mut line = FxoLine::new(cfg);
    let mut now = Instant::now();
    let (mut seized, mut media, mut rx) = (false, false, false);
    let mut i = 0;
    let mut drain = |line: &mut FxoLine| {
        while let Some(a) = line.poll_action() {
            match a {
                FxoAction::Seize(on) => {
                    assert_ne!(seized, on);
                    seized = on;
                }
                FxoAction::ConnectMedia => {
                    assert!(!media && seized);
                    media = true;
                }
                FxoAction::DisconnectMedia => {
                    assert!(media);
                    media = false;
                }
                FxoAction::StartCallerIdReceiver => {
                    assert!(!rx);
                    rx = true;
                }
                FxoAction::StopCallerIdReceiver => {
                    assert!(rx);
                    rx = false;
                }
                _ => {}
            }
        }
        assert_eq!(seized, line.is_seized());
    };
    while i < rest.len() {
        let b = rest[i];
        i += 1;
        // A string taken from the input: length byte, then bytes.
        let take = |i: &mut usize| {
            let n = rest.get(*i).map_or(0, |&n| usize::from(n % 40));
            *i += 1;
            let s = rest.get(*i..(*i + n).min(rest.len())).unwrap_or(&[]);
            *i += n;
            String::from_utf8_lossy(s).into_owned()
        };
        match b % 16 {
            0 => line.handle_line(now, FxoEvent::RingStart),
            1 => line.handle_line(now, FxoEvent::RingStop),
            2 => line.handle_line(now, FxoEvent::PolarityReversal),
            3 => line.handle_line(now, FxoEvent::LoopCurrentDrop),
            4 => line.handle_line(now, FxoEvent::LoopCurrentRestore),
            5 => {
                let tones = [
                    LineTone::DialTone,
                    LineTone::Ringback,
                    LineTone::Busy,
                    LineTone::Reorder,
                    LineTone::Congestion,
                    LineTone::Speech,
                    LineTone::ToneGone,
                ];
                line.handle_tone(now, tones[usize::from(b >> 4) % tones.len()]);
            }
            6 => {
                let number = take(&mut i);
                let name = take(&mut i);
                line.handle_caller_id(now, Ok(CallerIdInfo { number: Some(number), name: Some(name) }));
            }
            7 => line.handle_caller_id(now, Err(CallerIdFault::BadChecksum)),
            8 => line.handle_digit(now, b"0123456789*#A1 2"[usize::from(b >> 4)]),
            9 => line.handle_dialled(now),
            10 | 11 => {
                now += Duration::from_millis(u64::from(b >> 4) * if b % 16 == 10 { 50 } else { 5_000 });
                line.handle_timeout(now);
            }
            12 => {
                let number = take(&mut i);
                line.place(now, &number);
            }
            13 => line.answer(now),
            14 => line.release(now),
            _ => {}
        }
        drain(&mut line);
    }
    // The exchange stops ringing and the far end leaves by every method.
    for _ in 0..3 {
        line.handle_line(now, FxoEvent::RingStop);
        line.handle_line(now, FxoEvent::LoopCurrentDrop);
        line.handle_line(now, FxoEvent::PolarityReversal);
        line.handle_tone(now, LineTone::Busy);
        drain(&mut line);
        for _ in 0..400 {
            now += Duration::from_millis(500);
            line.handle_timeout(now);
            drain(&mut line);
        }
        line.handle_line(now, FxoEvent::LoopCurrentRestore);
        drain(&mut line);
    }
    assert_eq!(line.state(), FxoState::Idle);
    assert!(!seized && !media && !rx);
});
