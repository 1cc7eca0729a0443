//! Reset and interrupt lines through the GPIO character device
//! (`/dev/gpiochipN`, gpio-cdev; never the deprecated sysfs interface).
//!
//! - A reset line is an `embedded_hal::digital::OutputPin`
//!   (linux-embedded-hal's `CdevPin`), requested asserted so that a chip stays
//!   in reset until its driver's init sequence releases it.
//! - Interrupt lines become [`IrqEvent`]s for the control plane: one
//!   [`IrqWatcher`] thread polls every line's event fd (100 ms timeout, so it
//!   notices a stop) and sends `(chip, asserted, timestamp)` on a channel. The
//!   control plane then asks the chip's driver what happened (hook, ring
//!   trip, ring detect ...) over SPI: the chips' interrupt outputs are levels
//!   held until their status registers are cleared, so an edge is only a
//!   "look now". Nothing here runs on the rt thread.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;

use linux_embedded_hal::gpio_cdev::{self, Chip, EventRequestFlags, LineEventHandle, LineRequestFlags};
use linux_embedded_hal::CdevPin;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Consumer label the lines carry in `gpioinfo`.
pub const CONSUMER: &str = "gatewayd";

fn flags(base: LineRequestFlags, active_low: bool) -> LineRequestFlags {
    if active_low {
        base | LineRequestFlags::ACTIVE_LOW
    } else {
        base
    }
}

/// Requests a chip's reset line as an output, asserted (chip held in reset).
pub fn open_reset(chip: &str, offset: u32, active_low: bool) -> Result<CdevPin, gpio_cdev::Error> {
    let line = Chip::new(chip)?.get_line(offset)?;
    let handle = line.request(flags(LineRequestFlags::OUTPUT, active_low), 1, CONSUMER)?;
    CdevPin::new(handle)
}

/// Requests a chip's interrupt line for edge events (both edges: the level
/// read after each event says whether it is asserted).
pub fn open_irq(chip: &str, offset: u32, active_low: bool) -> Result<LineEventHandle, gpio_cdev::Error> {
    let line = Chip::new(chip)?.get_line(offset)?;
    line.events(flags(LineRequestFlags::INPUT, active_low), EventRequestFlags::BOTH_EDGES, CONSUMER)
}

/// An interrupt line changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqEvent {
    /// Index of the chip in the board's `chips`.
    pub chip: usize,
    /// The line is asserted (the chip wants service).
    pub asserted: bool,
    /// Kernel timestamp of the edge (CLOCK_MONOTONIC, ns).
    pub timestamp_ns: u64,
}

/// Something with an fd that becomes readable when an edge is queued.
pub trait IrqSource: AsFd + Send {
    /// Reads one queued edge: `(asserted, timestamp_ns)`.
    fn read_edge(&mut self) -> io::Result<(bool, u64)>;
    /// The line's level now (asserted or not), read once at start.
    fn asserted(&mut self) -> io::Result<bool>;
}

impl IrqSource for LineEventHandle {
    fn read_edge(&mut self) -> io::Result<(bool, u64)> {
        let ev = self.get_event().map_err(io::Error::other)?;
        let level = self.get_value().map_err(io::Error::other)?;
        Ok((level == 1, ev.timestamp()))
    }

    fn asserted(&mut self) -> io::Result<bool> {
        Ok(self.get_value().map_err(io::Error::other)? == 1)
    }
}

/// A chip's interrupt output as the chip drivers want it: an
/// `embedded_hal::digital::InputPin` that `is_low()` while the interrupt is
/// asserted (the chips' /INT is active low), whatever the board's wiring
/// polarity (`active_low` in board.toml is applied when the line is
/// requested). Reads the level the [`IrqWatcher`] last saw: no system call,
/// so a driver's `tick` may poll it every 10 ms.
#[derive(Debug, Clone)]
pub struct IrqPin {
    level: Arc<AtomicBool>,
}

impl IrqPin {
    /// A pin over a level kept elsewhere (the watcher's, or a test's).
    pub fn new(level: Arc<AtomicBool>) -> Self {
        IrqPin { level }
    }
}

impl embedded_hal::digital::ErrorType for IrqPin {
    type Error = core::convert::Infallible;
}

impl embedded_hal::digital::InputPin for IrqPin {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.level.load(Ordering::Acquire))
    }

    fn is_low(&mut self) -> Result<bool, Self::Error> {
        Ok(self.level.load(Ordering::Acquire))
    }
}

