//! The web UI in a real headless browser: Debian's `chromium`, driven
//! through `chromedriver` by W3C WebDriver (a small synchronous client
//! below: JSON over HTTP to the driver on 127.0.0.1). The device's
//! certificate is self-signed: the session accepts insecure certificates.
//!
//! The flow an installer goes through: the first login with the initial
//! password forces a change; a call placed by linesim shows on the dashboard
//! and then in the call log with its cause; a trunk edited in its form
//! re-registers, bad input is shown next to its field and changes nothing; a
//! packet capture started and stopped on the diagnostics page is downloaded
//! and tshark reads it; `test route` answers; a cross-site form POST, a form
//! without its CSRF token, a read-only user's change and a login after the
//! rate limit are refused. Screenshots of the main pages go to
//! `<target>/hil-screenshots/`.
//!
//! Skipped (with a message) when `chromedriver` is not installed, unless
//! `CI` is set: then it must run.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{GwOptions, World};
use linesim::plans;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
}

/// One HTTP/1.1 request to the driver; the JSON answer's `value`.
fn driver_call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = TcpStream::connect(addr).map_err(|e| format!("chromedriver: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    // The driver may keep the connection open: read the head, then exactly the body.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let complete = |raw: &[u8]| -> Option<Vec<u8>> {
        let at = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..at]).to_lowercase();
        let body = &raw[at + 4..];
        if head.contains("transfer-encoding: chunked") {
            let mut out = Vec::new();
            let mut rest = body;
            loop {
                let eol = rest.windows(2).position(|w| w == b"\r\n")?;
                let len = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16).ok()?;
                if len == 0 {
                    return Some(out);
                }
                if rest.len() < eol + 2 + len + 2 {
                    return None;
                }
                out.extend_from_slice(&rest[eol + 2..eol + 2 + len]);
                rest = &rest[eol + 2 + len + 2..];
            }
        }
        let len = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok())?;
        (body.len() >= len).then(|| body[..len].to_vec())
    };
    let payload = loop {
        if let Some(p) = complete(&raw) {
            break p;
        }
        let n = s.read(&mut buf).map_err(|e| format!("chromedriver answer: {e}"))?;
        if n == 0 {
            return Err(format!("chromedriver closed mid-answer: {}", String::from_utf8_lossy(&raw)));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let v: Value = serde_json::from_slice(&payload).map_err(|e| format!("driver JSON: {e}: {}", String::from_utf8_lossy(&payload)))?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if let Some(err) = value.get("error").and_then(Value::as_str) {
        return Err(format!("{err}: {}", value.get("message").and_then(Value::as_str).unwrap_or("")));
    }
    Ok(value)
}

/// A chromedriver process and one browser session.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    base: String,
    shots: PathBuf,
    pub downloads: tempfile::TempDir,
}

