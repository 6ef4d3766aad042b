//! The `message` object of `request-sending-a-message` (the seed's message-type): its
//! `type` names one of [`MessageType`] and its `body` is checked strictly for that type.
//! `text` keeps the seed's rule (any JSON `body`, other fields passed through); the multimedia types carry a link to
//! media the app stores elsewhere (the broker never fetches or keeps media), with the
//! metadata a client needs to draw the message before fetching it. Pure; every refusal
//! is a reason for a `status-response` `failed`. docs/chat.md "Message types" has the
//! table.

use serde_json::{Map, Value};

/// Longest media `url`, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Longest inline `thumbnail` (base64 text), in bytes.
pub const MAX_THUMBNAIL_LEN: usize = 2048;
/// Longest `caption` (and a location's `name`), in bytes.
pub const MAX_CAPTION_LEN: usize = 1024;
/// Longest `mime` type, in bytes.
pub const MAX_MIME_LEN: usize = 127;
/// Longest file `name`, in bytes.
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Largest media `size`, in bytes (the largest integer every JSON client reads exactly).
pub const MAX_MEDIA_SIZE: u64 = (1 << 53) - 1;
/// Largest `width` / `height`, in pixels.
pub const MAX_DIMENSION: u64 = 65_535;
/// Longest `duration-ms` of audio or video: 24 hours.
pub const MAX_DURATION_MS: u64 = 24 * 3600 * 1000;
/// URL schemes a media link may use.
pub const URL_SCHEMES: [&str; 1] = ["https"];

/// The message types a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Text,
    Image,
    Audio,
    Video,
    File,
    Location,
}

impl MessageType {
    pub const ALL: [MessageType; 6] = [
        MessageType::Text,
        MessageType::Image,
        MessageType::Audio,
        MessageType::Video,
        MessageType::File,
        MessageType::Location,
    ];

    /// Its `type` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Text => "text",
            MessageType::Image => "image",
            MessageType::Audio => "audio",
            MessageType::Video => "video",
            MessageType::File => "file",
            MessageType::Location => "location",
        }
    }

    pub fn parse(s: &str) -> Option<MessageType> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The `mime` major type this message type requires (`None`: any).
    fn mime_major(self) -> Option<&'static str> {
        match self {
            MessageType::Image => Some("image"),
            MessageType::Audio => Some("audio"),
            MessageType::Video => Some("video"),
            _ => None,
        }
    }
}

/// One body field: required or optional, and its check.
struct Field {
    name: &'static str,
    required: bool,
    check: fn(&Value) -> Result<(), String>,
}

const fn req(name: &'static str, check: fn(&Value) -> Result<(), String>) -> Field {
    Field {
        name,
        required: true,
        check,
    }
}

const fn opt(name: &'static str, check: fn(&Value) -> Result<(), String>) -> Field {
    Field {
        name,
        required: false,
        check,
    }
}

/// The body fields of each multimedia type (`text` has none: its body is free).
fn fields(t: MessageType) -> &'static [Field] {
    const IMAGE: &[Field] = &[
        req("url", url),
        req("mime", mime),
        req("size", size),
        opt("width", dimension),
        opt("height", dimension),
        opt("thumbnail", thumbnail),
        opt("caption", caption),
    ];
    const AUDIO: &[Field] = &[
        req("url", url),
        req("mime", mime),
        req("size", size),
        opt("duration-ms", duration),
        opt("caption", caption),
    ];
    const VIDEO: &[Field] = &[
        req("url", url),
        req("mime", mime),
        req("size", size),
        opt("duration-ms", duration),
        opt("width", dimension),
        opt("height", dimension),
        opt("thumbnail", thumbnail),
        opt("caption", caption),
    ];
    const FILE: &[Field] = &[
        req("url", url),
        req("mime", mime),
        req("size", size),
        req("name", file_name),
        opt("caption", caption),
    ];
    const LOCATION: &[Field] = &[
        req("latitude", latitude),
        req("longitude", longitude),
        opt("accuracy-m", accuracy),
        opt("name", caption),
    ];
    match t {
        MessageType::Text => &[],
        MessageType::Image => IMAGE,
        MessageType::Audio => AUDIO,
        MessageType::Video => VIDEO,
        MessageType::File => FILE,
        MessageType::Location => LOCATION,
    }
}

