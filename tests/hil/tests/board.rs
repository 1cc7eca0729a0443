//! The reference board (`board/rpi4-fxs-fxo`, wiring in `tests/hil/WIRING.md`):
//! its devices open, its chips answer on their chip selects, its PCM
//! highway runs at the rt frame.
//!
//! These tests run **on the board** (the test binary cross-built for
//! aarch64 and copied over, see WIRING.md) with `HIL_BOARD=rpi4-fxs-fxo` in
//! the environment. Without `HIL_BOARD` no board is attached: every test
//! prints why it is skipped and passes, which is what `tools/test` sees on a
//! build machine.

use std::time::{Duration, Instant};

use embedded_hal::digital::OutputPin;
use embedded_hal::spi::{Operation, SpiDevice};
use gw_board::{BoardDesc, ChipModel};
use gw_hal::PcmBus;

/// The attached board's description, or `None` (and a printed reason).
fn attached(test: &str) -> Option<BoardDesc> {
    let Ok(name) = std::env::var("HIL_BOARD") else {
        eprintln!(
            "SKIP {test}: no board attached (run on the board with HIL_BOARD=rpi4-fxs-fxo; tests/hil/WIRING.md)"
        );
        return None;
    };
    let installed = format!("/usr/share/gatewayd/boards/{name}/board.toml");
    let desc = match name.as_str() {
        "rpi4-fxs-fxo" => gw_board::rpi4_fxs_fxo(),
        _ => {
            let text = std::fs::read_to_string(&installed)
                .unwrap_or_else(|e| panic!("HIL_BOARD={name}: no {installed}: {e}"));
            gw_board::parse(&text).unwrap_or_else(|e| panic!("{installed}: {e}"))
        }
    };
    Some(desc)
}

fn open(desc: &BoardDesc) -> gw_hal_linux::LinuxHardware {
    let map = gw_hal_linux::devices::map_board(desc).expect("board maps to devices");
    gw_hal_linux::open(&map).unwrap_or_else(|e| panic!("board {}: {e}", desc.name))
}

#[test]
fn board_devices_open() {
    let Some(desc) = attached("board_devices_open") else { return };
    let hw = open(&desc);
    assert_eq!(hw.spi.len(), desc.chips.len());
    assert_eq!(hw.resets.len(), desc.chips.len());
    assert_eq!(hw.pcm.channels(), usize::from(desc.pcm.as_ref().unwrap().slots));
    hw.irq.stop().expect("interrupt watcher ran");
}

/// Identity registers read over SPI after reset, one byte per chip-select
/// cycle: Si3215 register 11 reads 0x33 and register 1 has bit 7 set (a
/// 3215, not a 3210); Si3050 register 2 reads 0x03 (HARDWARE-NOTES 1.3).
#[test]
fn chips_answer_on_their_chip_selects() {
    let Some(desc) = attached("chips_answer_on_their_chip_selects") else { return };
    let mut hw = open(&desc);
    for r in hw.resets.iter_mut() {
        r.set_high().unwrap(); // asserted (the lines are active-low)
    }
    std::thread::sleep(Duration::from_millis(20));
    for r in hw.resets.iter_mut() {
        r.set_low().unwrap();
    }
    std::thread::sleep(Duration::from_millis(150));
    for (chip, spi) in desc.chips.iter().zip(hw.spi.iter_mut()) {
        let mut v = [0u8];
        match chip.model {
            ChipModel::Si3215 => {
                spi.transaction(&mut [Operation::Write(&[0x80 | 11]), Operation::Read(&mut v)]).unwrap();
                assert_eq!(v[0], 0x33, "{}: Si3215 register 11", chip.name);
                spi.transaction(&mut [Operation::Write(&[0x80 | 1]), Operation::Read(&mut v)]).unwrap();
                assert_ne!(v[0] & 0x80, 0, "{}: register 1 bit 7 (Si3215)", chip.name);
            }
            ChipModel::Si3050 => {
                spi.transaction(&mut [Operation::Write(&[0x60, 2]), Operation::Read(&mut v)]).unwrap();
                assert_eq!(v[0], 0x03, "{}: Si3050 register 2", chip.name);
            }
            other => panic!("no identity check for {other:?}"),
        }
    }
}

