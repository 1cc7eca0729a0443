//! Per-field editors of the ports (`/ports`), the trunks (`/trunks`) and the
//! routing table (`/routes`).
//!
//! Each page is a list of [`Field`]s, one per configuration key (a store
//! path such as `fxs[0].number` or `sip.register_expires`). A POST is
//! checked field by field first (whole numbers in range, addresses that
//! parse, lengths, printable one-line text, valid UTF-8: the body is decoded
//! by [`parse_form`] into bytes, so bad bytes are this field's error, not a
//! refused request); then the changed fields are set on a candidate of the
//! running configuration and committed as `config commit` does, so the
//! whole-configuration checks apply too. Any error is shown next to the
//! field it names (the store's errors name the key) and nothing changes.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::http::StatusCode;

/// What a field holds and how its text is checked.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A whole number in `min..=max`; `optional`: empty removes the key.
    Int { min: i64, max: i64, optional: bool },
    /// One line of text, at most `max` characters, checked by `check`.
    Text { max: usize, optional: bool, check: fn(&str) -> Result<(), String> },
    /// `address:port`.
    Addr,
    /// A comma-separated list of short items, each checked by `check`.
    List { check: fn(&str) -> Result<(), String> },
    /// A secret: never shown; empty keeps the current one.
    Secret,
}

#[derive(Clone, Debug)]
pub struct Field {
    /// The store path (`fxs[0].number`), also the form field's name.
    pub path: String,
    pub label: &'static str,
    pub kind: Kind,
}

impl Field {
    fn new(path: impl Into<String>, label: &'static str, kind: Kind) -> Field {
        Field { path: path.into(), label, kind }
    }

    /// The HTML id of the input (its error's id is this and `-err`).
    pub fn id(&self) -> String {
        self.path.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' }).collect()
    }
}

/// A group of fields on a page (a port, a trunk, a rule).
pub struct Section {
    pub title: String,
    pub fields: Vec<Field>,
    /// Read-only text shown under the fields (e.g. a rule's destinations).
    pub note: String,
}

pub const MAX_ITEMS: usize = 32;
pub const MAX_ITEM_LEN: usize = 32;

fn text(max: usize, optional: bool, check: fn(&str) -> Result<(), String>) -> Kind {
    Kind::Text { max, optional, check }
}

fn any(_: &str) -> Result<(), String> {
    Ok(())
}

fn digits(s: &str) -> Result<(), String> {
    if s.chars().all(|c| c.is_ascii_digit() || "*#+".contains(c)) {
        Ok(())
    } else {
        Err("only digits, * # and +".into())
    }
}

fn word(s: &str) -> Result<(), String> {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        Ok(())
    } else {
        Err("only letters, digits, - _ and .".into())
    }
}

fn host(s: &str) -> Result<(), String> {
    if s.starts_with(['-', '.']) || !s.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c)) {
        Err("must be a host name or address (e.g. sip.example.net or 192.0.2.10), not a URI".into())
    } else {
        Ok(())
    }
}

fn pattern(s: &str) -> Result<(), String> {
    if s.chars().all(|c| c.is_ascii_graphic() && c != ',' && c != '"') {
        Ok(())
    } else {
        Err(format!("{s:?} is not a pattern (e.g. 2xxx, 9., exact:911, prefix:00)"))
    }
}

/// The fields of `/ports`.
pub fn ports(config: &crate::config::Config) -> Vec<Section> {
    config
        .fxs
        .iter()
        .enumerate()
        .map(|(i, p)| Section {
            title: format!("FXS port {}", p.port),
            fields: vec![
                Field::new(format!("fxs[{i}].number"), "Number", text(MAX_ITEM_LEN, false, digits)),
                Field::new(format!("fxs[{i}].auth_user"), "SIP user (empty: the number)", text(64, true, word)),
                Field::new(format!("fxs[{i}].password"), "SIP password", Kind::Secret),
            ],
            note: String::new(),
        })
        .collect()
}

