//! `gatewayd`: the one process of the appliance.
//!
//! - [`rt`]: the real-time audio thread (DSP, codecs, RTP packetization);
//! - [`media_io`]: the thread that moves RTP between sockets and the rt queues;
//! - [`gateway`]: the call router joining line machines, SIP and the rt thread;
//! - [`driver`]: the tokio task that owns the SIP socket and the clock;
//! - [`callerid`]: the caller ID delivery for an incoming call;
//! - [`config`]: the validated TOML configuration; [`config_store`]: editing,
//!   saving and rolling it back;
//! - [`logging`]: rate-limited repeats and the size-capped rotating log file;
//! - [`limits`]: the `[security]`, `[limits]` and `[log]` sections (network-edge robustness);
//! - [`console`]: the installer's console; [`conn_limit`]: connection budgets and idle timeouts;
//! - [`status`]: the status snapshot; [`web`]: the web UI;
//! - [`accounts`]: management users, argon2 passwords, login rate limits;
//!   [`tls`]: the web UI's device certificate and HTTPS listener; [`audit`]: who changed what.
//!
//! `unsafe` appears only in the rt thread set-up (`rt::set_fifo`).
#![deny(unsafe_code)]

pub mod accounts;
pub mod audit;
pub mod callerid;
pub mod config;
pub mod config_store;
pub mod conn_limit;
pub mod console;
pub mod driver;
pub mod gateway;
pub mod limits;
pub mod logging;
pub mod media_io;
pub mod rt;
pub mod status;
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