/// One second of the highway: 100 exchanges paced at 10 ms, as the rt thread
/// does; the PCM block (clock master) must deliver nearly every period.
#[test]
fn highway_runs_at_the_rt_frame() {
    let Some(desc) = attached("highway_runs_at_the_rt_frame") else { return };
    let mut hw = open(&desc);
    let n = hw.pcm.channels();
    let tx = vec![[0i16; gw_hal::FRAME_SAMPLES]; n];
    let mut rx = vec![[0i16; gw_hal::FRAME_SAMPLES]; n];
    let start = Instant::now();
    let (mut under, mut over) = (0, 0);
    for i in 1..=100u32 {
        let st = hw.pcm.exchange(&tx, &mut rx);
        under += st.rx_underruns;
        over += st.tx_overruns;
        let next = start + Duration::from_millis(10 * u64::from(i));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    println!("highway: 100 periods, {under} channel underruns, {over} channel overruns, {} xruns", hw.pcm.xruns());
    assert!(under <= 4 * n as u32, "{under} underruns in 100 periods");
    assert!(over <= 4 * n as u32, "{over} overruns in 100 periods");
}

/// The whole line card through the drivers, as gatewayd opens it
/// (`gw_hal_linux::linecard::open_board`): every port's chip resets,
/// identifies, powers up (the SLIC's DC-DC and battery), calibrates, links
/// (the DAA's line side) and takes the board's PCM slot; then its ports are
/// polled for a second as the control plane does (each poll ticks the driver).
#[test]
fn line_card_initialises_through_the_drivers() {
    let Some(desc) = attached("line_card_initialises_through_the_drivers") else { return };
    let country = gw_hal::chips::si3050::country::Country::Fcc;
    let mut board =
        gw_hal_linux::linecard::open_board(&desc, country).unwrap_or_else(|e| panic!("board {}: {e}", desc.name));
    assert_eq!((board.fxs.len(), board.fxo.len()), (desc.fxs_count(), desc.fxo_count()));
    assert_eq!(board.pcm.channels(), usize::from(desc.pcm.as_ref().unwrap().slots));
    let start = Instant::now();
    let mut events = Vec::new();
    while start.elapsed() < Duration::from_secs(1) {
        for p in board.fxs.iter_mut() {
            events.extend(p.poll_event().map(|e| format!("{e:?}")));
        }
        for p in board.fxo.iter_mut() {
            events.extend(p.poll_event().map(|e| format!("{e:?}")));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for (i, p) in board.fxo.iter().enumerate() {
        println!("FXO {}: {:?}", i + 1, p.line_status());
    }
    println!("events in the first second (none expected on idle lines): {events:?}");
    assert_eq!(board.fxs.iter().map(|p| p.hook()).collect::<Vec<_>>(), vec![gw_hal::HookState::OnHook; board.fxs.len()]);
}

/// gatewayd itself on the board (`gatewayd --board NAME`, the binary from
/// `GATEWAYD_BIN`, default `/usr/bin/gatewayd`): it opens the line card and
/// prints its banner. Stop the image's own gatewayd first
/// (`/etc/init.d/S60gatewayd stop`): the GPIO lines can be requested once.
#[test]
fn gatewayd_starts_on_the_board() {
    use std::io::BufRead;
    let Some(desc) = attached("gatewayd_starts_on_the_board") else { return };
    let bin = std::env::var_os("GATEWAYD_BIN").unwrap_or_else(|| "/usr/bin/gatewayd".into());
    let mut child = std::process::Command::new(&bin)
        .args(["--board", &desc.name])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", std::path::Path::new(&bin).display()));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let want = format!("on board '{}'", desc.name);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) if l.contains(&want) => {
                seen.push(l);
                break;
            }
            Ok(l) => seen.push(l),
            Err(_) if child.try_wait().ok().flatten().is_some() => break,
            Err(_) => {}
        }
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        seen.iter().any(|l| l.contains(&want)),
        "no banner {want:?}; stdout {seen:?}; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