/// The fields of `/trunks`: the default trunk (`[sip]`), then each `[[trunk]]`.
pub fn trunks(config: &crate::config::Config) -> Vec<Section> {
    let expires = Kind::Int { min: 0, max: 86_400, optional: false };
    let mut out = vec![Section {
        title: "Trunk default ([sip])".into(),
        fields: vec![
            Field::new("sip.proxy", "Registrar / proxy (address:port)", Kind::Addr),
            Field::new("sip.domain", "Domain", text(253, false, host)),
            Field::new("sip.register_expires", "Registration expiry (s, 0 = no registration)", expires),
            Field::new("sip.user_agent", "User-Agent", text(64, false, any)),
            Field::new("sip.password", "Password", Kind::Secret),
        ],
        note: String::new(),
    }];
    for (i, t) in config.trunk.iter().enumerate() {
        out.push(Section {
            title: format!("Trunk {}", t.name),
            fields: vec![
                Field::new(format!("trunk[{i}].proxy"), "Proxy (address:port)", Kind::Addr),
                Field::new(format!("trunk[{i}].domain"), "Domain", text(253, true, host)),
                Field::new(format!("trunk[{i}].username"), "User name", text(64, true, word)),
                Field::new(format!("trunk[{i}].register_expires"), "Registration expiry (s)", expires),
                Field::new(
                    format!("trunk[{i}].options_interval_s"),
                    "OPTIONS interval (s, 0 = none)",
                    Kind::Int { min: 0, max: 3600, optional: false },
                ),
                Field::new(format!("trunk[{i}].password"), "Password", Kind::Secret),
            ],
            note: String::new(),
        });
    }
    out
}

/// The fields of `/routes`: each `[[route]]` (the destinations are shown;
/// they are edited in the configuration document).
pub fn routes(config: &crate::config::Config) -> Vec<Section> {
    config
        .route
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let to: Vec<String> = r
                .to
                .iter()
                .map(|d| {
                    if d.owner {
                        "owner".to_string()
                    } else if let Some(t) = &d.trunk {
                        format!("trunk {t}")
                    } else {
                        format!("group {}", d.group.as_deref().unwrap_or("?"))
                    }
                })
                .collect();
            Section {
                title: format!("Rule {i}{}", r.name.as_deref().map(|n| format!(" \"{n}\"")).unwrap_or_default()),
                fields: vec![
                    Field::new(format!("route[{i}].name"), "Name", text(MAX_ITEM_LEN, true, word)),
                    Field::new(format!("route[{i}].from"), "From (groups and trunks, comma-separated)", Kind::List { check: word }),
                    Field::new(format!("route[{i}].called"), "Called number patterns", Kind::List { check: pattern }),
                    Field::new(format!("route[{i}].strip"), "Strip leading digits", Kind::Int { min: 0, max: 32, optional: false }),
                    Field::new(format!("route[{i}].prefix"), "Then prefix", text(MAX_ITEM_LEN, true, digits)),
                    Field::new(format!("route[{i}].max_calls"), "Simultaneous calls (empty: no limit)", Kind::Int { min: 1, max: 10_000, optional: true }),
                ],
                note: format!("Destinations, in order: {}", to.join(", ")),
            }
        })
        .collect()
}

// ---- values ------------------------------------------------------------------

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        match part.split_once('[') {
            Some((key, rest)) => {
                out.push(Seg::Key(key));
                if let Ok(i) = rest.trim_end_matches(']').parse() {
                    out.push(Seg::Index(i));
                }
            }
            None => out.push(Seg::Key(part)),
        }
    }
    out
}

/// The value at `path` in `table` (the running configuration as TOML).
pub fn lookup<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let mut segs = segments(path).into_iter();
    let Some(Seg::Key(first)) = segs.next() else { return None };
    let mut v = table.get(first)?;
    for s in segs {
        v = match s {
            Seg::Key(k) => v.as_table()?.get(k)?,
            Seg::Index(i) => v.as_array()?.get(i)?,
        };
    }
    Some(v)
}

/// A value as the form shows it.
pub fn shown(field: &Field, v: Option<&toml::Value>) -> String {
    if matches!(field.kind, Kind::Secret) {
        return String::new();
    }
    match v {
        None => String::new(),
        Some(toml::Value::String(s)) => s.clone(),
        Some(toml::Value::Array(a)) => a.iter().map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).collect::<Vec<_>>().join(", "),
        Some(other) => other.to_string(),
    }
}

/// What to do with a field's submitted text.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Keep,
    /// A TOML value for `Candidate::set`.
    Set(String),
    Unset,
}

