//! GraphiQL, the in-browser GraphQL IDE, served entirely by this binary (no CDN, works offline).
//!
//! [`page`] renders the HTML page (the caller serves it at `GET /graphql` for browsers) and
//! [`routes`] serves its JavaScript and CSS under [`ASSETS_PATH`]. The assets are the UMD
//! builds of React 18, GraphiQL 3 and the `graphql-ws` client, pinned in
//! `assets/graphiql/package-lock.json`; `build.rs` installs them with npm and copies them to
//! `$OUT_DIR/graphiql/`, from where they are embedded with `include_bytes!`.
//!
//! Asset URLs carry a hash of the assets' contents (`graphiql.<hash>.js`), so they are served
//! with `cache-control: immutable`; the plain names (`graphiql.js`) also work, with a short
//! cache lifetime.
//!
//! The page's fetcher posts `content-type: application/json` to the GraphQL endpoint, adding
//! the headers typed in GraphiQL's header editor, and runs subscriptions over WebSocket
//! (`graphql-transport-ws` protocol) with `connectionParams` set to
//! `{ "authorization": <the editor's Authorization header> }` when that header is present.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

/// Path prefix the assets are served under.
pub const ASSETS_PATH: &str = "/graphiql/assets";

/// Hash of the assets' contents, computed by `build.rs`.
const ASSETS_HASH: &str = env!("GRAPHIQL_ASSETS_HASH");

const CACHE_VERSIONED: &str = "public, max-age=31536000, immutable";
const CACHE_UNVERSIONED: &str = "public, max-age=3600";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// One embedded file, served as `<stem>.<ext>` and `<stem>.<ASSETS_HASH>.<ext>`.
struct Asset {
    stem: &'static str,
    ext: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

impl Asset {
    /// `Some(true)` if `file` is this asset's versioned name, `Some(false)` if its plain name.
    fn matches(&self, file: &str) -> Option<bool> {
        let rest = file.strip_prefix(self.stem)?.strip_prefix('.')?;
        if rest == self.ext {
            return Some(false);
        }
        let ext = rest.strip_prefix(ASSETS_HASH)?.strip_prefix('.')?;
        (ext == self.ext).then_some(true)
    }

    /// Root-relative, versioned URL of this asset.
    fn url(&self) -> String {
        format!("{ASSETS_PATH}/{}.{ASSETS_HASH}.{}", self.stem, self.ext)
    }
}

const REACT: Asset = Asset {
    stem: "react",
    ext: "js",
    content_type: JAVASCRIPT,
    bytes: include_bytes!(concat!(env!("OUT_DIR"), "/graphiql/react.js")),
};
const REACT_DOM: Asset = Asset {
    stem: "react-dom",
    ext: "js",
    content_type: JAVASCRIPT,
    bytes: include_bytes!(concat!(env!("OUT_DIR"), "/graphiql/react-dom.js")),
};
const GRAPHIQL_JS: Asset = Asset {
    stem: "graphiql",
    ext: "js",
    content_type: JAVASCRIPT,
    bytes: include_bytes!(concat!(env!("OUT_DIR"), "/graphiql/graphiql.js")),
};
const GRAPHIQL_CSS: Asset = Asset {
    stem: "graphiql",
    ext: "css",
    content_type: CSS,
    bytes: include_bytes!(concat!(env!("OUT_DIR"), "/graphiql/graphiql.css")),
};
const GRAPHQL_WS: Asset = Asset {
    stem: "graphql-ws",
    ext: "js",
    content_type: JAVASCRIPT,
    bytes: include_bytes!(concat!(env!("OUT_DIR"), "/graphiql/graphql-ws.js")),
};

const ASSETS: [&Asset; 5] = [&REACT, &REACT_DOM, &GRAPHIQL_JS, &GRAPHIQL_CSS, &GRAPHQL_WS];

/// Routes serving GraphiQL's assets at `/graphiql/assets/{file}`; merge them into the app.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(&format!("{ASSETS_PATH}/{{file}}"), get(asset))
}

async fn asset(Path(file): Path<String>) -> Response {
    let Some((asset, versioned)) = ASSETS
        .iter()
        .find_map(|asset| asset.matches(&file).map(|versioned| (asset, versioned)))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let cache_control = if versioned {
        CACHE_VERSIONED
    } else {
        CACHE_UNVERSIONED
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, cache_control),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.bytes,
    )
        .into_response()
}

