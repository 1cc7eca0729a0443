//! Arbitrary hook, digit, call-signal and time sequences against one FXS
//! port: it never panics and its tone/media/ringing outputs stay paired.
#![no_main]

use std::time::{Duration, Instant};

use gw_hal::{FxsEvent, RingCadence};
use gw_line::{Action, CallSignal, CallerIdStep, DialPlan, FxsConfig, FxsLine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let plan = DialPlan::new(&["911", "1nxxnxxxxxx", "8x.", "*6[79]#"]).unwrap();
    let mut cfg = FxsConfig::new(plan, RingCadence::new(&[2000, 4000]).unwrap());
    cfg.disconnect_open_ms = data.first().map(|&b| u32::from(b) * 4).filter(|&ms| ms > 0);
    cfg.caller_id = data.first().is_some_and(|&b| b & 1 != 0);
    let mut line = FxsLine::new(cfg);
    let mut now = Instant::now();
    let (mut media, mut ringing) = (false, false);
    for &b in data.iter().skip(1) {
        match b % 16 {
            0 => line.handle_hook(now, FxsEvent::OffHook),
            1 => line.handle_hook(now, FxsEvent::OnHook),
            2 => line.handle_hook(now, FxsEvent::HookFlash),
            3 => line.handle_call(now, CallSignal::Incoming { caller: None, name: None }),
            4 => line.handle_call(now, CallSignal::RemoteRinging),
            5 => line.handle_call(now, CallSignal::RemoteAnswered),
            6 => line.handle_call(now, CallSignal::RemoteReleased),
            7 => line.handle_call(now, CallSignal::Failed { busy: b & 0x80 != 0 }),
            8 => line.handle_call(now, CallSignal::Cancelled),
            9 => {
                now += Duration::from_millis(u64::from(b >> 4) * 2_500);
                line.handle_timeout(now);
            }
            10 => {
                let step = [CallerIdStep::ReversePolarity, CallerIdStep::RingOn, CallerIdStep::RingOff, CallerIdStep::Done];
                line.handle_caller_id(now, step[usize::from(b >> 4) % 4]);
            }
            _ => line.handle_digit(now, b"0123456789*#A1.9"[usize::from(b >> 4)]),
        }
        while let Some(a) = line.poll_action() {
            match a {
                Action::ConnectMedia => {
                    assert!(!media);
                    media = true
                }
                Action::DisconnectMedia => {
                    assert!(media);
                    media = false
                }
                Action::SetRinging(c) => {
                    assert_eq!(c.is_some(), !ringing);
                    ringing = c.is_some()
                }
                _ => {}
            }
        }
    }
});
