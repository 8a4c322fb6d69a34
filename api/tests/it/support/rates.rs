//! A local exchange-rates endpoint: `GET /rates` answers the prices the test
//! set, published `age` ago, or 503 while it is down.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

struct Inner {
    prices: Vec<(&'static str, &'static str)>,
    age_secs: i64,
    down: bool,
    requests: usize,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<Inner>>);

/// A running rates endpoint.
pub struct FakeRates {
    pub addr: SocketAddr,
    shared: Shared,
}

impl FakeRates {
    pub async fn start() -> FakeRates {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Shared(Arc::new(Mutex::new(Inner {
            prices: vec![
                ("USD", "1"),
                ("EUR", "1.08"),
                ("USDC", "1"),
                ("BTC", "97000"),
                ("ETH", "3600"),
            ],
            age_secs: 0,
            down: false,
            requests: 0,
        })));
        let app = axum::Router::new()
            .route("/rates", get(rates))
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeRates { addr, shared }
    }

    pub fn configure(&self, settings: &mut api::config::Settings) {
        settings.fx.rates =
            api::config::payments::RatesSource::Http(format!("http://{}/rates", self.addr));
    }

    /// Publish the rates as if `secs` old.
    pub fn set_age(&self, secs: i64) {
        self.shared.0.lock().expect("state").age_secs = secs;
    }

    pub fn set_down(&self, down: bool) {
        self.shared.0.lock().expect("state").down = down;
    }

    pub fn requests(&self) -> usize {
        self.shared.0.lock().expect("state").requests
    }
}

async fn rates(State(shared): State<Shared>) -> Response {
    let mut inner = shared.0.lock().expect("state");
    inner.requests += 1;
    if inner.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let prices: serde_json::Map<String, serde_json::Value> = inner
        .prices
        .iter()
        .map(|(c, p)| ((*c).to_owned(), json!(p)))
        .collect();
    Json(json!({
        "base": "USD",
        "timestamp": chrono::Utc::now().timestamp() - inner.age_secs,
        "prices": prices,
    }))
    .into_response()
}