/// Checks a `message` object; `Err` is the `failed` reason.
pub fn validate(message: &Value) -> Result<MessageType, String> {
    let shape = "`message` must be an object with a string `type` and a `body`";
    let Some(m) = message.as_object() else {
        return Err(shape.into());
    };
    let (Some(kind), Some(body)) = (m.get("type").and_then(Value::as_str), m.get("body")) else {
        return Err(shape.into());
    };
    let Some(t) = MessageType::parse(kind) else {
        let shown: String = kind.chars().take(40).collect();
        let known: Vec<&str> = MessageType::ALL.iter().map(|t| t.as_str()).collect();
        return Err(format!(
            "unknown message type {shown:?} (known: {})",
            known.join(", ")
        ));
    };
    // `text` is the seed's type: its message is taken as today (other fields pass).
    if t == MessageType::Text {
        return Ok(t);
    }
    if let Some(extra) = m.keys().find(|k| *k != "type" && *k != "body") {
        let shown: String = extra.chars().take(40).collect();
        return Err(format!("`message` has an unknown field {shown:?}"));
    }
    let Some(body) = body.as_object() else {
        return Err(format!(
            "a `{}` message's `body` must be an object",
            t.as_str()
        ));
    };
    check_body(t, body)?;
    Ok(t)
}

/// A short text for lists (an inbox): a text message's body (when a string), a media
/// message's caption or file / place name; at most `chars` characters, "" for none.
pub fn preview(message: &Value, chars: usize) -> String {
    let body = &message["body"];
    let text = match message["type"].as_str().and_then(MessageType::parse) {
        Some(MessageType::Text) => body.as_str(),
        Some(_) => body["caption"].as_str().or_else(|| body["name"].as_str()),
        None => None,
    };
    text.unwrap_or_default().chars().take(chars).collect()
}

fn check_body(t: MessageType, body: &Map<String, Value>) -> Result<(), String> {
    let fields = fields(t);
    if let Some(extra) = body.keys().find(|k| !fields.iter().any(|f| f.name == *k)) {
        let shown: String = extra.chars().take(40).collect();
        return Err(format!(
            "a `{}` message's `body` has an unknown field {shown:?}",
            t.as_str()
        ));
    }
    for f in fields {
        match body.get(f.name) {
            None if f.required => {
                return Err(format!(
                    "a `{}` message needs `body.{}`",
                    t.as_str(),
                    f.name
                ))
            }
            None => {}
            Some(v) => (f.check)(v).map_err(|why| format!("`body.{}` {why}", f.name))?,
        }
    }
    if let (Some(major), Some(m)) = (t.mime_major(), body.get("mime").and_then(Value::as_str)) {
        if !m
            .split('/')
            .next()
            .is_some_and(|x| x.eq_ignore_ascii_case(major))
        {
            return Err(format!(
                "`body.mime` of a `{}` message must be {major}/…",
                t.as_str()
            ));
        }
    }
    Ok(())
}

fn string(v: &Value, max: usize) -> Result<&str, String> {
    let s = v.as_str().ok_or("must be a string")?;
    if s.is_empty() || s.len() > max {
        return Err(format!("must be 1..={max} bytes"));
    }
    Ok(s)
}

fn url(v: &Value) -> Result<(), String> {
    let s = string(v, MAX_URL_LEN)?;
    let (scheme, rest) = s.split_once("://").ok_or("must be an absolute URL")?;
    if !URL_SCHEMES.iter().any(|ok| scheme.eq_ignore_ascii_case(ok)) {
        return Err(format!("must use {}", URL_SCHEMES.join(" or ")));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err("must name a host".into());
    }
    // Printable ASCII without the characters RFC 3986 never allows unescaped.
    if !s
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b))
    {
        return Err(
            "must be a URL without spaces, quotes or non-ASCII (percent-encode them)".into(),
        );
    }
    Ok(())
}

/// A token of RFC 9110 (`type` and `subtype` of a media type).
fn token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn mime(v: &Value) -> Result<(), String> {
    let s = string(v, MAX_MIME_LEN)?;
    match s.split_once('/') {
        Some((t, sub)) if token(t) && token(sub) => Ok(()),
        _ => Err("must be a media type `type/subtype` (no parameters)".into()),
    }
}

fn integer(v: &Value, min: u64, max: u64) -> Result<u64, String> {
    match v.as_u64() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be an integer in {min}..={max}")),
    }
}

fn size(v: &Value) -> Result<(), String> {
    integer(v, 1, MAX_MEDIA_SIZE).map(drop)
}

fn dimension(v: &Value) -> Result<(), String> {
    integer(v, 1, MAX_DIMENSION).map(drop)
}

