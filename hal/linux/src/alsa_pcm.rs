//! The line cards' PCM highway as an ALSA PCM device: a [`gw_hal::PcmBus`]
//! for the rt thread.
//!
//! Opened once at set-up (before the rt thread starts): one capture and one
//! playback stream on the same device, interleaved access, one channel per
//! timeslot, 8 kHz, a period of [`FRAME_SAMPLES`] frames (10 ms, the rt
//! frame) and a buffer of [`PERIODS`] periods, both non-blocking. Each rt tick
//! [`AlsaPcm::exchange`] reads one period if one is ready, writes one, and
//! converts with [`Highway`] into the pre-allocated buffers: no allocation,
//! no lock, no log, no blocking (alsa-lib's `hw` plugin read/write is one
//! ioctl). Not ready is counted, not waited for: a capture period not yet
//! complete is an underrun of every channel (silence), a full playback
//! buffer an overrun. An xrun (EPIPE) re-prepares the stream and is counted
//! the same way.
//!
//! Read/write access, not mmap: 320 bytes per period on the reference board
//! is nothing to copy, and it needs no `unsafe` around the mmap area.

use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};
use gw_board::SlotFormat;
use gw_hal::{Frame, PcmStats, FRAME_SAMPLES};

use crate::highway::Highway;

/// Periods in each stream's buffer: 40 ms of slack for the rt thread.
pub const PERIODS: usize = 4;
/// The highway's frame rate.
pub const RATE_HZ: u32 = 8000;

/// A [`gw_hal::PcmBus`] on an ALSA PCM device.
pub struct AlsaPcm {
    capture: PCM,
    playback: PCM,
    highway: Highway,
    tx_buf: Vec<u8>,
    rx_buf: Vec<u8>,
    /// Periods the streams have had to be re-prepared (xruns).
    xruns: u64,
}

impl std::fmt::Debug for AlsaPcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlsaPcm").field("highway", &self.highway).field("xruns", &self.xruns).finish()
    }
}

fn alsa_format(f: SlotFormat) -> Format {
    match f {
        SlotFormat::Ulaw => Format::MuLaw,
        SlotFormat::Alaw => Format::ALaw,
        _ => Format::S16LE,
    }
}

fn open_stream(device: &str, dir: Direction, hw: &Highway) -> alsa::Result<PCM> {
    let pcm = PCM::new(device, dir, true)?;
    {
        let p = HwParams::any(&pcm)?;
        p.set_access(Access::RWInterleaved)?;
        p.set_format(alsa_format(hw.format()))?;
        p.set_channels(hw.slots() as u32)?;
        p.set_rate(RATE_HZ, ValueOr::Nearest)?;
        p.set_period_size(FRAME_SAMPLES as alsa::pcm::Frames, ValueOr::Nearest)?;
        p.set_buffer_size((FRAME_SAMPLES * PERIODS) as alsa::pcm::Frames)?;
        pcm.hw_params(&p)?;
    }
    {
        let hwp = pcm.hw_params_current()?;
        let (rate, period) = (hwp.get_rate()?, hwp.get_period_size()?);
        if rate != RATE_HZ || period != FRAME_SAMPLES as alsa::pcm::Frames {
            // The device cannot run the rt frame exactly: refuse rather than drift.
            return Err(alsa::Error::new("gw-hal-linux: rate/period", -libc_einval()));
        }
        let sw = pcm.sw_params_current()?;
        // Playback starts once two periods are queued: 10 ms of slack
        // against the rt thread's jitter before the first underrun.
        sw.set_start_threshold(if dir == Direction::Playback { 2 * FRAME_SAMPLES as alsa::pcm::Frames } else { 1 })?;
        sw.set_avail_min(FRAME_SAMPLES as alsa::pcm::Frames)?;
        pcm.sw_params(&sw)?;
    }
    pcm.prepare()?;
    Ok(pcm)
}

const fn libc_einval() -> i32 {
    22
}

const EAGAIN: i32 = 11;
const EPIPE: i32 = 32;
const ESTRPIPE: i32 = 86;

