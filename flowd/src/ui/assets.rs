//! The page's files, compiled in, with headers that keep the browser strict: only these files
//! run, nothing is framed, nothing inline.

use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
};

/// Scripts and styles only from this origin, no inline code, no eval, no frames, no plugins;
/// the page fetches only its own JSON.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../ui/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/app.js"),
    },
    Asset {
        path: "/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../ui/app.css"),
    },
    Asset {
        path: "/vendor/cytoscape.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/vendor/cytoscape.min.js"),
    },
];

/// The headers every answer carries, files and JSON alike.
pub fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

pub fn file(asset: &'static Asset) -> Response {
    ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vendored library is byte for byte the file the pin names (its npm tarball's
    /// integrity is in PINNED.json; `cargo xtask vendor-ui` checks it against the registry).
    #[test]
    fn the_vendored_graph_library_is_the_pinned_one() {
        let pinned: serde_json::Value =
            serde_json::from_str(include_str!("../../ui/vendor/PINNED.json")).unwrap();
        let asset = ASSETS
            .iter()
            .find(|a| a.path == "/vendor/cytoscape.min.js")
            .unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, asset.body);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(pinned["sha256"].as_str(), Some(hex.as_str()));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_runs_nothing_inline() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert!(!page.contains("<script>") && !page.contains("style="));
        assert!(!page.contains("onclick=") && !page.contains("onload="));
    }
}