impl Browser {
    fn start(chromedriver: &Path, base: String) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let t0 = Instant::now();
        while driver_call(addr, "GET", "/status", None).map(|v| v["ready"] != json!(true)).unwrap_or(true) {
            assert!(t0.elapsed() < Duration::from_secs(30), "chromedriver did not become ready");
            std::thread::sleep(Duration::from_millis(200));
        }
        let downloads = tempfile::Builder::new().prefix("hil-browser-dl-").tempdir().unwrap();
        let mut options = json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000"],
            "prefs": {
                "download.default_directory": downloads.path().to_str().unwrap(),
                "download.prompt_for_download": false,
                "safebrowsing.enabled": false
            }
        });
        if let Some(bin) = find_in_path("chromium") {
            options["binary"] = json!(bin.to_str().unwrap());
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"acceptInsecureCerts": true, "goog:chromeOptions": options}}});
        let v = driver_call(addr, "POST", "/session", Some(&caps)).expect("a browser session");
        let session = v["sessionId"].as_str().expect("a session id").to_string();
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).unwrap();
        let mut b = Browser { driver, addr, session, base, shots, downloads };
        b.call("POST", "/timeouts", json!({"pageLoad": 60000, "script": 30000})).unwrap();
        b.session = b.session.clone();
        b
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let body = if method == "GET" || method == "DELETE" { None } else { Some(&body) };
        driver_call(self.addr, method, &format!("/session/{}{path}", self.session), body)
    }

    fn goto(&self, path: &str) {
        let url = if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.base) };
        self.call("POST", "/url", json!({ "url": url })).unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", Value::Null).unwrap().as_str().unwrap_or("").to_string()
    }

    fn path(&self) -> String {
        let url = self.url();
        url.strip_prefix(&self.base).map(str::to_string).unwrap_or(url)
    }

    fn source(&self) -> String {
        self.call("GET", "/source", Value::Null).unwrap().as_str().unwrap_or("").to_string()
    }

    /// The page's visible text.
    fn text(&self) -> String {
        self.exec("return document.body ? document.body.innerText : '';", json!([])).as_str().unwrap_or("").to_string()
    }

    fn find(&self, css: &str) -> String {
        let v = self
            .call("POST", "/element", json!({"using": "css selector", "value": css}))
            .unwrap_or_else(|e| panic!("no {css} on {}: {e}\n{}", self.url(), self.text()));
        v[ELEMENT].as_str().unwrap().to_string()
    }

    fn exists(&self, css: &str) -> bool {
        self.call("POST", "/elements", json!({"using": "css selector", "value": css}))
            .map(|v| v.as_array().is_some_and(|a| !a.is_empty()))
            .unwrap_or(false)
    }

    fn fill(&self, css: &str, value: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/clear"), json!({})).unwrap();
        self.call("POST", &format!("/element/{e}/value"), json!({ "text": value })).unwrap();
    }

    /// Chooses `file` in a file input.
    fn choose_file(&self, css: &str, file: &Path) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/value"), json!({ "text": file.to_str().unwrap() })).unwrap();
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/click"), json!({})).unwrap_or_else(|err| panic!("click {css}: {err}"));
    }

    fn exec(&self, script: &str, args: Value) -> Value {
        self.call("POST", "/execute/sync", json!({"script": script, "args": args})).unwrap_or_else(|e| panic!("script: {e}"))
    }

    fn wait_text(&self, what: &str, within: Duration, f: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let t = self.text();
            if f(&t) {
                return t;
            }
            assert!(t0.elapsed() < within, "{what}: not seen within {within:?} on {}:\n{t}", self.url());
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn screenshot(&self, name: &str) {
        use base64::Engine;
        let png = self.call("GET", "/screenshot", Value::Null).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), bytes).unwrap();
    }

    fn login(&self, user: &str, password: &str) {
        self.goto("/login");
        self.fill("input[name=user]", user);
        self.fill("input[name=password]", password);
        self.click("form[action='/login'] button");
    }

    fn logout(&self) {
        self.click("nav form button");
        self.wait_text("the login page", Duration::from_secs(10), |t| t.contains("Log in"));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.call("DELETE", "", Value::Null);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `<target>/hil-screenshots` (the test binary is `<target>/<profile>/deps/..`).
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    target.join("hil-screenshots")
}

fn initial_password(log: &str) -> String {
    log.lines()
        .find_map(|l| l.split_once("INITIAL PASSWORD for user 'admin' (shown once, to be changed at first login): ").map(|x| x.1.trim().to_string()))
        .expect("the initial password on the console")
}

/// A hostile site on 127.0.0.2: a page whose form posts to the gateway.
fn hostile_site(target: &str) -> (String, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.2:0").expect("127.0.0.2 is on lo");
    let addr = l.local_addr().unwrap();
    let page = format!(
        "<!doctype html><html><body><h1>Win a prize</h1><form method=\"post\" action=\"{target}/trunks\">\
         <input name=\"sip.user_agent\" value=\"Hijacked\"><button id=\"go\">Claim</button></form></body></html>"
    );
    let h = std::thread::spawn(move || {
        for _ in 0..4 {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}", page.len());
        }
    });
    (format!("http://{addr}/"), h)
}