impl AlsaPcm {
    /// Opens `device` (e.g. `hw:CARD=linecard,DEV=0`) for the highway: runs
    /// at set-up, allocates its buffers here and never again.
    pub fn open(device: &str, highway: Highway) -> alsa::Result<Self> {
        let capture = open_stream(device, Direction::Capture, &highway)?;
        let playback = open_stream(device, Direction::Playback, &highway)?;
        capture.start()?;
        Ok(AlsaPcm {
            capture,
            playback,
            highway,
            tx_buf: vec![0; highway.period_bytes()],
            rx_buf: vec![0; highway.period_bytes()],
            xruns: 0,
        })
    }

    /// Streams re-prepared after an xrun since opening.
    pub fn xruns(&self) -> u64 {
        self.xruns
    }

    /// After an xrun: prepare the stream again (capture also restarts;
    /// playback restarts at its start threshold).
    fn recover(pcm: &PCM, capture: bool, e: &alsa::Error, xruns: &mut u64) {
        if matches!(e.errno(), EPIPE | ESTRPIPE) {
            *xruns += 1;
            if pcm.prepare().is_ok() && capture {
                let _ = pcm.start();
            }
        }
    }
}

impl gw_hal::PcmBus for AlsaPcm {
    fn channels(&self) -> usize {
        self.highway.slots()
    }

    fn exchange(&mut self, tx: &[Frame], rx: &mut [Frame]) -> PcmStats {
        let mut st = PcmStats::default();
        let slots = self.highway.slots() as u32;
        // Capture: one whole period, or silence and an underrun per channel.
        let got = self.capture.io_bytes().readi(&mut self.rx_buf);
        match got {
            Ok(n) if n == FRAME_SAMPLES => self.highway.deinterleave(&self.rx_buf, rx),
            other => {
                if let Err(e) = &other {
                    if e.errno() != EAGAIN {
                        Self::recover(&self.capture, true, e, &mut self.xruns);
                    }
                }
                rx.iter_mut().for_each(|f| f.fill(0));
                st.rx_underruns = slots;
            }
        }
        self.highway.interleave(tx, &mut self.tx_buf);
        let put = self.playback.io_bytes().writei(&self.tx_buf);
        match put {
            Ok(n) if n == FRAME_SAMPLES => {}
            Ok(_) => st.tx_overruns = slots,
            Err(e) => {
                if e.errno() != EAGAIN {
                    Self::recover(&self.playback, false, &e, &mut self.xruns);
                }
                st.tx_overruns = slots;
            }
        }
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gw_hal::PcmBus;

    /// alsa-lib's `null` device (alsa.conf: `pcm.null { type null }`): no
    /// hardware, no clock; capture reads a constant pattern, playback discards. It
    /// exercises the whole open (hw and sw params) and exchange path.
    #[test]
    fn the_null_device_runs_the_rt_frame() {
        if !std::path::Path::new("/usr/share/alsa/alsa.conf").exists() {
            eprintln!("SKIP: no /usr/share/alsa/alsa.conf (Debian libasound2-data)");
            return;
        }
        for format in [SlotFormat::Linear16, SlotFormat::Ulaw, SlotFormat::Alaw] {
            let hw = Highway::new(format, 2);
            let mut pcm = AlsaPcm::open("null", hw).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert_eq!(pcm.channels(), 2);
            let tx = [[1000i16; FRAME_SAMPLES]; 2];
            let mut rx = [[77i16; FRAME_SAMPLES]; 2];
            let mut underruns = 0;
            for _ in 0..20 {
                let st = pcm.exchange(&tx, &mut rx);
                underruns += st.rx_underruns;
                // The null plugin hands back one constant byte pattern; in
                // linear slots that is silence.
                assert!(rx.iter().all(|f| f.iter().all(|&s| s == f[0])), "{format:?}: constant capture");
                if format == SlotFormat::Linear16 {
                    assert!(rx.iter().all(|f| f[0] == 0), "null captures silence");
                }
            }
            // The null plugin has no clock: a period is (almost) always there.
            assert!(underruns <= 2, "{format:?}: {underruns} underruns");
        }
    }

    #[test]
    fn a_missing_device_is_an_error() {
        let e = AlsaPcm::open("hw:CARD=no_such_linecard,DEV=0", Highway::new(SlotFormat::Linear16, 2)).unwrap_err();
        assert!(e.errno() != 0);
    }
}
