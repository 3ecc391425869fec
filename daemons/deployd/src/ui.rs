//! The web console's files, served at `/` beside the REST API (same listener, same TLS
//! certificate). Everything is compiled into the binary (`ui/`: no CDN, it works with no
//! internet). The page is a client of the public REST API only: whatever it does, a script
//! can do; it keeps its session token in the tab's `sessionStorage` and sends it in the
//! `Auth` header, so no cookie exists that another site could make the browser send.
//!
//! The script is written as several files by area (`ui/app/`: core helpers and the API
//! client, then one file per group of pages, then the router) and served as one.
//!
//! Assets are named by their content hash (`/ui/app.3f2a....js`) and cached for good; the
//! page itself (`/`) is never cached, so a new binary's assets are fetched at once. Every
//! answer carries a strict Content-Security-Policy (scripts and styles from this origin
//! only, no inline script, no framing) and the usual hardening headers.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// One embedded file.
struct Asset {
    /// Its name in `ui/`, and the start and end of the hashed name (`app` + `.js`).
    stem: &'static str,
    ext: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        stem: "app",
        ext: "js",
        content_type: "text/javascript; charset=utf-8",
        bytes: APP_JS.as_bytes(),
    },
    Asset {
        stem: "app",
        ext: "css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../ui/app.css"),
    },
    Asset {
        stem: "icon",
        ext: "svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../ui/icon.svg"),
    },
];

/// The script: `ui/app/*.js` in this order, one ES module (they share its scope; the router
/// and start-up, in main.js, come last).
const APP_JS: &str = concat!(
    include_str!("../ui/app/core.js"),
    include_str!("../ui/app/dashboard.js"),
    include_str!("../ui/app/servers.js"),
    include_str!("../ui/app/images.js"),
    include_str!("../ui/app/plans.js"),
    include_str!("../ui/app/users.js"),
    include_str!("../ui/app/main.js"),
);

const INDEX: &str = include_str!("../ui/index.html");

/// The policy: nothing but this origin, no inline code, no framing, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The hashed name of each asset (`app.<16 hex>.js`), in `ASSETS` order.
fn hashed_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.bytes);
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("{}.{hex}.{}", a.stem, a.ext)
            })
            .collect()
    })
}

/// The page, with its asset references (`{{app.js}}`) replaced by their hashed names.
fn index() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| {
        let mut page = INDEX.to_owned();
        for (a, name) in ASSETS.iter().zip(hashed_names()) {
            page = page.replace(
                &format!("{{{{{}.{}}}}}", a.stem, a.ext),
                &format!("/ui/{name}"),
            );
        }
        page
    })
}

/// The console's routes: `/` and `/ui/<hashed name>`. Outside the API's middleware: they
/// are static files, public like any login page; the data comes from the API.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/index.html", get(page))
        .route("/ui/{name}", get(asset))
}

async fn page() -> Response {
    hardened(
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            index(),
        )
            .into_response(),
    )
}

async fn asset(Path(name): Path<String>) -> Response {
    let found = ASSETS
        .iter()
        .zip(hashed_names())
        .find(|(_, hashed)| **hashed == name);
    let resp = match found {
        Some((a, _)) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            a.bytes,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, "no-cache")],
            "No such file: the page may be older than this appliance's software; reload it.",
        )
            .into_response(),
    };
    hardened(resp)
}

/// Adds the security headers every console answer carries.
fn hardened(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("strict-transport-security", "max-age=31536000"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// The total size of the console's files, gzip-compressed (the size budget: BENCHMARKS.md).
pub fn compressed_size() -> usize {
    use std::io::Write;
    let mut total = 0;
    for bytes in ASSETS
        .iter()
        .map(|a| a.bytes)
        .chain(std::iter::once(INDEX.as_bytes()))
    {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let _ = gz.write_all(bytes);
        total += gz.finish().map(|v| v.len()).unwrap_or(bytes.len());
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_every_asset_by_its_hash_and_nothing_unresolved() {
        let page = index();
        for name in hashed_names() {
            assert!(
                page.contains(&format!("/ui/{name}")),
                "{name} not in the page"
            );
        }
        assert!(!page.contains("{{"), "an unresolved reference: {page}");
        assert!(!page.contains("<script>"), "inline script in the page");
    }

    #[test]
    fn the_console_is_under_its_budget() {
        assert!(compressed_size() < 1 << 20, "{} bytes", compressed_size());
    }
}
