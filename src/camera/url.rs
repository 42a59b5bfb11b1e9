//! `StreamUrl`: a camera's source address whose credentials cannot leak by accident.
//!
//! `Display`, `Debug` and `Serialize` all print the masked form (`rtsp://user:***@host/...`,
//! secret-looking query values as `***`), so a URL can go into a log line or a response as is.
//! Only [`StreamUrl::expose`] gives the real string, for the capture stage to open.

use serde::{Serialize, Serializer};
use std::fmt;

/// What kind of source a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Rtsp,
    Http,
    File,
}

#[derive(Clone, PartialEq, Eq)]
pub struct StreamUrl(String);

/// Schemes the service accepts, with their kind.
const SCHEMES: &[(&str, SourceKind)] = &[
    ("rtsp", SourceKind::Rtsp),
    ("rtsps", SourceKind::Rtsp),
    ("http", SourceKind::Http),
    ("https", SourceKind::Http),
    ("file", SourceKind::File),
];

/// `key=value` keys whose values are masked wherever they appear (query, path, free text):
/// any key containing one of these...
const SECRET_KEY_PARTS: &[&str] = &["pass", "pwd", "token", "secret", "key", "auth", "sig", "credential"];
/// ...or equal to one of these (too short to match as parts).
const SECRET_KEYS: &[&str] = &["pw", "p"];

fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    SECRET_KEYS.contains(&k.as_str()) || SECRET_KEY_PARTS.iter().any(|p| k.contains(p))
}

/// Masks the values of secret-looking `key=value` pairs in a URL's path, query or fragment
/// (`/user=admin&password=x&channel=1`, `?pwd=x`, `;pw=x`).
fn mask_pairs(tail: &str) -> String {
    let mut out = String::with_capacity(tail.len());
    for token in tail.split_inclusive(['/', '?', '&', ';', '#']) {
        let (body, delim) = match token.char_indices().last() {
            Some((i, c)) if "/?&;#".contains(c) => (&token[..i], &token[i..]),
            _ => (token, ""),
        };
        match body.split_once('=') {
            Some((k, _)) if is_secret_key(k) => {
                out.push_str(k);
                out.push_str("=***");
            }
            _ => out.push_str(body),
        }
        out.push_str(delim);
    }
    out
}

/// Masks credentials in free text (an OpenCV/FFmpeg error that quotes a URL): the password of
/// any `scheme://user:password@` and the value of any secret-looking `key=value`.
pub fn scrub_text(text: &str) -> String {
    use std::sync::OnceLock;
    static USERINFO: OnceLock<regex::Regex> = OnceLock::new();
    static PAIRS: OnceLock<regex::Regex> = OnceLock::new();
    let userinfo =
        USERINFO.get_or_init(|| regex::Regex::new(r"(?i)([a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s]*@").expect("invariant: valid regex"));
    let pairs = PAIRS.get_or_init(|| {
        regex::Regex::new(r"(?i)\b([a-z_]*(?:pass|pwd|token|secret|key|auth|sig|credential)[a-z_]*|pw|p)=[^&\s;/#'\x22]+")
            .expect("invariant: valid regex")
    });
    let t = userinfo.replace_all(text, "$1:***@");
    pairs.replace_all(&t, "$1=***").into_owned()
}

impl StreamUrl {
    /// Checks the URL's form: a known scheme with a host (file:// with a path), or a plain local
    /// path. Returns the sentence for a 422 on failure.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        let chars = s.chars().count();
        if chars > 2048 {
            return Err(format!("is {chars} characters long, the limit is 2048"));
        }
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("must not contain spaces or control characters".into());
        }
        if let Some((scheme, rest)) = s.split_once("://") {
            let lower = scheme.to_ascii_lowercase();
            let Some((_, kind)) = SCHEMES.iter().find(|(name, _)| *name == lower) else {
                return Err(format!("has unsupported scheme '{scheme}://'; use rtsp://, rtsps://, http(s)://, file:// or a local path"));
            };
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = authority.rsplit('@').next().unwrap_or("");
            if *kind != SourceKind::File && host.is_empty() {
                return Err(format!("has no host after '{scheme}://'"));
            }
            if *kind == SourceKind::File && rest.is_empty() {
                return Err("file:// needs a path".into());
            }
        }
        Ok(StreamUrl(s.to_string()))
    }

    /// The real URL, credentials included. Only for opening the stream.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> SourceKind {
        match self.0.split_once("://") {
            Some((scheme, _)) => SCHEMES.iter().find(|(name, _)| name.eq_ignore_ascii_case(scheme)).map_or(SourceKind::File, |(_, k)| *k),
            None => SourceKind::File,
        }
    }

    /// The URL with the user-info password and secret `key=value` values replaced by `***`.
    ///
    /// A password may hold reserved characters that a sloppy client did not escape
    /// (`rtsp://admin:p#ss@host/`, `p/ss`, `p?ss`, `p@ss`): the user-info then runs to the last
    /// `@` of the URL. When that guess is wrong the URL is masked more than needed, never less.
    pub fn masked(&self) -> String {
        let s = &self.0;
        let Some((scheme, rest)) = s.split_once("://") else {
            return mask_pairs(s);
        };
        let naive_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        // `user:` then anything up to the last '@' of the URL (the user itself is clean), else
        // the plain authority's last '@'
        let user_colon = rest.find(':').filter(|&c| !rest[..c].contains(['/', '?', '#', '@']));
        let at = match (user_colon, rest.rfind('@')) {
            (Some(c), Some(at)) if c < at => Some(at),
            _ => rest[..naive_end].rfind('@'),
        };
        let (userinfo, after) = match at {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let userinfo = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, _password)) => format!("{user}:***@"),
                None => "***@".to_string(),
            },
            None => String::new(),
        };
        let host_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (host, tail) = after.split_at(host_end);
        format!("{scheme}://{userinfo}{host}{}", mask_pairs(tail))
    }

    /// `text` with this URL replaced by its masked form and any other credentials scrubbed.
    pub fn scrub(&self, text: &str) -> String {
        scrub_text(&text.replace(&self.0, &self.masked()))
    }
}