/// Checks one field's text; `current` is what the form showed.
pub fn check(field: &Field, input: &str, current: &str) -> Result<Change, String> {
    let input = input.trim();
    if input.chars().any(char::is_control) {
        return Err("must be one line of printable text".into());
    }
    let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
    match field.kind {
        Kind::Secret => {
            if input.is_empty() {
                return Ok(Change::Keep);
            }
            if input.chars().count() > 128 {
                return Err("at most 128 characters".into());
            }
            Ok(Change::Set(quoted(input)))
        }
        _ if input == current => Ok(Change::Keep),
        Kind::Int { min, max, optional } => {
            if input.is_empty() && optional {
                return Ok(Change::Unset);
            }
            match input.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Change::Set(n.to_string())),
                _ => Err(format!("must be a whole number from {min} to {max}{}", if optional { ", or empty" } else { "" })),
            }
        }
        Kind::Text { max, optional, check } => {
            if input.is_empty() {
                return if optional { Ok(Change::Unset) } else { Err("must not be empty".into()) };
            }
            if input.chars().count() > max {
                return Err(format!("at most {max} characters (got {})", input.chars().count()));
            }
            check(input)?;
            Ok(Change::Set(quoted(input)))
        }
        Kind::Addr => match input.parse::<SocketAddr>() {
            Ok(a) => Ok(Change::Set(quoted(&a.to_string()))),
            Err(_) => Err(format!("{input:?} is not an address and port (e.g. 192.0.2.10:5060; no sip: URI, no name)")),
        },
        Kind::List { check } => {
            let items: Vec<&str> = input.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            if items.is_empty() {
                return Err("at least one item".into());
            }
            if items.len() > MAX_ITEMS {
                return Err(format!("at most {MAX_ITEMS} items"));
            }
            for item in &items {
                if item.chars().count() > MAX_ITEM_LEN {
                    return Err(format!("{item:?}: at most {MAX_ITEM_LEN} characters per item"));
                }
                check(item)?;
            }
            let array = toml::Value::Array(items.iter().map(|s| toml::Value::String(s.to_string())).collect());
            Ok(Change::Set(array.to_string()))
        }
    }
}

// ---- the form body -----------------------------------------------------------

/// An `application/x-www-form-urlencoded` body as raw bytes per name (the
/// values are not assumed to be UTF-8; a name that is not is dropped).
pub fn parse_form(body: &[u8]) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        if let Ok(name) = String::from_utf8(decode(k)) {
            out.insert(name, decode(v));
        }
    }
    out
}

fn decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// The UTF-8 fields of a parsed form (for the CSRF check).
pub fn text_fields(form: &HashMap<String, Vec<u8>>) -> HashMap<String, String> {
    form.iter().filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.clone()).ok()?))).collect()
}

/// The outcome of a submitted page.
pub struct Outcome {
    pub code: StatusCode,
    /// Per field path: its error.
    pub errors: HashMap<String, String>,
    /// Per field path: what was submitted (shown again after an error).
    pub submitted: HashMap<String, String>,
    /// A message for the whole page (success, or an error naming no field).
    pub message: Option<(bool, String)>,
}

