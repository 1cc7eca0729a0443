//! FXS behaviour every [`FxsPort`] backend must show, written once and run
//! against each backend's test bench: the sim card (`sim.rs` tests) and the
//! Si3215 driver on its register model (`chips/si3215/tests.rs`).
//!
//! A bench plays the phone and the clock; it hides how a backend gets there
//! (linesim messages and wall-clock waits for the sim card, register
//! emulation and virtual time for the chip model).

use crate::{FxsEvent, FxsPort, HookState, PortError, RingCadence};

pub trait FxsBench {
    type Port: FxsPort;

    fn port(&mut self) -> &mut Self::Port;
    /// The phone closes (true) or opens the loop.
    fn set_off_hook(&mut self, off: bool);
    /// The phone flashes the hook (a short, valid recall).
    fn flash(&mut self);
    /// The next event, after whatever debounce the backend needs; `None` if
    /// none comes.
    fn next_event(&mut self) -> Option<FxsEvent>;
    /// Starts ringing and returns whether the ring voltage went on.
    fn start_ringing(&mut self, cadence: RingCadence) -> bool;
    /// Lets `ms` pass in 10 ms ticks; returns the ring voltage changes seen,
    /// as (ms since the call, on).
    fn advance(&mut self, ms: u32) -> Vec<(u32, bool)>;
    /// After the phone went off hook while ringing: whether the ring voltage
    /// dropped before the next tick.
    fn ring_dropped(&mut self) -> bool;
}

/// Runs every check in order, starting from an idle line.
pub fn run_all(b: &mut impl FxsBench) {
    hook_events(b);
    cadence_is_exact(b);
    ring_trip(b);
}

fn hook_events(b: &mut impl FxsBench) {
    assert_eq!(b.port().hook(), HookState::OnHook);
    b.set_off_hook(true);
    assert_eq!(b.next_event(), Some(FxsEvent::OffHook));
    assert_eq!(b.port().hook(), HookState::OffHook);
    // No ringing into an off-hook phone; stopping is always fine.
    assert_eq!(b.port().set_ringing(RingCadence::new(&[2000, 4000])), Err(PortError::InvalidState));
    assert_eq!(b.port().set_ringing(None), Ok(()));
    b.flash();
    assert_eq!(b.next_event(), Some(FxsEvent::HookFlash));
    assert_eq!(b.port().hook(), HookState::OffHook, "a flash is not a hang-up");
    b.set_off_hook(false);
    assert_eq!(b.next_event(), Some(FxsEvent::OnHook));
    assert_eq!(b.port().hook(), HookState::OnHook);
    assert_eq!(b.next_event(), None, "one event per change");
}

fn cadence_is_exact(b: &mut impl FxsBench) {
    assert!(b.start_ringing(RingCadence::new(&[200, 400, 100, 300]).unwrap()));
    assert_eq!(
        b.advance(1990),
        [(200, false), (600, true), (700, false), (1000, true), (1200, false), (1600, true), (1700, false)]
    );
    assert_eq!(b.port().set_ringing(None), Ok(()));
    assert!(b.advance(1000).is_empty(), "stopped in an off period: nothing changes");
}

fn ring_trip(b: &mut impl FxsBench) {
    assert!(b.start_ringing(RingCadence::new(&[2000, 4000]).unwrap()));
    b.advance(50);
    b.set_off_hook(true);
    assert!(b.ring_dropped(), "the ring stops as soon as the phone answers");
    assert_eq!(b.next_event(), Some(FxsEvent::OffHook));
    assert!(b.advance(300).is_empty(), "ringing stays off");
    b.set_off_hook(false);
    assert_eq!(b.next_event(), Some(FxsEvent::OnHook));
}
