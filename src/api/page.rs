//! The operator page (docs/operator-page.md): `GET /` and its assets, compiled into the binary
//! from `web/` (plain HTML, CSS and JavaScript; no build step, no CDN). They hold no data, so
//! they load without a token; every data call the page makes sends it.
//!
//! Every asset is sent with a Content-Security-Policy that allows only the page's own script
//! and style files (no inline script, no `eval`, images only from the service, `blob:` and
//! `data:`), `X-Content-Type-Options: nosniff` and no framing.

use super::reply::Reply;
use http::header::{HeaderName, CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_FRAME_OPTIONS};

/// The policy of the page and its assets.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
connect-src 'self'; base-uri 'none'; form-action 'none'; object-src 'none'; frame-ancestors 'none'";

/// `(path, content type, body)` of every asset.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", include_str!("../../web/index.html")),
    ("/assets/app.js", "text/javascript; charset=utf-8", include_str!("../../web/app.js")),
    ("/assets/app.css", "text/css; charset=utf-8", include_str!("../../web/app.css")),
];

/// Whether `path` (normalised) is the page or one of its assets.
pub fn is_asset(path: &str) -> bool {
    ASSETS.iter().any(|(p, _, _)| *p == path)
}

/// The asset at `path`, with its security headers; `None` if there is none.
pub fn asset(path: &str) -> Option<Reply> {
    let (_, content_type, body) = ASSETS.iter().find(|(p, _, _)| *p == path)?;
    let mut reply = Reply::text(200, content_type, body.to_string());
    reply.headers.extend(headers());
    Some(reply)
}

fn headers() -> Vec<(HeaderName, String)> {
    vec![
        (CONTENT_SECURITY_POLICY, CSP.to_string()),
        (X_FRAME_OPTIONS, "DENY".to_string()),
        (REFERRER_POLICY, "no-referrer".to_string()),
        // small files that change with the binary: revalidate, never serve a stale page
        (CACHE_CONTROL, "no-cache".to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_the_policy_and_no_inline_script() {
        for (path, _, body) in ASSETS {
            let r = asset(path).unwrap();
            assert!(r.headers.iter().any(|(n, v)| n == CONTENT_SECURITY_POLICY && v == CSP), "{path}");
            if path.ends_with('/') {
                // every <script> names a file; no inline handlers
                assert!(!body.contains("<script>") && !body.contains(" onclick=") && !body.contains(" onload="), "{path}");
            }
        }
        assert!(asset("/nope").is_none());
    }

    #[test]
    fn the_script_never_writes_html() {
        let js = include_str!("../../web/app.js");
        for bad in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
            assert!(!js.contains(bad), "web/app.js uses {bad}: render API strings with textContent");
        }
    }
}
