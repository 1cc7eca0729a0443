//! gatewayd: starts the board, the rt thread and the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use gatewayd::config::{Config, DEFAULT_TOML};
use gatewayd::driver::Driver;
use gatewayd::gateway::Gateway;
use gatewayd::media_io::MediaIo;
use gatewayd::rt::{self, RtConfig, RtEngine, RtStats};
use gatewayd::config_store::ConfigStore;
use gatewayd::{console, web};
use gatewayd::status::Status;
use gatewayd::BoxedPcm;
use tracing::{error, info, warn};

#[derive(Parser, Debug)]
#[command(name = "gatewayd", version, about = "SIP/PSTN media gateway daemon")]
struct Args {
    /// Configuration file (TOML). Without it the embedded sim-board default is used.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The board: a built-in one by name (`sim`, `rpi4-fxs-fxo`) or the path of
    /// a board.toml (the image passes /etc/gatewayd/board.toml). The board is
    /// the hardware, fixed by the image, so it is not in the configuration
    /// (which is edited, committed and copied between boxes, and is
    /// validated against the board's ports).
    #[arg(long, default_value = "sim", value_name = "NAME|PATH")]
    board: String,
    /// Override the sim link listen address of the sim board (linesim attaches here).
    #[arg(long)]
    sim_listen: Option<SocketAddr>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        print!("{DEFAULT_TOML}");
        return ExitCode::SUCCESS;
    }
    let board_desc = match gw_board::load(&args.board) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gatewayd: {e}");
            return ExitCode::from(2);
        }
    };
    if args.sim_listen.is_some() && board_desc.sim.is_none() {
        eprintln!("gatewayd: --sim-listen is for a sim board; board '{}' has real line chips", board_desc.name);
        return ExitCode::from(2);
    }
    let board_ports = board_desc.fxs_count();
    let config = match &args.config {
        None if board_desc.sim.is_some() && board_ports == 4 => Config::default_sim(),
        None => match Config::default_for_board(board_ports) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("gatewayd: the default configuration does not fit board '{}': {e}", board_desc.name);
                return ExitCode::from(2);
            }
        },
        Some(path) => match Config::load(path, board_ports) {
            Ok(c) => c,
            Err(e) => {
                error!("configuration refused: {e}");
                eprintln!("gatewayd: configuration {} refused: {e}", path.display());
                if !args.check_config {
                    undo_failed_change(path);
                }
                return ExitCode::from(2);
            }
        },
    };
    // `[[span]]` against the board's ISDN spans.
    if let Err(e) = gatewayd::isdn::check_board(&config.span, &board_desc.span_infos()) {
        error!("configuration refused: {e}");
        eprintln!("gatewayd: configuration refused: {e}");
        if let (Some(path), false) = (&args.config, args.check_config) {
            undo_failed_change(path);
        }
        return ExitCode::from(2);
    }
    if args.check_config {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    // Repeat-limited, and into a size-capped rotating file if configured.
    if let Err(e) = gatewayd::logging::init(&config.log) {
        eprintln!("gatewayd: log file: {e}; logging to stderr only");
        let _ = gatewayd::logging::init(&gatewayd::limits::Log { file: None, ..config.log.clone() });
    }
    let restart = Arc::new(AtomicBool::new(false));
    match run(config, board_desc, args.sim_listen, args.config.clone(), restart.clone()) {
        Ok(()) if restart.load(Ordering::Relaxed) => {
            // A committed configuration: start again as the same process so
            // that every setting takes effect together. Sockets are
            // close-on-exec.
            info!("restarting with the new configuration");
            restart_in_place()
        }
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("gatewayd: {e}");
            if let Some(path) = &args.config {
                undo_failed_change(path);
            }
            ExitCode::FAILURE
        }
    }
}

/// Starts this program again as the same process (same pid, arguments and
/// stdout/stderr). Returns only if that fails.
fn restart_in_place() -> ExitCode {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let err = std::process::Command::new(exe).args(std::env::args_os().skip(1)).exec();
    error!("restart failed: {err}");
    eprintln!("gatewayd: restart failed: {err}");
    ExitCode::FAILURE
}