fn duration(v: &Value) -> Result<(), String> {
    integer(v, 1, MAX_DURATION_MS).map(drop)
}

fn thumbnail(v: &Value) -> Result<(), String> {
    let s = string(v, MAX_THUMBNAIL_LEN)?;
    let data = s.trim_end_matches('=');
    let canonical = s.len() % 4 == 0 && s.len() - data.len() <= 2;
    if !canonical
        || !data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return Err("must be padded standard base64 (the image bytes)".into());
    }
    Ok(())
}

fn caption(v: &Value) -> Result<(), String> {
    string(v, MAX_CAPTION_LEN).map(drop)
}

fn file_name(v: &Value) -> Result<(), String> {
    let s = string(v, MAX_FILE_NAME_LEN)?;
    if s.chars().any(|c| c.is_control() || c == '/' || c == '\\') || s == "." || s == ".." {
        return Err("must be a file name without a path or control characters".into());
    }
    Ok(())
}

fn degrees(v: &Value, limit: f64) -> Result<(), String> {
    match v.as_f64() {
        Some(x) if v.is_number() && (-limit..=limit).contains(&x) => Ok(()),
        _ => Err(format!("must be a number in -{limit}..={limit}")),
    }
}

fn latitude(v: &Value) -> Result<(), String> {
    degrees(v, 90.0)
}

fn longitude(v: &Value) -> Result<(), String> {
    degrees(v, 180.0)
}

