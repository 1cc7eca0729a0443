//! The installer's ISDN view in the web UI: `GET /isdn` (a page) and
//! `GET /api/isdn` (JSON), for every logged-in user, read-only ones too.
//! Each span's layer 1 (state, E1 alarms), layer 2 (Q.921 state, TEI),
//! counters and B-channels (with the call on each busy one), as `show isdn`
//! on the console, and the last
//! D-channel frames decoded as `debug isdn` prints them
//! ([`crate::isdn_debug`]). Nothing here changes anything.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{escape, page_with_head, session, Web};
use crate::isdn::SpanStatus;
use crate::isdn_debug::FrameView;

/// `GET /api/isdn`.
#[derive(Debug, Serialize)]
pub struct IsdnView {
    pub spans: Vec<SpanStatus>,
    /// The last frames of these spans, oldest first.
    pub frames: Vec<FrameView>,
}

fn view(web: &Web) -> IsdnView {
    let spans = web.ctx.status.lock().unwrap_or_else(|p| p.into_inner()).isdn.clone();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    // No span configured: no frames either (the hub is shared by the process).
    let frames = if names.is_empty() {
        Vec::new()
    } else {
        crate::isdn_debug::hub().recent(&names).iter().map(|f| f.view()).collect()
    };
    IsdnView { spans, frames }
}

pub(super) async fn api_isdn(State(web): State<Web>, headers: HeaderMap) -> Response {
    if let Err(r) = session(&web, &headers, false) {
        return r;
    }
    axum::Json(view(&web)).into_response()
}

fn state_class(good: bool) -> &'static str {
    if good {
        "ok"
    } else {
        "err"
    }
}

/// The page's body (without the frame).
pub fn render(v: &IsdnView) -> String {
    let mut out = String::from("<p>Refreshed every 5 s. The same as <code>show isdn</code> and <code>debug isdn</code> on the console; JSON at <a href=\"/api/isdn\">/api/isdn</a>.</p>");
    if v.spans.is_empty() {
        out.push_str("<p>No ISDN span is configured (<code>[[span]]</code> in the configuration).</p>");
        return out;
    }
    for p in &v.spans {
        let c = &p.counters;
        let l1_up = p.l1 == "activated";
        let alarms_ok = p.alarms == "none" || p.alarms.is_empty();
        out.push_str(&format!(
            "<h2>Span {} ({})</h2><table>\
             <tr><th>Interface</th><td>{} {} {}, {}, clock {}</td></tr>\
             <tr><th>Layer 1</th><td class={}>{}</td></tr>\
             <tr><th>Alarms</th><td class={}>{}</td></tr>\
             <tr><th>Layer 2</th><td class={}>{}{}</td></tr>\
             <tr><th>TEI</th><td>{}</td></tr>{}</table>",
            escape(&p.name),
            escape(&p.label),
            escape(&p.kind.to_uppercase()),
            escape(&p.role.to_uppercase()),
            escape(&p.mode.to_uppercase()),
            escape(&p.switch),
            escape(&p.clock),
            state_class(l1_up),
            escape(&p.l1),
            state_class(alarms_ok),
            escape(&p.alarms),
            state_class(p.l2_up),
            escape(&p.l2),
            if p.l2_up { "" } else { " (down)" },
            p.tei,
            p.capture.as_deref().map(|c| format!("<tr><th>Capture</th><td>{}</td></tr>", escape(c))).unwrap_or_default(),
        ));
        out.push_str("<h3>Counters</h3><table>");
        for (name, n) in [
            ("frames in", c.frames_in),
            ("frames out", c.frames_out),
            ("bad FCS", c.bad_fcs),
            ("malformed", c.malformed),
            ("retransmitted", c.retransmitted),
            ("Q.931 in", c.q931_in),
            ("Q.931 not parsed", c.q931_bad),
            ("layer 1 changes", c.l1_changes),
            ("layer 1 lost", c.l1_losses),
            ("layer 2 up", c.l2_establishments),
            ("layer 2 lost", c.l2_losses),
            ("MDL errors", c.mdl_errors),
        ] {
            out.push_str(&format!("<tr><th>{name}</th><td>{n}</td></tr>"));
        }
        out.push_str("</table><h3>B-channels</h3><table><tr><th>Channel</th><th>PCM timeslot</th><th>State</th><th>Call</th></tr>");
        for b in &p.b_channels {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                b.number,
                b.timeslot,
                escape(&b.state),
                escape(b.call.as_deref().unwrap_or(""))
            ));
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Last D-channel frames</h2>");
    if v.frames.is_empty() {
        out.push_str("<p>None yet.</p>");
    }
    for f in v.frames.iter().rev() {
        out.push_str(&format!(
            "<details><summary><code>{} {} {:<3} {}</code></summary><pre>{}\n{}</pre></details>",
            escape(&f.time),
            escape(&f.span),
            f.dir,
            escape(&f.summary),
            escape(&f.details.join("\n")),
            escape(&f.hex),
        ));
    }
    out
}

pub(super) async fn isdn_page(State(web): State<Web>, headers: HeaderMap) -> Response {
    let (_, s) = match session(&web, &headers, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    page_with_head("ISDN", Some(&s), &render(&view(&web)), "<meta http-equiv=\"refresh\" content=\"5\">").into_response()
}
