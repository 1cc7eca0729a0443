//! FXO behaviour every [`FxoPort`] backend must show, written once and run
//! against each backend's test bench: the sim card's FXO ports (`sim.rs`
//! tests) and the Si3050 driver on its register model
//! (`chips/si3050/tests_model.rs`).
//!
//! A bench plays the exchange and the clock; it hides how a backend gets
//! there (linesim messages and wall-clock waits for the sim card, register
//! emulation and virtual time for the chip model).

use crate::{FxoEvent, FxoLineStatus, FxoPort, Polarity, PortError};

pub trait FxoBench {
    type Port: FxoPort;

    fn port(&mut self) -> &mut Self::Port;
    /// The exchange applies (true) or removes the ringing voltage.
    fn set_ringing(&mut self, on: bool);
    /// The exchange feeds the line with this polarity.
    fn set_polarity(&mut self, polarity: Polarity);
    /// The exchange feeds battery (true) or opens the loop (CPC interval).
    fn set_battery(&mut self, on: bool);
    /// The next event, after whatever debounce the backend needs; `None` if
    /// none comes.
    fn next_event(&mut self) -> Option<FxoEvent>;
    /// Lets `ms` pass in 10 ms ticks; returns the changes of the loop as the
    /// exchange sees it, as (ms since the call, closed). A change made before
    /// the call (a seize, the start of a flash) shows at 0.
    fn advance(&mut self, ms: u32) -> Vec<(u32, bool)>;
}

/// Runs every check in order, starting from an idle, unseized line.
pub fn run_all(b: &mut impl FxoBench) {
    idle_line(b);
    ring_bursts(b);
    polarity_reversal_on_hook(b);
    seize_supervision_and_release(b);
    flash_timing(b);
    refused_flashes(b);
}

fn idle_plausible(st: FxoLineStatus) {
    assert!(!st.seized && !st.ringing, "{st:?}");
    if let Some(v) = st.voltage {
        assert!((20..=80).contains(&v.abs()), "on-hook voltage {v} V");
    }
    assert!(st.loop_current_ma.is_none_or(|ma| ma == 0), "no loop current on hook: {st:?}");
}

fn seized_plausible(st: FxoLineStatus) {
    assert!(st.seized && !st.ringing, "{st:?}");
    if let Some(v) = st.voltage {
        assert!((1..20).contains(&v.abs()), "off-hook voltage {v} V");
    }
    if let Some(ma) = st.loop_current_ma {
        assert!((10..=120).contains(&ma), "loop current {ma} mA");
    }
}

fn idle_line(b: &mut impl FxoBench) {
    idle_plausible(b.port().line_status());
    assert_eq!(b.port().line_status().polarity, Polarity::Normal);
    assert_eq!(b.next_event(), None, "an idle line is quiet");
    assert!(b.advance(200).is_empty(), "nobody touched the loop");
}

fn ring_bursts(b: &mut impl FxoBench) {
    for _ in 0..2 {
        b.set_ringing(true);
        assert_eq!(b.next_event(), Some(FxoEvent::RingStart));
        assert!(b.port().line_status().ringing);
        assert!(!b.port().line_status().seized);
        b.set_ringing(false);
        assert_eq!(b.next_event(), Some(FxoEvent::RingStop));
        assert!(!b.port().line_status().ringing);
    }
    assert_eq!(b.next_event(), None, "one event per burst edge; ring swings are no reversals");
    idle_plausible(b.port().line_status());
}

fn polarity_reversal_on_hook(b: &mut impl FxoBench) {
    // The exchange's announcement of caller ID, and back.
    b.set_polarity(Polarity::Reversed);
    assert_eq!(b.next_event(), Some(FxoEvent::PolarityReversal));
    assert_eq!(b.port().line_status().polarity, Polarity::Reversed);
    idle_plausible(b.port().line_status());
    b.set_polarity(Polarity::Normal);
    assert_eq!(b.next_event(), Some(FxoEvent::PolarityReversal));
    assert_eq!(b.port().line_status().polarity, Polarity::Normal);
    assert_eq!(b.next_event(), None);
}