/// The thread that turns interrupt edges into [`IrqEvent`]s. Stops (and is
/// joined) when dropped, or by itself when the receiver is gone or a line
/// fails (the error is sent as the thread's result).
pub struct IrqWatcher {
    stop: Arc<AtomicBool>,
    /// Per chip index: the interrupt is asserted (for [`IrqPin`]s).
    levels: Vec<Arc<AtomicBool>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl IrqWatcher {
    /// Watches `(chip index, source)` pairs, sending each edge on `tx`.
    pub fn spawn<S: IrqSource + 'static>(mut sources: Vec<(usize, S)>, tx: Sender<IrqEvent>) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let chips = sources.iter().map(|(c, _)| c + 1).max().unwrap_or(0);
        let levels: Vec<Arc<AtomicBool>> = (0..chips).map(|_| Arc::new(AtomicBool::new(false))).collect();
        for (chip, src) in sources.iter_mut() {
            levels[*chip].store(src.asserted()?, Ordering::Release);
        }
        let thread_levels = levels.clone();
        let thread = std::thread::Builder::new().name("gw-irq".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let ready: Vec<bool> = {
                    let mut fds: Vec<PollFd> =
                        sources.iter().map(|(_, s)| PollFd::new(s.as_fd(), PollFlags::POLLIN)).collect();
                    match poll(&mut fds, PollTimeout::from(100u8)) {
                        Ok(0) => continue,
                        Ok(_) => {}
                        Err(nix::errno::Errno::EINTR) => continue,
                        Err(e) => return Err(io::Error::from(e)),
                    }
                    fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect()
                };
                for ((chip, src), ready) in sources.iter_mut().zip(ready) {
                    if !ready {
                        continue;
                    }
                    let (asserted, timestamp_ns) = src.read_edge()?;
                    thread_levels[*chip].store(asserted, Ordering::Release);
                    if tx.send(IrqEvent { chip: *chip, asserted, timestamp_ns }).is_err() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })?;
        Ok(IrqWatcher { stop, levels, thread: Some(thread) })
    }

    /// The interrupt input of chip `chip` for its driver (`None`: no
    /// interrupt line of that chip is watched).
    pub fn pin(&self, chip: usize) -> Option<IrqPin> {
        self.levels.get(chip).map(|l| IrqPin::new(l.clone()))
    }

    /// Stops the thread and returns how it ended.
    pub fn stop(mut self) -> io::Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("irq thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for IrqWatcher {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::BorrowedFd;
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A fake interrupt line: each byte written to the other end is one edge
    /// (1 asserted, 0 released); its timestamp counts edges.
    struct PipeLine(UnixStream, u64);

    impl AsFd for PipeLine {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.0.as_fd()
        }
    }

    impl IrqSource for PipeLine {
        fn read_edge(&mut self) -> io::Result<(bool, u64)> {
            let mut b = [0u8];
            self.0.read_exact(&mut b)?;
            self.1 += 1;
            Ok((b[0] == 1, self.1))
        }

        fn asserted(&mut self) -> io::Result<bool> {
            Ok(false)
        }
    }

    #[test]
    fn edges_on_each_line_become_events_for_its_chip() {
        let (mut slic, a) = UnixStream::pair().unwrap();
        let (mut daa, b) = UnixStream::pair().unwrap();
        let (tx, rx) = mpsc::channel();
        let w = IrqWatcher::spawn(vec![(0, PipeLine(a, 0)), (1, PipeLine(b, 0))], tx).unwrap();
        use embedded_hal::digital::InputPin;
        let (mut slic_int, mut daa_int) = (w.pin(0).unwrap(), w.pin(1).unwrap());
        assert!(w.pin(2).is_none());
        assert!(slic_int.is_high().unwrap(), "idle: /INT high");
        slic.write_all(&[1]).unwrap();
        let e = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(e, IrqEvent { chip: 0, asserted: true, timestamp_ns: 1 });
        assert!(slic_int.is_low().unwrap(), "asserted: the driver sees /INT low");
        assert!(daa_int.is_high().unwrap());
        daa.write_all(&[1]).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), IrqEvent { chip: 1, asserted: true, timestamp_ns: 1 });
        slic.write_all(&[0]).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), IrqEvent { chip: 0, asserted: false, timestamp_ns: 2 });
        assert!(slic_int.is_high().unwrap());
        assert!(daa_int.is_low().unwrap());
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "no edge, no event");
        w.stop().unwrap();
    }

    #[test]
    fn a_failing_line_ends_the_watcher_with_its_error() {
        let (slic, a) = UnixStream::pair().unwrap();
        let (tx, _rx) = mpsc::channel();
        let w = IrqWatcher::spawn(vec![(0, PipeLine(a, 0))], tx).unwrap();
        drop(slic); // readable at EOF: read_exact fails
        std::thread::sleep(Duration::from_millis(300));
        let e = w.stop().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn missing_gpio_chip_is_an_error() {
        assert!(open_reset("/nonexistent/gpiochip9", 23, true).is_err());
        assert!(open_irq("/nonexistent/gpiochip9", 25, true).is_err());
    }
}