fn accuracy(v: &Value) -> Result<(), String> {
    match v.as_f64() {
        Some(x) if (0.0..=1.0e7).contains(&x) => Ok(()),
        _ => Err("must be a number of metres in 0..=10000000".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image() -> Value {
        json!({"type": "image", "body": {"url": "https://cdn.example.com/a/b.jpg?s=1",
            "mime": "image/jpeg", "size": 123456, "width": 800, "height": 600,
            "thumbnail": "iVBORw0KGgo=", "caption": "the view"}})
    }

    fn refused(m: &Value) -> String {
        validate(m).expect_err(&format!("{m} must be refused"))
    }

    #[test]
    fn every_type_accepts_its_documented_body() {
        let ok = [
            json!({"type": "text", "body": "hi"}),
            json!({"type": "text", "body": {"any": ["json", 1]}}),
            image(),
            json!({"type": "audio", "body": {"url": "https://x.io/v.ogg", "mime": "audio/ogg",
                "size": 9, "duration-ms": 4100}}),
            json!({"type": "video", "body": {"url": "HTTPS://x.io/v.mp4", "mime": "video/mp4",
                "size": 1, "duration-ms": 1, "width": 1, "height": 65535}}),
            json!({"type": "file", "body": {"url": "https://u:p@x.io:8443/f", "mime":
                "application/pdf", "size": MAX_MEDIA_SIZE, "name": "report (final).pdf"}}),
            json!({"type": "location", "body": {"latitude": -90, "longitude": 180.0,
                "accuracy-m": 12.5, "name": "Gare du Nord"}}),
        ];
        for m in ok {
            let t = validate(&m).unwrap_or_else(|e| panic!("{m}: {e}"));
            assert_eq!(t.as_str(), m["type"], "{m}");
        }
    }

    #[test]
    fn the_shape_and_unknown_types_are_refused_with_their_reason() {
        let shape = "`message` must be an object with a string `type` and a `body`";
        assert_eq!(refused(&json!("text")), shape);
        assert_eq!(refused(&json!({"type": "text"})), shape);
        assert_eq!(refused(&json!({"type": 7, "body": "x"})), shape);
        assert_eq!(
            refused(&json!({"type": "sticker", "body": "x"})),
            "unknown message type \"sticker\" (known: text, image, audio, video, file, location)"
        );
        assert!(validate(&json!({"type": "text", "body": "x", "format": "md"})).is_ok());
        assert_eq!(
            refused(&json!({"type": "file", "body": {}, "extra": 1})),
            "`message` has an unknown field \"extra\""
        );
        assert_eq!(
            refused(&json!({"type": "image", "body": "https://x.io/a.png"})),
            "a `image` message's `body` must be an object"
        );
    }

    #[test]
    fn media_fields_are_checked_strictly() {
        let with = |field: &str, v: Value| {
            let mut m = image();
            m["body"][field] = v;
            refused(&m)
        };
        let without = |field: &str| {
            let mut m = image();
            m["body"].as_object_mut().unwrap().remove(field);
            refused(&m)
        };
        assert_eq!(without("url"), "a `image` message needs `body.url`");
        assert_eq!(without("size"), "a `image` message needs `body.size`");
        assert_eq!(
            with("url", json!("http://x.io/a.png")),
            "`body.url` must use https"
        );
        assert_eq!(
            with("url", json!("javascript:alert(1)")),
            "`body.url` must be an absolute URL"
        );
        assert_eq!(with("url", json!("data://x")), "`body.url` must use https");
        assert_eq!(
            with("url", json!("https:///path")),
            "`body.url` must name a host"
        );
        assert_eq!(
            with("url", json!("https://x.io/a b")),
            "`body.url` must be a URL without spaces, quotes or non-ASCII (percent-encode them)"
        );
        assert_eq!(
            with(
                "url",
                json!(format!("https://x.io/{}", "a".repeat(MAX_URL_LEN)))
            ),
            "`body.url` must be 1..=2048 bytes"
        );
        assert_eq!(with("url", json!(7)), "`body.url` must be a string");
        assert_eq!(
            with("mime", json!("audio/ogg")),
            "`body.mime` of a `image` message must be image/…"
        );
        assert_eq!(
            with("mime", json!("image/png; q=1")),
            "`body.mime` must be a media type `type/subtype` (no parameters)"
        );
        for bad in [
            json!(0),
            json!(-1),
            json!(1.5),
            json!("10"),
            json!(MAX_MEDIA_SIZE + 1),
        ] {
            assert_eq!(
                with("size", bad),
                "`body.size` must be an integer in 1..=9007199254740991"
            );
        }
        assert_eq!(
            with("width", json!(65_536)),
            "`body.width` must be an integer in 1..=65535"
        );
        assert_eq!(
            with("thumbnail", json!("not base64!")),
            "`body.thumbnail` must be padded standard base64 (the image bytes)"
        );
        assert_eq!(
            with("thumbnail", json!("A".repeat(MAX_THUMBNAIL_LEN + 4))),
            "`body.thumbnail` must be 1..=2048 bytes"
        );
        assert_eq!(
            with("caption", json!("")),
            "`body.caption` must be 1..=1024 bytes"
        );
        assert_eq!(
            with("evil", json!(1)),
            "a `image` message's `body` has an unknown field \"evil\""
        );
    }

    #[test]
    fn files_and_locations_have_their_own_rules() {
        let file = |name: Value| {
            json!({"type": "file", "body": {"url": "https://x.io/f", "mime": "text/plain",
                "size": 3, "name": name}})
        };
        for bad in ["../etc/passwd", "a\\b", "..", "tab\there"] {
            assert_eq!(
                refused(&file(json!(bad))),
                "`body.name` must be a file name without a path or control characters",
                "{bad}"
            );
        }
        let loc = |lat: Value, lon: Value| json!({"type": "location", "body": {"latitude": lat, "longitude": lon}});
        assert_eq!(
            refused(&loc(json!(90.5), json!(0))),
            "`body.latitude` must be a number in -90..=90"
        );
        assert_eq!(
            refused(&loc(json!(0), json!("east"))),
            "`body.longitude` must be a number in -180..=180"
        );
        let mut m = loc(json!(1), json!(2));
        m["body"]["accuracy-m"] = json!(-1);
        assert_eq!(
            refused(&m),
            "`body.accuracy-m` must be a number of metres in 0..=10000000"
        );
    }

    #[test]
    fn previews_are_short_texts() {
        assert_eq!(
            preview(&json!({"type": "text", "body": "héllo wörld"}), 5),
            "héllo"
        );
        assert_eq!(
            preview(&json!({"type": "text", "body": {"rich": 1}}), 5),
            ""
        );
        assert_eq!(preview(&image(), 140), "the view");
        let file = json!({"type": "file", "body": {"name": "a.pdf"}});
        assert_eq!(preview(&file, 140), "a.pdf");
        assert_eq!(preview(&json!(null), 140), "");
    }

    #[test]
    fn hostile_bodies_never_panic() {
        let deep = (0..64).fold(json!(1), |v, _| json!([v]));
        for body in [
            json!(null),
            json!([]),
            deep,
            json!({"url": {"nested": true}, "mime": [], "size": null}),
            json!({"url": "https://\u{0}x", "mime": "image/x", "size": 1}),
            json!({"url": "https://é.fr/", "mime": "image/x", "size": 1}),
        ] {
            for t in MessageType::ALL.iter().skip(1) {
                let m = json!({"type": t.as_str(), "body": body});
                assert!(validate(&m).is_err(), "{m}");
            }
        }
    }
}