fn seize_supervision_and_release(b: &mut impl FxoBench) {
    assert_eq!(b.port().seize(true), Ok(()));
    assert_eq!(b.advance(300), [(0, true)], "the loop closes at once and stays closed");
    seized_plausible(b.port().line_status());
    assert_eq!(b.next_event(), None, "seizing is no line event");

    // Answer supervision: the far end answers, the exchange reverses.
    b.set_polarity(Polarity::Reversed);
    assert_eq!(b.next_event(), Some(FxoEvent::PolarityReversal));
    assert_eq!(b.port().line_status().polarity, Polarity::Reversed);

    // Open-loop disconnect (CPC) and the battery coming back.
    b.set_battery(false);
    assert_eq!(b.next_event(), Some(FxoEvent::LoopCurrentDrop));
    let st = b.port().line_status();
    assert!(st.seized, "a drop does not release the line");
    assert!(st.loop_current_ma.is_none_or(|ma| ma == 0), "{st:?}");
    b.set_battery(true);
    assert_eq!(b.next_event(), Some(FxoEvent::LoopCurrentRestore));
    assert_eq!(b.next_event(), None, "the 0 V interval is no polarity change");
    b.advance(200);
    seized_plausible(b.port().line_status());
    assert_eq!(b.port().line_status().polarity, Polarity::Reversed);

    assert_eq!(b.port().seize(false), Ok(()));
    assert_eq!(b.advance(200), [(0, false)]);
    b.set_polarity(Polarity::Normal);
    assert_eq!(b.next_event(), Some(FxoEvent::PolarityReversal));
    idle_plausible(b.port().line_status());
    assert_eq!(b.next_event(), None, "releasing is no line event");
}

fn flash_timing(b: &mut impl FxoBench) {
    assert_eq!(b.port().seize(true), Ok(()));
    assert_eq!(b.advance(300), [(0, true)]);
    for ms in [100u16, 60, 250] {
        assert_eq!(b.port().flash(ms), Ok(()));
        let seen = b.advance(u32::from(ms) + 200);
        assert_eq!(seen.len(), 2, "one break, one make: {seen:?}");
        assert_eq!(seen[0], (0, false), "the break starts at once");
        assert!(seen[1].1);
        let open = seen[1].0;
        assert!(open >= u32::from(ms) && open <= u32::from(ms) + 10, "{ms} ms flash held the loop open {open} ms");
        assert!(b.port().line_status().seized, "a flash keeps the line seized");
        assert_eq!(b.next_event(), None, "our own flash is no loop-current drop");
    }
    seized_plausible(b.port().line_status());
    assert_eq!(b.port().seize(false), Ok(()));
    assert_eq!(b.advance(100), [(0, false)]);
}

fn refused_flashes(b: &mut impl FxoBench) {
    assert_eq!(b.port().flash(100), Err(PortError::InvalidState), "not seized");
    assert!(b.advance(100).is_empty(), "a refused flash changes nothing");
    assert_eq!(b.port().seize(true), Ok(()));
    assert_eq!(b.advance(200), [(0, true)]);
    assert_eq!(b.port().flash(0), Err(PortError::InvalidState), "0 ms");
    assert_eq!(b.port().flash(200), Ok(()));
    assert_eq!(b.port().flash(200), Err(PortError::InvalidState), "a break runs");
    let seen = b.advance(400);
    assert_eq!(seen.len(), 2, "{seen:?}");
    // Releasing ends a break in progress.
    assert_eq!(b.port().flash(300), Ok(()));
    assert_eq!(b.port().seize(false), Ok(()));
    assert_eq!(b.advance(500), [(0, false)], "no make after the release");
    assert!(!b.port().line_status().seized);
    idle_plausible(b.port().line_status());
    assert_eq!(b.next_event(), None);
}
