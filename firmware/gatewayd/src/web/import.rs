//! `/config/import`: configuration import (a file upload), export (the
//! running configuration as a file, secrets masked) and rollback to the
//! previous file.
//!
//! An upload is checked before anything else is touched: at most
//! [`MAX_IMPORT`] bytes, UTF-8, TOML that parses (a truncated file is
//! named by its line), a valid configuration; then saved and applied as
//! `config commit` does. Every error is shown next to the file field and
//! changes nothing. Masked secrets (`********`, as exported) keep their
//! running values.

use std::collections::HashMap;

use super::*;

pub const MAX_IMPORT: usize = 256 * 1024;

/// A `multipart/form-data` body: each part's name and bytes. `None` when
/// the body is not one (no boundary, no parts, a part without a name).
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Option<HashMap<String, Vec<u8>>> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty() && b.len() <= 200)?;
    let delimiter = format!("--{boundary}").into_bytes();
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let mut rest = &body[find(body, &delimiter)? + delimiter.len()..];
    let mut out = HashMap::new();
    loop {
        if rest.starts_with(b"--") {
            return Some(out);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..head_end]).ok()?;
        let name = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?
            .split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("name="))?
            .trim_matches('"')
            .to_string();
        let content = &rest[head_end + 4..];
        let mut end_marker = b"\r\n".to_vec();
        end_marker.extend_from_slice(&delimiter);
        let end = find(content, &end_marker)?;
        out.insert(name, content[..end].to_vec());
        rest = &content[end + end_marker.len()..];
    }
}

fn render(s: &Session, error: Option<&str>, message: &str) -> Html<String> {
    let editable = s.role.may_change();
    let err = error.map(|e| format!(" <span class=err id=\"file-err\">{}</span>", escape(e))).unwrap_or_default();
    let forms = if editable {
        format!(
            "<h2>Import</h2><form method=\"post\" action=\"/config/import\" enctype=\"multipart/form-data\">{c}\
             <p><label for=\"file\">Configuration file (TOML, as exported)</label> <input type=\"file\" id=\"file\" name=\"file\" accept=\".toml,text/plain\"{inv}>{err}</p>\
             <p><button id=\"import\">Check, save and apply</button></p></form>\
             <h2>Roll back</h2><form method=\"post\" action=\"/config/rollback\">{c}<p>Restores the file the last change replaced (kept as <code>.prev</code>). \
             <button id=\"rollback\">Roll back</button></p></form>",
            c = csrf_field(s),
            inv = if error.is_some() { " aria-invalid=\"true\"" } else { "" },
        )
    } else {
        "<p>Read-only account: export only.</p>".to_string()
    };
    page_html(
        "Import, export, roll back",
        Some(s),
        &format!("{message}<h2>Export</h2><p><a id=\"export\" href=\"/config/export\" download=\"gatewayd.toml\">Download the running configuration</a> (secrets masked: imported back, they keep their values).</p>{forms}"),
    )
}

pub async fn page(State(web): State<Web>, headers: HeaderMap) -> Response {
    match session(&web, &headers, false) {
        Ok((_, s)) => render(&s, None, "").into_response(),
        Err(r) => r,
    }
}

pub async fn export(State(web): State<Web>, headers: HeaderMap) -> Response {
    if let Err(r) = session(&web, &headers, false) {
        return r;
    }
    (
        [
            (header::CONTENT_TYPE, "application/toml; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"gatewayd.toml\""),
        ],
        web.ctx.store().show_running(),
    )
        .into_response()
}

/// What is wrong with an uploaded file, before it is parsed as TOML.
pub fn check_upload(bytes: &[u8]) -> Result<&str, String> {
    if bytes.is_empty() {
        return Err("choose a file: the upload is empty".into());
    }
    if bytes.len() > MAX_IMPORT {
        return Err(format!("the file is {} bytes; at most {MAX_IMPORT}", bytes.len()));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        format!("not UTF-8 text (line {line}, byte {}): is it the exported TOML file?", e.valid_up_to())
    })
}

pub async fn post(State(web): State<Web>, ConnectInfo(Peer(peer)): ConnectInfo<Peer>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(parts) = parse_multipart(content_type, &body) else {
        return (StatusCode::BAD_REQUEST, "expected a multipart/form-data upload\n").into_response();
    };
    let (_, s) = match authorize(&web, &headers, &super::forms::text_fields(&parts), true, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let file = parts.get("file").map(Vec::as_slice).unwrap_or(&[]);
    let text = match check_upload(file) {
        Ok(t) => t,
        Err(e) => return (StatusCode::UNPROCESSABLE_ENTITY, render(&s, Some(&e), "")).into_response(),
    };
    let (code, message) = commit_config(&web, &s.user, peer.ip(), text);
    if code != StatusCode::OK {
        return (code, render(&s, Some(message.trim_start_matches("error: ")), "")).into_response();
    }
    web.audit(&s.user, peer.ip(), "config.import", &format!("{} bytes", file.len()));
    render(&s, None, &format!("<p class=ok id=\"message\">Imported: {}</p>", escape(&message))).into_response()
}

pub async fn rollback(
    State(web): State<Web>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (_, s) = match authorize(&web, &headers, &form, true, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let result = web.ctx.store().rollback(1);
    match result {
        Ok(saved) => {
            web.audit(&s.user, peer.ip(), "config.rollback", &saved.path.display().to_string());
            info!(user = %s.user, "configuration rolled back from the web UI");
            let (how, restart) = web.ctx.apply_saved(saved.config);
            let again = if restart { " (log in again)" } else { "" };
            render(&s, None, &format!("<p class=ok id=\"message\">Rolled back: {}{again}</p>", escape(&how))).into_response()
        }
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, render(&s, None, &format!("<p class=err id=\"message\">{}</p>", escape(&e.to_string())))).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_bodies_parse_and_garbage_is_refused() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n--XyZ\r\n\
            Content-Disposition: form-data; name=\"file\"; filename=\"a.toml\"\r\nContent-Type: application/octet-stream\r\n\r\n\
            x = 1\r\n\xff\r\n--XyZ--\r\n";
        let parts = parse_multipart("multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(parts["csrf"], b"abc");
        assert_eq!(parts["file"], b"x = 1\r\n\xff");
        assert!(parse_multipart("multipart/form-data", body).is_none(), "no boundary");
        assert!(parse_multipart("multipart/form-data; boundary=Other", body).is_none());
        assert!(parse_multipart("multipart/form-data; boundary=XyZ", b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\ncut").is_none(), "truncated");
        assert!(parse_multipart("multipart/form-data; boundary=XyZ", b"").is_none());
    }

    #[test]
    fn uploads_must_be_utf8_and_bounded() {
        assert!(check_upload(b"").unwrap_err().contains("empty"));
        assert!(check_upload(b"a = 1\nb = \"\xc3\x28\"\n").unwrap_err().contains("line 2"));
        assert!(check_upload(&vec![b'#'; MAX_IMPORT + 1]).unwrap_err().contains("at most"));
        assert_eq!(check_upload(b"a = 1\n"), Ok("a = 1\n"));
    }
}
