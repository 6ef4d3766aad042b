//! The benchmark payload: a small JSON object that carries the intended send time
//! (`"__lt"`, µs on the recorder's clock) and a sequence number (`"__ls"`), padded to
//! the requested size. Receivers find every `"__lt":` in a frame with a substring
//! search instead of parsing the JSON, so batched frames (chat `batch-mode-action`,
//! long-poll bodies) count every message they hold.

use memchr::memmem::Finder;

/// The marker that precedes the intended send time.
pub const MARK: &[u8] = b"\"__lt\":";

/// `{"__lt":<t>,"__ls":<seq>,"pad":"xxx…"}` with `pad` bytes of padding.
pub fn json(t_us: u64, seq: u64, pad: usize) -> String {
    let mut s = String::with_capacity(48 + pad);
    s.push_str("{\"__lt\":");
    s.push_str(&t_us.to_string());
    s.push_str(",\"__ls\":");
    s.push_str(&seq.to_string());
    if pad > 0 {
        s.push_str(",\"pad\":\"");
        s.extend(std::iter::repeat_n('x', pad));
        s.push('"');
    }
    s.push('}');
    s
}

/// Finds the send times embedded in frames.
pub struct Scanner {
    finder: Finder<'static>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            finder: Finder::new(MARK),
        }
    }
}

impl Scanner {
    /// Calls `f` with every embedded send time in `frame`, in order; returns how many.
    pub fn each(&self, frame: &[u8], mut f: impl FnMut(u64)) -> usize {
        let mut n = 0;
        for at in self.finder.find_iter(frame) {
            if let Some(t) = digits(&frame[at + MARK.len()..]) {
                f(t);
                n += 1;
            }
        }
        n
    }

    /// The first embedded send time, if any.
    pub fn first(&self, frame: &[u8]) -> Option<u64> {
        let at = self.finder.find(frame)?;
        digits(&frame[at + MARK.len()..])
    }
}

fn digits(b: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &c in b.iter().take(20) {
        if !c.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        n += 1;
    }
    (n > 0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let p = json(123_456, 7, 10);
        assert_eq!(p, r#"{"__lt":123456,"__ls":7,"pad":"xxxxxxxxxx"}"#);
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["__lt"], 123_456);
        let s = Scanner::default();
        assert_eq!(s.first(p.as_bytes()), Some(123_456));
        assert_eq!(json(1, 2, 0), r#"{"__lt":1,"__ls":2}"#);
    }

    #[test]
    fn every_message_of_a_batch_counts() {
        let frame = format!(
            r#"{{"type":"batch-mode-action","actions":[{{"message":{{"body":{}}}}},{{"message":{{"body":{}}}}}]}}"#,
            json(5, 1, 0),
            json(9, 2, 3)
        );
        let mut seen = Vec::new();
        let n = Scanner::default().each(frame.as_bytes(), |t| seen.push(t));
        assert_eq!(n, 2);
        assert_eq!(seen, vec![5, 9]);
        assert_eq!(Scanner::default().each(b"{\"__lt\":x}", |_| {}), 0);
        assert_eq!(Scanner::default().first(b"nothing"), None);
    }
}
