//! `/diag`: diagnostics. `test route` (what a call would do, without
//! placing it: any account), ringing an idle FXS port without a call (admin
//! accounts, as `test port N ring`), and the packet capture of SIP and RTP (start,
//! stop, download as pcap: admin accounts, it holds voice).

use super::*;

const WORD_MAX: usize = 32;

fn capture_section(web: &Web, s: &Session) -> String {
    let status = web.ctx.capture.status();
    let mut out = format!("<h2>Packet capture</h2><p id=\"capture-status\">{}</p>", escape(&status.to_string()));
    if s.role.may_change() {
        let c = csrf_field(s);
        out.push_str(&format!(
            "<form method=\"post\" action=\"/diag\">{c}<input type=\"hidden\" name=\"action\" value=\"capture-start\"><button id=\"capture-start\">Start</button></form> \
             <form method=\"post\" action=\"/diag\">{c}<input type=\"hidden\" name=\"action\" value=\"capture-stop\"><button id=\"capture-stop\">Stop</button></form>"
        ));
        if status.packets > 0 || status.bytes > 0 {
            out.push_str("<p><a id=\"capture-download\" href=\"/api/capture.pcap\" download=\"gatewayd.pcap\">Download the capture (pcap)</a></p>");
        }
    } else {
        out.push_str("<p>Captures are for admin accounts.</p>");
    }
    out
}

fn ring_section(web: &Web, s: &Session) -> String {
    if !s.role.may_change() {
        return String::new();
    }
    let options: String = snapshot(&web.ctx.status)
        .ports
        .iter()
        .map(|p| format!("<option value=\"{}\">FXS {} ({}, {})</option>", p.port, p.port, escape(&p.number), escape(&p.state)))
        .collect();
    format!(
        "<h2>Ring a phone</h2><form method=\"post\" action=\"/diag\">{}<input type=\"hidden\" name=\"action\" value=\"ring-port\">\
         <label for=\"port\">Port</label> <select id=\"port\" name=\"port\">{options}</select> \
         <label for=\"secs\">Seconds</label> <input id=\"secs\" name=\"secs\" value=\"10\" size=\"4\"> <button id=\"ring-port\">Ring</button></form>",
        csrf_field(s)
    )
}

fn render(web: &Web, s: &Session, message: &str, route: &str, from: &str, number: &str) -> Html<String> {
    let sources: Vec<String> = {
        let store = web.ctx.store();
        let config = store.running();
        let mut names: Vec<String> = match config.route_table() {
            Ok((table, _)) => table.groups().iter().map(|g| g.name.clone()).collect(),
            Err(_) => Vec::new(),
        };
        names.extend(config.trunk_names());
        names
    };
    let options: String = sources
        .iter()
        .map(|n| format!("<option{}>{}</option>", if n == from { " selected" } else { "" }, escape(n)))
        .collect();
    let body = format!(
        "{message}<h2>Test a route</h2><form method=\"post\" action=\"/diag\">{}<input type=\"hidden\" name=\"action\" value=\"test-route\">\
         <label for=\"from\">From</label> <select id=\"from\" name=\"from\">{options}</select> \
         <label for=\"number\">Number</label> <input id=\"number\" name=\"number\" value=\"{}\"> <button id=\"test-route\">Test</button></form>{route}{}{}",
        csrf_field(s),
        escape(number),
        ring_section(web, s),
        capture_section(web, s)
    );
    page_html("Diagnostics", Some(s), &body)
}

pub async fn page(State(web): State<Web>, headers: HeaderMap) -> Response {
    match session(&web, &headers, false) {
        Ok((_, s)) => render(&web, &s, "", "", "", "").into_response(),
        Err(r) => r,
    }
}

/// What `test route FROM NUMBER` says, or why the question is wrong.
pub fn test_route(web: &Web, from: &str, number: &str) -> Result<String, String> {
    if number.is_empty() || number.chars().count() > WORD_MAX || !number.chars().all(|c| c.is_ascii_digit() || "*#+".contains(c)) {
        return Err(format!("number: 1 to {WORD_MAX} digits, * # or +"));
    }
    let config = web.ctx.store().running().clone();
    let (table, _) = config.route_table().map_err(|e| format!("the routing table is refused: {e}"))?;
    if !table.is_source(from) {
        return Err(format!("from: {from:?} is neither a group nor a trunk"));
    }
    let mut out = table.trace(from, number, None).to_string();
    out.push('\n');
    for t in &snapshot(&web.ctx.status).trunks {
        out.push_str(&format!("trunk {} is {}\n", t.name, t.state));
    }
    Ok(out)
}

pub async fn post(
    State(web): State<Web>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let action = form.get("action").map(String::as_str).unwrap_or("");
    let change = action != "test-route";
    let (_, s) = match authorize(&web, &headers, &form, change, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let from = form.get("from").map(|s| s.trim()).unwrap_or("");
    let number = form.get("number").map(|s| s.trim()).unwrap_or("");
    match action {
        "test-route" => match test_route(&web, from, number) {
            Ok(text) => render(&web, &s, "", &format!("<pre id=\"route-result\">{}</pre>", escape(&text)), from, number).into_response(),
            Err(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                render(&web, &s, "", &format!("<p class=err id=\"route-err\">{}</p>", escape(&e)), from, number),
            )
                .into_response(),
        },
        "ring-port" => {
            let port = form.get("port").map(|s| s.trim()).unwrap_or("");
            let secs = form.get("secs").map(|s| s.trim()).filter(|s| !s.is_empty());
            match web.ctx.test_ring(port, secs) {
                Ok(text) => {
                    web.audit(&s.user, peer.ip(), "port.test-ring", text.trim_end());
                    render(&web, &s, &format!("<p class=ok id=\"ring-result\">{}</p>", escape(&text)), "", "", "").into_response()
                }
                Err(e) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    render(&web, &s, &format!("<p class=err id=\"ring-err\">{}</p>", escape(&e)), "", "", ""),
                )
                    .into_response(),
            }
        }
        "capture-start" => {
            web.ctx.capture.start(crate::capture::DEFAULT_LIMIT);
            web.audit(&s.user, peer.ip(), "capture.start", "SIP and RTP");
            info!(user = %s.user, "packet capture started from the web UI");
            render(&web, &s, "<p class=ok>Capture started.</p>", "", "", "").into_response()
        }
        "capture-stop" => {
            web.ctx.capture.stop();
            web.audit(&s.user, peer.ip(), "capture.stop", &web.ctx.capture.status().to_string());
            render(&web, &s, "<p class=ok>Capture stopped.</p>", "", "", "").into_response()
        }
        _ => (StatusCode::BAD_REQUEST, render(&web, &s, "<p class=err>Unknown action.</p>", "", "", "")).into_response(),
    }
}
