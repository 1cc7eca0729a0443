//! Phase-accumulator sine oscillator shared by the generators.
//!
//! A 32-bit phase accumulator wraps exactly once per cycle, so the phase never loses
//! precision however long a tone plays (a float phase would drift after minutes of dial
//! tone), and the frequency resolution is 8000 / 2^32 Hz.

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Osc {
    phase: u32,
    inc: u32,
    pub(crate) amp: f32,
}

const TWO_POW_32: f64 = 4_294_967_296.0;

impl Osc {
    pub(crate) const fn off() -> Self {
        Osc { phase: 0, inc: 0, amp: 0.0 }
    }

    /// `freq_hz` at 8 kHz with peak amplitude `amp`. Negative or above-Nyquist
    /// frequencies are folded into the accumulator's range (they alias, as sampling would).
    pub(crate) fn new(freq_hz: f32, amp: f32) -> Self {
        let c = freq_hz as f64 / 8000.0;
        let cycles = c - libm::floor(c);
        Osc { phase: 0, inc: (cycles * TWO_POW_32) as u32, amp }
    }

    #[inline]
    pub(crate) fn next(&mut self) -> f32 {
        let angle = self.phase as f32 * (core::f32::consts::TAU / TWO_POW_32 as f32);
        self.phase = self.phase.wrapping_add(self.inc);
        self.amp * libm::sinf(angle)
    }

    /// The phase increment (frequency) of this oscillator.
    pub(crate) fn inc(&self) -> u32 {
        self.inc
    }

    /// Change frequency, keeping the phase (continuous-phase FSK).
    pub(crate) fn set_freq(&mut self, inc: u32) {
        self.inc = inc;
    }

    /// Advance without producing output (keeps phase continuity through silences).
    #[inline]
    pub(crate) fn skip(&mut self, n: u32) {
        self.phase = self.phase.wrapping_add(self.inc.wrapping_mul(n));
    }
}