/// The document GraphiQL opens on (until the user has edited one): the
/// README's walkthrough, one named operation per step.
pub const WALKTHROUGH: &str = r#"# wallet-bff: a walkthrough. Pick an operation with the run button, in order.
#
# 1. Register. Copy accessToken into the Headers tab below as
#    {"Authorization": "Bearer <accessToken>"}
mutation Register {
  register(input: {email: "ann@example.com", password: "correct horse battery", displayName: "Ann"}) {
    accessToken
    refreshToken
    user { id email }
  }
}

# 2. Open a USD wallet and note its id.
mutation OpenWallet {
  openWallet(currency: "USD") { id currency balance }
}

# 3. Fund it through the development sandbox rail: put the wallet id in.
#    The same idempotencyKey again replays the first result.
mutation Deposit {
  deposit(input: {walletId: "WALLET_ID", amount: "100.00"}, idempotencyKey: "dep-1") {
    replayed
    transaction { id status amount currency }
    wallet { balance availableBalance }
  }
}

# 4. Pay another user: register bob@example.com in another tab and open his
#    USD wallet first.
mutation Transfer {
  transfer(input: {fromWalletId: "WALLET_ID", toEmail: "bob@example.com", amount: "12.50", memo: "lunch"}, idempotencyKey: "t-1") {
    transaction { id status amount }
    wallet { balance }
  }
}

# 5. Your wallets and history, newest first (page on with after: endCursor).
query History {
  me { email wallets { currency balance availableBalance frozenBalance } }
  transactions(first: 10) {
    edges { node { kind status amount currency memo createdAt } }
    pageInfo { hasNextPage endCursor }
  }
}

# 6. Live balance changes over the WebSocket: keep it running and deposit
#    again from another tab.
subscription Balances {
  balanceUpdated { sequence delta transactionId occurredAt wallet { id balance } }
}
"#;

/// The GraphiQL page. `graphql_path` and `ws_path` are root-relative paths of the GraphQL HTTP
/// and WebSocket endpoints; the page turns them into absolute `http(s)://` and `ws(s)://` URLs
/// from `window.location`.
pub fn page(graphql_path: &str, ws_path: &str) -> Html<String> {
    Html(
        PAGE.replace("{{GRAPHIQL_CSS}}", &GRAPHIQL_CSS.url())
            .replace("{{REACT_JS}}", &REACT.url())
            .replace("{{REACT_DOM_JS}}", &REACT_DOM.url())
            .replace("{{GRAPHQL_WS_JS}}", &GRAPHQL_WS.url())
            .replace("{{GRAPHIQL_JS}}", &GRAPHIQL_JS.url())
            .replace("{{GRAPHQL_PATH}}", &js_string(graphql_path))
            .replace("{{WS_PATH}}", &js_string(ws_path))
            .replace("{{DEFAULT_QUERY}}", &js_string(WALKTHROUGH)),
    )
}

