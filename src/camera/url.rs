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

/// Query keys whose values are masked.
const SECRET_KEYS: &[&str] = &["pass", "pwd", "token", "secret", "key", "auth", "sig"];

impl StreamUrl {
    /// Checks the URL's form: a known scheme with a host (file:// with a path), or a plain local
    /// path. Returns the sentence for a 422 on failure.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > 2048 {
            return Err(format!("is {} characters long, the limit is 2048", s.len()));
        }
        if s.chars().any(|c| c.is_control() || c == ' ') {
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

    /// The URL with user-info passwords and secret query values replaced by `***`.
    pub fn masked(&self) -> String {
        let s = &self.0;
        let Some((scheme, rest)) = s.split_once("://") else {
            return s.clone();
        };
        let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(auth_end);
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:***@{host}"),
                None => format!("***@{host}"),
            },
            None => authority.to_string(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let (query, frag) = match query.split_once('#') {
                    Some((q, f)) => (q, format!("#{f}")),
                    None => (query, String::new()),
                };
                let masked: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((k, _)) if SECRET_KEYS.iter().any(|sk| k.to_ascii_lowercase().contains(sk)) => {
                            format!("{k}=***")
                        }
                        _ => pair.to_string(),
                    })
                    .collect();
                format!("{path}?{}{frag}", masked.join("&"))
            }
            None => tail.to_string(),
        };
        format!("{scheme}://{authority}{tail}")
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
