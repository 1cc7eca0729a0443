//! `gatewayd`: the one process of the appliance.
//!
//! - [`rt`]: the real-time audio thread (DSP, codecs, RTP packetization);
//! - [`media_io`]: the thread that moves RTP between sockets and the rt queues;
//! - [`gateway`]: the call router joining line machines, SIP and the rt thread;
//! - [`driver`]: the tokio task that owns the SIP socket and the clock;
//! - [`isdn`]: ISDN spans (`[[span]]`, layer 2 per span, `show isdn`, D-channel pcap);
//! - [`callerid`]: the caller ID delivery for an incoming call;
//! - [`capture`]: the installer's packet capture of SIP and RTP (pcap);
//! - [`cdr`]: call detail records (`show cdr`, the status's call log, `[log] cdr_file`);
//! - [`apply`]: which parts a committed configuration touches (live or restart);
//! - [`config`]: the validated TOML configuration; [`config_store`]: editing,
//!   saving and rolling it back;
//! - [`logging`]: rate-limited repeats and the size-capped rotating log file;
//! - [`limits`]: the `[security]`, `[limits]` and `[log]` sections (network-edge robustness);
//! - [`console`]: the installer's console; [`conn_limit`]: connection budgets and idle timeouts;
//! - [`status`]: the status snapshot; [`web`]: the web UI;
//! - [`watchdog`]: heartbeats and the hardware watchdog; [`upgrade`]: signed A/B
//!   upgrades and mark-good; [`serial_console`]: the console on a tty.
//! - [`accounts`]: management users, argon2 passwords, login rate limits;
//!   [`tls`]: the web UI's device certificate and HTTPS listener; [`audit`]: who changed what.
//!
//! `unsafe` appears only in the rt thread set-up (`rt::set_fifo`) and the
//! watchdog's timeout ioctl (`watchdog::spawn`).
#![deny(unsafe_code)]

pub mod apply;
pub mod accounts;
pub mod audit;
pub mod callerid;
pub mod capture;
pub mod cdr;
pub mod config;
pub mod cli;
pub mod config_store;
pub mod conn_limit;
pub mod console;
pub mod driver;
pub mod gateway;
pub mod isdn;
pub mod isdn_debug;
pub mod limits;
pub mod logging;
pub mod media_io;
pub mod rt;
pub mod serial_console;
pub mod status;
pub mod upgrade;
pub mod watchdog;
pub mod tls;
pub mod web;

use gw_hal::{Frame, PcmBus, PcmStats};

/// The board's PCM bus behind a box, so the rt engine has one concrete type.
pub struct BoxedPcm(pub Box<dyn PcmBus + Send>);

impl PcmBus for BoxedPcm {
    fn channels(&self) -> usize {
        self.0.channels()
    }
    fn exchange(&mut self, tx: &[Frame], rx: &mut [Frame]) -> PcmStats {
        self.0.exchange(tx, rx)
    }
}
