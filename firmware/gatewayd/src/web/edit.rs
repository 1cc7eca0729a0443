//! The pages of the per-field editors ([`super::forms`]): `/ports`,
//! `/trunks`, `/routes`.

use super::forms::{self, Section};
use super::*;

/// Which editor.
#[derive(Clone, Copy)]
pub enum Editor {
    Ports,
    Trunks,
    Routes,
}

impl Editor {
    fn title(self) -> &'static str {
        match self {
            Editor::Ports => "Ports",
            Editor::Trunks => "Trunks",
            Editor::Routes => "Routing table",
        }
    }
    fn path(self) -> &'static str {
        match self {
            Editor::Ports => "/ports",
            Editor::Trunks => "/trunks",
            Editor::Routes => "/routes",
        }
    }
    fn sections(self, config: &crate::config::Config) -> Vec<Section> {
        match self {
            Editor::Ports => forms::ports(config),
            Editor::Trunks => forms::trunks(config),
            Editor::Routes => forms::routes(config),
        }
    }
}

fn render(web: &Web, s: &Session, editor: Editor, outcome: Option<&forms::Outcome>) -> Html<String> {
    let store = web.ctx.store();
    let config = store.running().clone();
    drop(store);
    let table = toml::Table::try_from(&config).unwrap_or_default();
    let sections = editor.sections(&config);
    let editable = s.role.may_change();
    let mut body = String::new();
    if let Some((ok, m)) = outcome.and_then(|o| o.message.as_ref()) {
        body.push_str(&format!("<p class={} id=\"message\">{}</p>", if *ok { "ok" } else { "err" }, escape(m)));
    }
    if sections.is_empty() {
        body.push_str(match editor {
            Editor::Routes => "<p>No <code>[[route]]</code> in the configuration: the implicit table of <code>[sip]</code> and <code>[dialplan]</code> applies (add rules in the <a href=\"/config\">configuration</a>).</p>",
            _ => "<p>Nothing to edit.</p>",
        });
    }
    body.push_str(&format!("<form method=\"post\" action=\"{}\">", editor.path()));
    if editable {
        body.push_str(&csrf_field(s));
    }
    for section in &sections {
        body.push_str(&format!("<fieldset><legend>{}</legend>", escape(&section.title)));
        for f in &section.fields {
            let id = f.id();
            let value = outcome
                .and_then(|o| o.submitted.get(&f.path).cloned())
                .unwrap_or_else(|| forms::shown(f, forms::lookup(&table, &f.path)));
            let kind = if matches!(f.kind, forms::Kind::Secret) { " type=\"password\" autocomplete=\"new-password\" placeholder=\"unchanged\"" } else { "" };
            let error = outcome.and_then(|o| o.errors.get(&f.path));
            body.push_str(&format!(
                "<p><label for=\"{id}\">{}</label> <input id=\"{id}\" name=\"{}\" value=\"{}\" size=\"40\"{kind}{}{}>{}</p>",
                escape(f.label),
                escape(&f.path),
                escape(&value),
                if editable { "" } else { " readonly" },
                if error.is_some() { " aria-invalid=\"true\"" } else { "" },
                error.map(|e| format!(" <span class=err id=\"{id}-err\">{}</span>", escape(e))).unwrap_or_default()
            ));
        }
        if !section.note.is_empty() {
            body.push_str(&format!("<p>{}</p>", escape(&section.note)));
        }
        body.push_str("</fieldset>");
    }
    if editable && !sections.is_empty() {
        body.push_str("<p><button id=\"save\">Check, save and apply</button></p>");
    } else if !editable {
        body.push_str("<p>Read-only account: viewing only.</p>");
    }
    body.push_str("</form><p>Changes are checked, saved like <code>config commit</code> and applied live where they can be; an error is shown next to its field and nothing changes.</p>");
    page_html(editor.title(), Some(s), &body)
}

pub async fn page(State(web): State<Web>, headers: HeaderMap, editor: Editor) -> Response {
    match session(&web, &headers, false) {
        Ok((_, s)) => render(&web, &s, editor, None).into_response(),
        Err(r) => r,
    }
}

pub async fn post(web: Web, peer: SocketAddr, headers: HeaderMap, body: axum::body::Bytes, editor: Editor) -> Response {
    let form = forms::parse_form(&body);
    let (_, s) = match authorize(&web, &headers, &forms::text_fields(&form), true, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let store = web.ctx.store();
    let sections = editor.sections(store.running());
    let (mut outcome, saved) = forms::submit(&store, &sections, &form);
    drop(store);
    if let Some((config, diff)) = saved {
        web.audit(&s.user, peer.ip(), "config.commit", &format!("{}: {}", editor.path(), diff.join("; ")));
        info!(user = %s.user, page = editor.path(), "configuration saved from the web UI");
        let (how, restart) = web.ctx.apply_saved(config);
        let again = if restart { " (log in again)" } else { "" };
        outcome.message = Some((true, format!("saved; {how}{again}")));
        outcome.submitted.clear();
    }
    (outcome.code, render(&web, &s, editor, Some(&outcome))).into_response()
}
