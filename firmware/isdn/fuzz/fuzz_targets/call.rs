//! Q.931 call control (user or network side, BRI or PRI) fed arbitrary
//! messages, requests, link changes and time: never panics, never holds a
//! B channel twice or outside the span.
#![no_main]

use std::time::{Duration, Instant};

use gw_isdn::call::{CallControl, Config, Interface, Link, SetupInfo, Side, EUROISDN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let side = if sel & 1 == 0 { Side::User } else { Side::Network };
    let interface = if sel & 2 == 0 { Interface::Bri } else { Interface::Pri };
    let mut cfg = Config::new(side, interface, &EUROISDN);
    cfg.ptmp = sel & 4 != 0 && side == Side::Network && interface == Interface::Bri;
    let mut cc = CallControl::new(cfg);
    let mut now = Instant::now();
    cc.dl_established(now, Link::Tei(0));
    // Records: a length octet, then that many octets (a message from TEI
    // = the first octet & 3 + 64, or 0); lengths 0xF0.. are requests.
    let mut i = 0;
    while i < rest.len() {
        let len = rest[i] as usize;
        i += 1;
        let arg = rest.get(i).copied().unwrap_or(0);
        let ids: Vec<_> = cc.calls().map(|c| c.0).collect();
        let id = ids.get(usize::from(arg) % ids.len().max(1)).copied();
        match len {
            0xFF => {
                now += Duration::from_millis(u64::from(arg) * 200);
                cc.handle_timeout(now);
                i += 1;
            }
            0xFE => {
                let _ = cc.setup(now, SetupInfo { channel: Some(arg % 33), exclusive: arg & 0x80 != 0, ..Default::default() });
                i += 1;
            }
            0xF0..=0xFD => {
                if let Some(id) = id {
                    let _ = match len {
                        0xF0 => cc.setup_ack(now, id),
                        0xF1 => cc.proceeding(now, id),
                        0xF2 => cc.alerting(now, id),
                        0xF3 => cc.connect(now, id),
                        0xF4 => cc.disconnect(now, id, arg & 0x7F),
                        0xF5 => cc.release(now, id, arg & 0x7F),
                        0xF6 => cc.information(now, id, &[b'0' + arg % 10], arg & 1 == 0),
                        0xF7 => cc.status_enquiry(now, id),
                        0xF8 => cc.progress(now, id, arg & 0x7F),
                        _ => cc.restart(now, (arg != 0).then_some(arg % 33)),
                    };
                }
                match len {
                    0xFA => cc.dl_released(now, Link::Tei(0)),
                    0xFB => cc.dl_established(now, Link::Tei(0)),
                    _ => {}
                }
                i += 1;
            }
            _ => {
                let end = (i + len).min(rest.len());
                let m = &rest[i..end];
                let link = match m.first() {
                    Some(&o) if o & 4 != 0 => Link::Tei(64 + (o & 3)),
                    _ => Link::Tei(0),
                };
                cc.handle_message(now, link, m);
                i = end;
            }
        }
        while cc.poll_transmit().is_some() {}
        while cc.poll_event().is_some() {}
        while cc.poll_timer().is_some() {}
        cc.check_invariants().unwrap();
    }
});