fn wait_file(dir: &Path, ext: &str, within: Duration) -> PathBuf {
    let t0 = Instant::now();
    loop {
        let done = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == ext));
        if let Some(p) = done {
            return p;
        }
        assert!(t0.elapsed() < within, "no .{ext} downloaded into {}", dir.display());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_web_ui_in_a_headless_browser() {
    let Some(chromedriver) = find_in_path("chromedriver") else {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
            panic!("CI is set but chromedriver is not installed (apt-get install chromium chromium-driver)");
        }
        eprintln!("SKIPPED: chromedriver not found (apt-get install chromium chromium-driver); set CI=1 to make this a failure");
        return;
    };
    let far_tone = hil::tone(1400.0, -12.0, 2.0).unwrap();
    let w = World::start(GwOptions { fxs_ports: 1, ..GwOptions::default() }, None, &far_tone);
    let gw = &w.gw;
    let base = format!("https://{}", gw.https);
    let b = Browser::start(&chromedriver, base.clone());
    let original = std::fs::read_to_string(&gw.config_path).unwrap();

    // Without a session, every page leads to the login page.
    b.goto("/");
    b.wait_text("the login page", Duration::from_secs(10), |t| t.contains("Log in"));
    assert!(b.url().starts_with(&format!("{base}/login")), "{}", b.url());
    b.screenshot("login");

    // The first login: the initial password works only to change it.
    b.login("admin", &initial_password(&gw.log()));
    b.wait_text("the forced password change", Duration::from_secs(20), |t| t.contains("Change password"));
    assert_eq!(b.path(), "/password");
    b.screenshot("password");
    b.goto("/trunks");
    assert_eq!(b.path(), "/password", "every page leads to the password change first");
    b.fill("input[name=old]", &initial_password(&gw.log()));
    b.fill("input[name=new]", "site-admin-1");
    b.fill("input[name=again]", "site-admin-1");
    b.click("form[action='/password'] button");
    b.wait_text("the dashboard", Duration::from_secs(20), |t| t.contains("Dashboard") && t.contains("FXS 1"));
    b.screenshot("dashboard");

    // A call placed by linesim: on the dashboard while up, then in the call log with its cause.
    let sim = gw.attach();
    let phone = sim.phone(0);
    phone.off_hook();
    phone.wait_for_tone(&plans::US_DIAL, Duration::from_secs(5)).expect("dial tone");
    phone.dial("2000").unwrap();
    gw.wait_until("the call connected", Duration::from_secs(20), || gw.port_state(1) == "Connected");
    b.goto("/");
    let dash = b.wait_text("the call on the dashboard", Duration::from_secs(10), |t| t.contains("Connected"));
    assert!(dash.contains("2000"), "{dash}");
    // The live plots: drawn by the same-origin script (the CSP lets it run), fed by /api/quality.
    // A figure shown with a value: "jitter: 1.2 ms", not "jitter: -".
    let valued = |t: &str, label: &str| {
        t.split(label).skip(1).any(|rest| rest.trim_start_matches('-').starts_with(|c: char| c.is_ascii_digit()))
    };
    let plots = b.wait_text("the live quality plots", Duration::from_secs(15), |t| {
        t.contains("live, updated") && valued(t, "jitter: ") && valued(t, "loss: ") && valued(t, "level to line: ") && valued(t, "RTP in: ")
    });
    assert!(plots.contains("ERLE"), "{plots}");
    assert!(b.exists("#quality-port-1 svg polyline") && b.exists("#quality-rtp svg"), "{}", b.source());
    std::thread::sleep(Duration::from_millis(4500));
    b.screenshot("dashboard-call");
    phone.on_hook();
    gw.wait_until("the port idle", Duration::from_secs(10), || gw.port_state(1) == "Idle");
    b.goto("/calls");
    let calls = b.wait_text("the call log", Duration::from_secs(10), |t| t.contains("2000") && t.contains("SIP"));
    assert!(calls.contains("16 / SIP 200") && calls.contains("caller"), "cause 16 (normal clearing), released by the phone: {calls}");
    b.screenshot("calls");

    // Diagnostics: start a capture, test a route.
    b.goto("/diag");
    b.click("#capture-start");
    b.wait_text("the capture running", Duration::from_secs(10), |t| t.contains("capture running"));
    b.fill("#number", "2000");
    b.click("#test-route");
    let route = b.wait_text("the route test", Duration::from_secs(10), |t| t.contains("result:"));
    assert!(route.contains("trunk \"default\"") || route.contains("trunk default"), "{route}");
    b.fill("#number", "20a0");
    b.click("#test-route");
    let bad = b.wait_text("the refused number", Duration::from_secs(10), |t| t.contains("number:"));
    assert!(b.exists("#route-err"), "{bad}");
    b.screenshot("diag");

    // Bad input in the trunk form: each error next to its field, nothing saved.
    b.goto("/trunks");
    b.screenshot("trunks");
    b.fill("[name='sip.register_expires']", "99999999");
    b.fill("[name='sip.proxy']", "sip:carrier@@example");
    b.fill("[name='sip.user_agent']", &"x".repeat(65));
    b.click("#save");
    b.wait_text("the field errors", Duration::from_secs(10), |t| t.contains("nothing was changed"));
    for id in ["sip-register_expires-err", "sip-proxy-err", "sip-user_agent-err"] {
        assert!(b.exists(&format!("#{id}")), "{id} next to its field: {}", b.text());
    }
    assert!(b.text().contains("from 0 to 86400") && b.text().contains("not an address"), "{}", b.text());
    b.screenshot("trunks-errors");
    assert_eq!(std::fs::read_to_string(&gw.config_path).unwrap(), original, "bad input changes nothing");
    // Refused by the whole-configuration check (0 < expiry < 60): named too.
    b.goto("/trunks");
    b.fill("[name='sip.register_expires']", "30");
    b.click("#save");
    b.wait_text("the store's refusal", Duration::from_secs(10), |t| t.contains("at least 60"));
    assert!(b.exists("#sip-register_expires-err"));
    assert_eq!(std::fs::read_to_string(&gw.config_path).unwrap(), original);

    // A good edit: saved, applied live, the trunk re-registers.
    let registered = |log: &str| log.lines().filter(|l| l.contains("registered") && l.contains("expires=")).count();
    let before = registered(&gw.log());
    b.goto("/trunks");
    b.fill("[name='sip.register_expires']", "300");
    b.click("#save");
    let saved = b.wait_text("the saved trunk", Duration::from_secs(10), |t| t.contains("saved;"));
    assert!(saved.contains("applied without a restart"), "{saved}");
    gw.wait_until("the trunk re-registered", Duration::from_secs(20), || registered(&gw.log()) > before);
    assert!(std::fs::read_to_string(&gw.config_path).unwrap().contains("register_expires = 300"));

    // The capture holds the new REGISTER: stop, download, tshark reads it.
    b.goto("/diag");
    b.click("#capture-stop");
    b.wait_text("the capture stopped", Duration::from_secs(10), |t| t.contains("capture stopped"));
    b.click("#capture-download");
    let pcap = wait_file(b.downloads.path(), "pcap", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("tshark").arg("-r").arg(&pcap).arg("-Y").arg("sip").output().expect("tshark runs");
    let decoded = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && decoded.contains("REGISTER"), "tshark on {}: {decoded}\n{}", pcap.display(), String::from_utf8_lossy(&out.stderr));

    // A form without its CSRF token: refused, nothing saved.
    let now = std::fs::read_to_string(&gw.config_path).unwrap();
    b.goto("/ports");
    b.screenshot("ports");
    b.exec("document.querySelector('form[action=\"/ports\"] input[name=csrf]').remove();", json!([]));
    b.fill("[name='fxs[0].number']", "1999");
    b.click("#save");
    b.wait_text("the CSRF refusal", Duration::from_secs(10), |t| t.contains("form token"));
    assert_eq!(std::fs::read_to_string(&gw.config_path).unwrap(), now, "no token, no change");

    // Import: a truncated export and a file that is not UTF-8 are refused
    // next to the file field, nothing changes; the whole export goes back in.
    b.goto("/config/import");
    b.click("#export");
    let exported = wait_file(b.downloads.path(), "toml", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let export = std::fs::read_to_string(&exported).unwrap();
    assert!(export.contains("register_expires = 300") && export.contains("password = \"********\""), "{export}");
    let files = tempfile::Builder::new().prefix("hil-browser-up-").tempdir().unwrap();
    let cut = files.path().join("cut.toml");
    std::fs::write(&cut, &export[..export.find("[media]").unwrap() + 12]).unwrap();
    let latin1 = files.path().join("latin1.toml");
    std::fs::write(&latin1, b"[system]\ncountry = \"D\xC9\"\n").unwrap();
    // (A truncated file is named by its line, or by the field it lacks.)
    for (file, words) in [(&cut, "line |missing field"), (&latin1, "not UTF-8 text (line 2")] {
        b.choose_file("#file", file);
        b.click("#import");
        b.wait_text("the import refused", Duration::from_secs(10), |t| words.split('|').any(|w| t.contains(w)));
        assert!(b.exists("#file-err"), "{}", b.text());
        assert_eq!(std::fs::read_to_string(&gw.config_path).unwrap(), now, "a bad import changes nothing");
    }
    b.screenshot("import-refused");

    // A cross-site form POST from a hostile page: refused.
    let (evil, _site) = hostile_site(&base);
    b.goto(&evil);
    b.click("#go");
    b.wait_text("the cross-site refusal", Duration::from_secs(10), |t| t.contains("refused"));
    b.screenshot("cross-site-refused");
    assert_eq!(std::fs::read_to_string(&gw.config_path).unwrap(), now, "a hostile page changes nothing");

    // A read-only user: the forms are read-only, a forged change is refused.
    b.goto("/routes");
    b.screenshot("routes");
    b.goto("/accounts");
    b.fill("form:has(input[value='add']) input[name=name]", "viewer");
    b.fill("form:has(input[value='add']) input[name=password]", "viewer-pass-1");
    b.exec("document.querySelector('form:has(input[value=\"add\"]) select[name=role]').value = 'read-only';", json!([]));
    b.click("form:has(input[value='add']) button");
    b.wait_text("the new user", Duration::from_secs(20), |t| t.contains("added viewer"));
    b.logout();
    b.login("viewer", "viewer-pass-1");
    b.wait_text("the viewer's password change", Duration::from_secs(20), |t| t.contains("Change password"));
    b.fill("input[name=old]", "viewer-pass-1");
    b.fill("input[name=new]", "viewer-pass-2");
    b.fill("input[name=again]", "viewer-pass-2");
    b.click("form[action='/password'] button");
    b.wait_text("the viewer's dashboard", Duration::from_secs(20), |t| t.contains("FXS 1"));
    b.goto("/trunks");
    assert!(!b.exists("#save") && b.text().contains("Read-only account"), "{}", b.text());
    b.exec(
        "const f = document.createElement('form'); f.method = 'post'; f.action = '/trunks';\
         for (const [k, v] of [['csrf', document.querySelector('nav input[name=csrf]').value], ['sip.user_agent', 'Viewer-was-here']]) {\
           const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); }\
         document.body.appendChild(f); f.submit();",
        json!([]),
    );
    b.wait_text("the read-only refusal", Duration::from_secs(10), |t| t.contains("read-only"));
    assert!(b.text().contains("Your account is read-only"), "{}", b.text());
    assert_eq!(std::fs::read_to_string(&gw.config_path).unwrap(), now, "a read-only user changes nothing");
    b.logout();

    // Wrong passwords: after the free ones even the right one waits.
    for _ in 0..4 {
        b.login("admin", "guess-guess");
        b.wait_text("a refused login", Duration::from_secs(20), |t| t.contains("Log in") && (t.contains("wrong") || t.contains("Wrong") || t.contains("Too many")));
    }
    b.login("admin", "site-admin-1");
    b.wait_text("the rate limit", Duration::from_secs(20), |t| t.contains("Too many failed logins"));
    assert_eq!(b.path(), "/login");
    b.screenshot("rate-limited");
    eprintln!("screenshots in {}", screenshot_dir().display());
}