/// `s` as a JavaScript string literal that is safe inside an HTML `<script>` element.
fn js_string(s: &str) -> String {
    // JSON string syntax is JavaScript string syntax; `<`, `>`, `&` and `{` can only occur inside
    // the string, where `\u00XX` escapes are equivalent. They cannot close the `<script>`
    // element, nor form a `{{...}}` placeholder that a later `replace` in `page` would fill.
    serde_json::Value::from(s)
        .to_string()
        .replace('{', "\\u007b")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>GraphiQL · wallet-bff</title>
<link rel="stylesheet" href="{{GRAPHIQL_CSS}}">
<style>
  html, body { height: 100%; margin: 0; overflow: hidden; }
  #graphiql { height: 100vh; }
</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<noscript>GraphiQL needs JavaScript.</noscript>
<script src="{{REACT_JS}}"></script>
<script src="{{REACT_DOM_JS}}"></script>
<script src="{{GRAPHQL_WS_JS}}"></script>
<script src="{{GRAPHIQL_JS}}"></script>
<script>
(function () {
  "use strict";
  var root = document.getElementById("graphiql");
  if (typeof React === "undefined" || typeof ReactDOM === "undefined" ||
      typeof GraphiQL === "undefined" || typeof graphqlWs === "undefined") {
    root.textContent = "GraphiQL could not load its scripts.";
    return;
  }

  var url = new URL({{GRAPHQL_PATH}}, window.location.href).href;
  var ws = new URL({{WS_PATH}}, window.location.href);
  ws.protocol = ws.protocol === "https:" ? "wss:" : "ws:";
  var subscriptionUrl = ws.href;

  // The Authorization header from GraphiQL's header editor, if any.
  function authorization(headers) {
    if (!headers || typeof headers !== "object") return null;
    for (var name in headers) {
      if (Object.prototype.hasOwnProperty.call(headers, name) &&
          name.toLowerCase() === "authorization" && headers[name] != null) {
        return String(headers[name]);
      }
    }
    return null;
  }

  // One WebSocket client (and fetcher) per Authorization value: the header goes in the
  // connection_init payload, so a new value needs a new connection. Clients are lazy:
  // they connect on the first subscription and disconnect when none is active.
  var current = null;
  function fetcherFor(auth) {
    if (current === null || current.auth !== auth) {
      if (current !== null) current.wsClient.dispose();
      var wsClient = graphqlWs.createClient({
        url: subscriptionUrl,
        lazy: true,
        connectionParams: auth === null ? undefined : { authorization: auth }
      });
      current = {
        auth: auth,
        wsClient: wsClient,
        fetcher: GraphiQL.createFetcher({
          url: url,
          subscriptionUrl: subscriptionUrl,
          wsClient: wsClient,
          // POST with content-type: application/json (plus the header editor's headers).
          enableIncrementalDelivery: false
        })
      };
    }
    return current.fetcher;
  }

  function fetcher(params, opts) {
    return fetcherFor(authorization(opts && opts.headers))(params, opts);
  }

  ReactDOM.createRoot(root).render(React.createElement(GraphiQL, {
    fetcher: fetcher,
    defaultQuery: {{DEFAULT_QUERY}},
    isHeadersEditorEnabled: true,
    defaultEditorToolsVisibility: true
  }));
})();
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_asset(path: &str) -> Response {
        routes::<()>()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible router")
    }

    #[test]
    fn page_embeds_paths_as_safe_js_strings() {
        let Html(html) = page("/graphql", "/graphql/ws");
        assert!(html.contains(r#"new URL("/graphql", window.location.href)"#));
        assert!(html.contains(r#"new URL("/graphql/ws", window.location.href)"#));
        assert!(!html.contains("{{"));

        let Html(html) = page("/x</script><script>alert(1)//", "/\"'&");
        assert!(!html.contains("</script><script>alert"));
        assert!(html.contains(r#""/x\u003c/script\u003e\u003cscript\u003ealert(1)//""#));
        assert!(html.contains(r#""/\"'\u0026""#));

        let Html(html) = page("{{WS_PATH}}", "/ws");
        assert!(html.contains(r#"new URL("\u007b\u007bWS_PATH}}", window.location.href)"#));
    }

    #[test]
    fn page_links_every_asset_with_its_version() {
        let Html(html) = page("/graphql", "/graphql/ws");
        for asset in ASSETS {
            let url = asset.url();
            assert!(url.contains(ASSETS_HASH));
            assert!(html.contains(&format!("\"{url}\"")), "{url} not linked");
        }
    }

    #[tokio::test]
    async fn serves_versioned_assets_immutably() {
        for asset in ASSETS {
            let response = get_asset(&asset.url()).await;
            assert_eq!(response.status(), StatusCode::OK);
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(headers[header::CACHE_CONTROL], CACHE_VERSIONED);
            let body = to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            assert!(body.len() > 1000);
            assert_eq!(body, asset.bytes);
        }
    }

    #[tokio::test]
    async fn serves_plain_names_with_short_cache() {
        let response = get_asset("/graphiql/assets/graphiql.css").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CSS);
        assert_eq!(response.headers()[header::CACHE_CONTROL], CACHE_UNVERSIONED);
        let response = get_asset("/graphiql/assets/react-dom.js").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], JAVASCRIPT);
    }

    #[tokio::test]
    async fn unknown_assets_are_not_found() {
        for path in [
            "/graphiql/assets/nope.js",
            "/graphiql/assets/graphiql.js.map",
            "/graphiql/assets/graphiql.0000000000000000.js",
            "/graphiql/assets/react.css",
        ] {
            assert_eq!(
                get_asset(path).await.status(),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
    }
}