impl fmt::Display for StreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for StreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamUrl({})", self.masked())
    }
}

impl Serialize for StreamUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_password_in_userinfo() {
        let u = StreamUrl::parse("rtsp://user:password@172.16.34.2:554/media/video1").unwrap();
        assert_eq!(u.masked(), "rtsp://user:***@172.16.34.2:554/media/video1");
        assert_eq!(format!("{u}"), u.masked());
        assert!(!format!("{u:?}").contains("password"));
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"rtsp://user:***@172.16.34.2:554/media/video1\"");
        assert_eq!(u.expose(), "rtsp://user:password@172.16.34.2:554/media/video1");
        assert_eq!(u.kind(), SourceKind::Rtsp);
    }

    #[test]
    fn masks_user_only_and_secret_query_values() {
        let u = StreamUrl::parse("http://token@cam/x?a=1&api_key=s3cret&Password=p#frag").unwrap();
        assert_eq!(u.masked(), "http://***@cam/x?a=1&api_key=***&Password=***#frag");
        // a password with '@' in it: the host is after the last '@'
        let u = StreamUrl::parse("rtsp://admin:p@ss@10.0.0.1/s").unwrap();
        assert_eq!(u.masked(), "rtsp://admin:***@10.0.0.1/s");
    }

    #[test]
    fn masks_every_credential_shape() {
        let cases = [
            ("rtsp://admin:p#ss@10.0.0.1:554/s", "rtsp://admin:***@10.0.0.1:554/s"),
            ("rtsp://admin:p/ss@10.0.0.1/s", "rtsp://admin:***@10.0.0.1/s"),
            ("rtsp://admin:p?ss@10.0.0.1/s?x=1", "rtsp://admin:***@10.0.0.1/s?x=1"),
            ("rtsp://admin:p@s#s@10.0.0.1/s", "rtsp://admin:***@10.0.0.1/s"),
            (
                "rtsp://10.0.0.1/user=admin&password=x&channel=1&stream=0.sdp",
                "rtsp://10.0.0.1/user=admin&password=***&channel=1&stream=0.sdp",
            ),
            ("rtsp://10.0.0.1/live?user=admin&pwd=x", "rtsp://10.0.0.1/live?user=admin&pwd=***"),
            ("http://10.0.0.1/video.cgi?pw=x;p=y", "http://10.0.0.1/video.cgi?pw=***;p=***"),
            ("http://h/snap?PassWord=x#frag", "http://h/snap?PassWord=***#frag"),
        ];
        for (raw, masked) in cases {
            let u = StreamUrl::parse(raw).unwrap();
            assert_eq!(u.masked(), masked, "{raw}");
            for secret in ["p#ss", "p/ss", "p?ss", "p@s#s", "password=x", "pwd=x", "pw=x", "p=y", "PassWord=x"] {
                assert!(!u.masked().contains(secret), "{raw} leaks {secret}");
            }
        }
    }

    #[test]
    fn scrubs_urls_echoed_in_messages() {
        let u = StreamUrl::parse("rtsp://admin:s3cr#t@10.0.0.1/user=admin&password=hunter2").unwrap();
        let msg = format!("OpenCV(4.6.0) cap_ffmpeg: can't open '{}': 401; retry rtsp://bob:other@h/x?token=abc", u.expose());
        let clean = u.scrub(&msg);
        for secret in ["s3cr#t", "hunter2", "other", "abc"] {
            assert!(!clean.contains(secret), "{clean}");
        }
        assert!(clean.contains("rtsp://admin:***@10.0.0.1"), "{clean}");
    }

    #[test]
    fn accepts_paths_and_known_schemes_only() {
        assert_eq!(StreamUrl::parse("media/a.mp4").unwrap().kind(), SourceKind::File);
        assert_eq!(StreamUrl::parse("file:///tmp/a.mp4").unwrap().kind(), SourceKind::File);
        assert_eq!(StreamUrl::parse("HTTPS://h/x").unwrap().kind(), SourceKind::Http);
        assert!(StreamUrl::parse("ftp://h/x").unwrap_err().contains("unsupported scheme"));
        assert!(StreamUrl::parse("rtsp:///x").unwrap_err().contains("no host"));
        assert!(StreamUrl::parse("").is_err());
        assert!(StreamUrl::parse("rtsp://h/a b").is_err());
    }
}