/// gatewayd cannot start with the configuration at `path`: if that is a
/// change committed from the console, go back to the previous file and start
/// again with it (once; see `config_store::recover_failed_change`).
fn undo_failed_change(path: &std::path::Path) {
    match gatewayd::config_store::recover_failed_change(path) {
        Ok(true) => {
            error!(path = %path.display(), "the committed configuration did not start: going back to the previous one");
            eprintln!("gatewayd: the committed configuration did not start; restored the previous one");
            let _ = restart_in_place();
        }
        Ok(false) => {}
        Err(e) => error!("cannot restore the previous configuration: {e}"),
    }
}

fn run(
    config: Config,
    board_desc: gw_board::BoardDesc,
    sim_listen: Option<SocketAddr>,
    config_path: Option<PathBuf>,
    restart: Arc<AtomicBool>,
) -> Result<(), String> {
    let board_ports = board_desc.fxs_count();
    let mut board = open_board(&board_desc, sim_listen, &config.system.country)?;
    // ISDN spans: the configured ones are run by the gateway; the others stay idle.
    let mut board_spans: Vec<_> = std::mem::take(&mut board.spans).into_iter().map(|s| Some((s.info, s.dchan))).collect();
    let spans = gatewayd::isdn::build_spans(&config.span, &mut board_spans)?;
    let span_wake = Arc::new(tokio::sync::Notify::new());
    if let Some(sim) = board.sim.as_ref() {
        let wake = span_wake.clone();
        sim.set_span_notify(Box::new(move || wake.notify_one()));
    }
    let sim_addr = board.sim.as_ref().map(|s| s.local_addr());
    // The PCM bus's channels, then the bridge channels of trunk-to-trunk calls.
    let lines = board.pcm.channels();
    let channels = lines + 2 * usize::from(config.media.sip_bridges);

    let (rt_queues, ctl) = rt::make_queues();
    let rt_stats = Arc::new(RtStats::new(channels));
    let capture = Arc::new(gatewayd::capture::Capture::default());
    let media = MediaIo::start_with(channels, ctl.packets_out, ctl.packets_in, capture.clone())
        .map_err(|e| format!("media thread: {e}"))?;

    // The engine is built (and allocates) here, before the rt thread starts.
    let rt_config = RtConfig {
        echo_tail: config.media.echo_canceller.then_some(config.media.echo_tail_ms as usize * 8),
        profile: gw_dsp::tones::profile(&config.system.country).expect("validated country"),
        modem_bypass: config.media.modem_bypass,
        bridge_channels: 2 * usize::from(config.media.sip_bridges),
        digital_lines: [0; 2],
    };
    let mut rt_config = rt_config;
    for s in board_desc.spans.iter() {
        for &t in &s.timeslots {
            rt_config.set_digital(usize::from(t));
        }
    }
    let engine = RtEngine::new(BoxedPcm(board.pcm), rt_queues, rt_stats.clone(), rt_config);
    let stop = Arc::new(AtomicBool::new(false));
    let (setup_tx, setup_rx) = std::sync::mpsc::channel();
    let core = config.system.rt_core.or(board_desc.rt_core);
    let rt_thread = std::thread::Builder::new()
        .name("rt-audio".into())
        .spawn({
            let stop = stop.clone();
            move || {
                let report = rt::setup_realtime(core);
                let _ = setup_tx.send(report);
                rt::run(engine, stop);
            }
        })
        .map_err(|e| format!("rt thread: {e}"))?;
    let rt_setup = setup_rx.recv().map_err(|_| "rt thread died during set-up".to_string())?;
    if rt_setup.fully_realtime() {
        info!(core = ?rt_setup.core, "rt thread: pinned, SCHED_FIFO, memory locked");
    } else {
        warn!(
            core = ?rt_setup.core, sched_fifo = ?rt_setup.sched_fifo, mlockall = ?rt_setup.mlockall,
            "rt thread runs WITHOUT full real-time guarantees (the system refused part of the set-up)"
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let result = runtime.block_on(async {
        let sip = tokio::net::UdpSocket::bind(config.sip.listen)
            .await
            .map_err(|e| format!("SIP listen {}: {e}", config.sip.listen))?;
        let sip_addr = sip.local_addr().map_err(|e| e.to_string())?;
        let http = tokio::net::TcpListener::bind(config.management.http_listen)
            .await
            .map_err(|e| format!("HTTP listen {}: {e}", config.management.http_listen))?;
        let console = tokio::net::TcpListener::bind(config.management.console_listen)
            .await
            .map_err(|e| format!("console listen {}: {e}", config.management.console_listen))?;
        let https_listen = config.management.https_listen();
        let https = tokio::net::TcpListener::bind(https_listen)
            .await
            .map_err(|e| format!("HTTPS listen {https_listen}: {e}"))?;
        let http_addr = http.local_addr().map_err(|e| e.to_string())?;
        let https_addr = https.local_addr().map_err(|e| e.to_string())?;
        // The web UI's accounts, device certificate and audit log sit next
        // to the configuration (in memory without one).
        let state_dir = gatewayd::tls::state_dir(config_path.as_deref());
        let opened = match &state_dir {
            Some(d) => gatewayd::accounts::Accounts::open(&d.join("accounts.toml")).map_err(|e| e.to_string())?,
            None => gatewayd::accounts::Accounts::in_memory(),
        };
        let identity = gatewayd::tls::Identity::load_or_create(state_dir.as_deref(), &[https_addr.ip()])?;
        let audit = gatewayd::audit::AuditLog::open(
            state_dir.as_ref().map(|d| d.join(gatewayd::audit::FILE)),
            gatewayd::audit::DEFAULT_MAX_BYTES,
        );
        let console_addr = console.local_addr().map_err(|e| e.to_string())?;

        let status = Arc::new(Mutex::new(Status::new(
            board_desc.name.clone(),
            sip_addr.to_string(),
            sim_addr.map(|a| a.to_string()),
            rt_stats.snapshot(),
        )));
        let warnings = config.warnings();
        for w in &warnings {
            warn!("{w}");
        }
        status.lock().unwrap_or_else(|p| p.into_inner()).warnings = warnings.clone();
        println!("gatewayd {} on board '{}'", env!("CARGO_PKG_VERSION"), board_desc.name);
        for w in &warnings {
            println!("  WARNING: {w}");
        }
        println!("  SIP (UDP):      {sip_addr}  -> trunk proxy {}", config.sip.proxy);
        println!("  web UI:         https://{https_addr}/  (status JSON: http://{http_addr}/api/status)");
        println!("  web certificate SHA-256: {}", identity.fingerprint());
        if let Some(pw) = &opened.initial_password {
            println!("  INITIAL PASSWORD for user 'admin' (shown once, to be changed at first login): {pw}");
        }
        println!("  console:        {console_addr}  (`cargo run -p gwctl -- --tcp {console_addr} show status`)");
        if let Some(a) = sim_addr {
            println!("  sim line card:  {a}  (attach phones: `cargo run -p linesim -- --connect {a}`)");
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();

        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let shutdown_tx = Arc::new(shutdown_tx);
        let store = Arc::new(Mutex::new(ConfigStore::new(config_path.clone(), board_ports, config.clone())));
        let request_restart: Arc<dyn Fn() + Send + Sync> = Arc::new({
            let shutdown_tx = shutdown_tx.clone();
            move || {
                restart.store(true, Ordering::Relaxed);
                let _ = shutdown_tx.send(true);
            }
        });
        let (changes_tx, changes_rx) = tokio::sync::mpsc::unbounded_channel();
        let apply: Arc<dyn Fn(Config) + Send + Sync> = Arc::new({
            let config_path = config_path.clone();
            move |config| {
                // Taken live: the saved file is the running one, nothing to undo.
                if let Some(path) = &config_path {
                    gatewayd::config_store::confirm(path);
                }
                let _ = changes_tx.send(config);
            }
        });
        let isdn_control = gatewayd::isdn::Control::default();
        let management = console::Context {
            status: status.clone(),
            store,
            restart: request_restart.clone(),
            apply,
            capture: capture.clone(),
            isdn: isdn_control.clone(),
        };
        // Watchdog, A/B mark-good and upgrades, the console on a tty (issue 11).
        gatewayd::watchdog::start_supervision(&config, rt_stats.clone(), status.clone())?;
        let web_state = web::Web::new(management.clone(), opened.accounts, audit, https_addr.port());
        // The consoles log in with the web UI's accounts (a loopback TCP console does not).
        let accounts = web_state.accounts.clone();
        gatewayd::serial_console::spawn(&config.console, management.clone(), config.limits.max_line_bytes, Some(accounts.clone()));
        tokio::spawn(async move { web::serve(http, https, &identity, web_state).await });
        tokio::spawn(console::serve(console, management, accounts));
        // Everything this configuration needs is bound: a committed change
        // is no longer pending.
        if let Some(path) = &config_path {
            gatewayd::config_store::confirm(path);
        }

        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed)
            ^ (std::process::id() as u64) << 32;
        // Each port's audio is on its board timeslot (validated <= 127).
        let ports = board.fxs_timeslots.iter().map(|&t| t as u8).zip(board.fxs).collect();
        let mut gateway = Gateway::new(config.clone(), sip_addr, ports, ctl.commands, media, seed);
        gateway.set_bridge_channels(lines as u8, config.media.sip_bridges);
        let fxo = board.fxo_timeslots.iter().map(|&t| t as u8).zip(board.fxo).collect();
        gateway.add_fxo_ports(fxo);
        gateway.add_isdn_spans(spans);
        let driver = Driver {
            gateway,
            sip,
            rt_events: ctl.events,
            rt_stats,
            rt_setup,
            status,
            echo_enabled: config.media.echo_canceller,
            admission: gatewayd::limits::admission_for(&config, std::time::Instant::now()),
            changes: changes_rx,
            restart: request_restart,
            capture,
            cdr_file: config.log.cdr_file.as_ref().and_then(|path| {
                gatewayd::logging::RotatingFile::open(path, config.log.file_max_bytes, config.log.file_keep)
                    .map_err(|e| warn!(path = %path.display(), %e, "cannot open the CDR file; records stay in memory only"))
                    .ok()
            }),
            isdn: isdn_control,
            isdn_wake: span_wake,
        };
        tokio::spawn(async move {
            wait_for_signal().await;
            info!("shutting down");
            let _ = shutdown_tx.send(true);
        });
        driver.run(shutdown_rx).await;
        Ok::<(), String>(())
    });
    stop.store(true, Ordering::Relaxed);
    let _ = rt_thread.join();
    drop(board.sim);
    result
}

/// The sim board through `gw_board::build`; a board with real chips through
/// gw-hal-linux (spidev, gpio-cdev, ALSA), whose error names the missing
/// device ("/dev/spidev0.0: No such file or directory").
fn open_board(desc: &gw_board::BoardDesc, sim_listen: Option<SocketAddr>, country: &str) -> Result<gw_board::Board, String> {
    if desc.chips.is_empty() {
        return gw_board::build(desc, sim_listen).map_err(|e| format!("board {}: {e:?}", desc.name));
    }
    use gw_hal::chips::si3050::country::Country;
    // The DAA's line settings (DC termination, AC impedance, ring detection)
    // follow the tone profile's country; TBR21 is the one most PTTs accept.
    let daa_country = Country::parse(country).unwrap_or_else(|_| {
        warn!(country, "no DAA line settings for this country: using CTR21 (TBR21)");
        Country::Ctr21
    });
    let board = gw_hal_linux::linecard::open_board(desc, daa_country).map_err(|e| format!("board {}: {e}", desc.name))?;
    info!(board = %desc.name, fxs = board.fxs.len(), fxo = board.fxo.len(), "line card up");
    Ok(board)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