/// Checks the submitted `form` against `sections` and, if every field is
/// good and something changed, commits the change through the store.
/// Returns the outcome and, on success, the saved configuration to apply
/// and the diff for the audit log.
pub fn submit(
    store: &crate::config_store::ConfigStore,
    sections: &[Section],
    form: &HashMap<String, Vec<u8>>,
) -> (Outcome, Option<(crate::config::Config, Vec<String>)>) {
    let table = toml::Table::try_from(store.running()).unwrap_or_default();
    let mut out = Outcome { code: StatusCode::OK, errors: HashMap::new(), submitted: HashMap::new(), message: None };
    let mut changes = Vec::new();
    for field in sections.iter().flat_map(|s| &s.fields) {
        let Some(raw) = form.get(&field.path) else { continue };
        let input = match std::str::from_utf8(raw) {
            Ok(s) => s,
            Err(_) => {
                out.errors.insert(field.path.clone(), "not valid UTF-8 text".into());
                out.submitted.insert(field.path.clone(), String::from_utf8_lossy(raw).into_owned());
                continue;
            }
        };
        if !matches!(field.kind, Kind::Secret) {
            out.submitted.insert(field.path.clone(), input.to_string());
        }
        match check(field, input, &shown(field, lookup(&table, &field.path))) {
            Ok(Change::Keep) => {}
            Ok(c) => changes.push((field.path.clone(), c)),
            Err(e) => {
                out.errors.insert(field.path.clone(), e);
            }
        }
    }
    if out.errors.is_empty() && changes.is_empty() {
        out.message = Some((true, "nothing changed".into()));
        return (out, None);
    }
    if out.errors.is_empty() {
        let mut candidate = store.candidate();
        for (path, change) in &changes {
            // Errors through `to_string`: the store's error type may be text or typed.
            let r: Result<(), String> = match change {
                Change::Set(v) => candidate.set(path, v).map_err(|e| e.to_string()),
                Change::Unset => {
                    let _ = candidate.unset(path); // "not set": already the default
                    Ok(())
                }
                Change::Keep => Ok(()),
            };
            if let Err(e) = r {
                out.errors.insert(path.clone(), e);
            }
        }
        if out.errors.is_empty() {
            let diff = store.diff(&candidate);
            match store.commit(&candidate) {
                Ok(saved) => return (out, Some((saved.config, diff))),
                Err(e) => {
                    let e = e.to_string();
                    let field = sections.iter().flat_map(|s| &s.fields).find(|f| e.contains(&format!("{}:", f.path)));
                    match field {
                        Some(f) => {
                            out.errors.insert(f.path.clone(), e);
                        }
                        None => out.message = Some((false, e)),
                    }
                }
            }
        }
    }
    out.code = StatusCode::UNPROCESSABLE_ENTITY;
    if out.message.is_none() {
        out.message = Some((false, "nothing was changed: see the fields marked below".into()));
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_check_ranges_addresses_lengths_and_lists() {
        let f = Field::new("sip.register_expires", "x", Kind::Int { min: 0, max: 86_400, optional: false });
        assert_eq!(check(&f, "120", "3600"), Ok(Change::Set("120".into())));
        assert_eq!(check(&f, "3600", "3600"), Ok(Change::Keep));
        assert!(check(&f, "86401", "3600").unwrap_err().contains("0 to 86400"));
        assert!(check(&f, "-1", "3600").is_err());
        assert!(check(&f, "12a", "3600").is_err());
        let a = Field::new("sip.proxy", "x", Kind::Addr);
        assert!(check(&a, "sip:carrier@@example", "").unwrap_err().contains("not an address"));
        assert_eq!(check(&a, "127.0.0.1:5070", ""), Ok(Change::Set("\"127.0.0.1:5070\"".into())));
        let n = Field::new("fxs[0].number", "x", text(MAX_ITEM_LEN, false, digits));
        assert!(check(&n, &"1".repeat(33), "").unwrap_err().contains("at most 32"));
        assert!(check(&n, "12a", "").unwrap_err().contains("digits"));
        assert!(check(&n, "", "1001").unwrap_err().contains("empty"));
        assert!(check(&n, "10\u{7}1", "").unwrap_err().contains("one line"));
        let u = Field::new("sip.user_agent", "x", text(64, false, any));
        let Ok(Change::Set(lit)) = check(&u, "A \"quoted\" one", "") else { panic!("a string") };
        let back: toml::Table = format!("v = {lit}").parse().unwrap();
        assert_eq!(back["v"].as_str(), Some("A \"quoted\" one"), "a TOML string that reads back as typed");
        let l = Field::new("route[0].called", "x", Kind::List { check: pattern });
        assert_eq!(check(&l, "2xxx, 9.", ""), Ok(Change::Set("[\"2xxx\", \"9.\"]".into())));
        assert!(check(&l, " , ", "").is_err());
        let s = Field::new("sip.password", "x", Kind::Secret);
        assert_eq!(check(&s, "", ""), Ok(Change::Keep));
        let o = Field::new("route[0].max_calls", "x", Kind::Int { min: 1, max: 10, optional: true });
        assert_eq!(check(&o, "", "4"), Ok(Change::Unset));
    }

    #[test]
    fn form_bodies_decode_to_bytes_and_keep_bad_utf8_per_field() {
        let f = parse_form(b"a=1+2%2C3&b=%FF%FE&c&%E2%82%AC=euro&d=%4&e=%");
        assert_eq!(f["a"], b"1 2,3");
        assert_eq!(f["b"], vec![0xFF, 0xFE]);
        assert_eq!(f["c"], b"");
        assert_eq!(f["\u{20ac}"], b"euro");
        assert_eq!(f["d"], b"%4");
        assert_eq!(f["e"], b"%");
        let t = text_fields(&f);
        assert!(!t.contains_key("b") && t["a"] == "1 2,3");
    }

    #[test]
    fn lookup_walks_tables_and_arrays() {
        let table: toml::Table = "[sip]\nproxy = \"1.2.3.4:5060\"\n[[fxs]]\nport = 1\nnumber = \"1001\"\n".parse().unwrap();
        assert_eq!(lookup(&table, "sip.proxy").and_then(|v| v.as_str()), Some("1.2.3.4:5060"));
        assert_eq!(lookup(&table, "fxs[0].number").and_then(|v| v.as_str()), Some("1001"));
        assert!(lookup(&table, "fxs[1].number").is_none());
        assert!(lookup(&table, "nothing.here").is_none());
    }
}
