//! Deploying several instances: they start at once on one database.

use sea_orm::{ConnectionTrait, Statement};

use crate::support::{empty_database, test_settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_at_once_migrate_one_at_a_time() {
    let url = empty_database().await;
    let mut starts = Vec::new();
    for _ in 0..4 {
        let settings = test_settings(url.clone(), false, std::env::temp_dir());
        starts.push(tokio::spawn(async move {
            api::open_database(&settings).await.map(|_| ())
        }));
    }
    for start in starts {
        start
            .await
            .expect("start task")
            .expect("every instance starts: one migrates, the others wait");
    }
    let db = entity::store::connect::connect(&url, 1)
        .await
        .expect("connect");
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM seaql_migrations",
        ))
        .await
        .expect("count")
        .expect("row");
    let applied: i64 = row.try_get("", "n").expect("n");
    let known = <migration::Migrator as migration::MigratorTrait>::migrations().len();
    assert_eq!(
        applied,
        i64::try_from(known).expect("count"),
        "each migration applied once"
    );
}

/// nginx from Debian's package with `deploy/nginx.conf`, its upstreams and
/// listen port pointed at this test's instances.
struct Nginx {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    _dir: crate::support::TempDir,
}

impl Nginx {
    fn start(upstreams: [std::net::SocketAddr; 2]) -> Nginx {
        let conf =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/nginx.conf"))
                .expect("deploy/nginx.conf");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let servers = "server api1:8080; server api2:8080;";
        assert!(
            conf.contains(servers) && conf.contains("listen 8080;"),
            "the compose config changed: {conf}"
        );
        let conf = conf
            .replace(
                servers,
                &format!("server {}; server {};", upstreams[0], upstreams[1]),
            )
            .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"));
        let dir = crate::support::TempDir(std::env::temp_dir().join(format!(
            "wallet-bff-nginx-{}",
            uuid::Uuid::new_v4().simple()
        )));
        std::fs::create_dir_all(&dir.0).expect("dir");
        let path = dir.0.join("nginx.conf");
        std::fs::write(&path, conf).expect("write conf");
        let nginx = std::env::var("TEST_NGINX").unwrap_or_else(|_| "nginx".to_owned());
        let global = format!(
            "daemon off; pid {0}/nginx.pid; error_log {0}/error.log;",
            dir.0.display()
        );
        let mut child = std::process::Command::new(&nginx)
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(&path)
            .arg("-g")
            .arg(global)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("nginx must be installed for this test (scripts/test.sh installs it): {nginx}: {e}"));
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Nginx {
                    child,
                    addr: ([127, 0, 0, 1], port).into(),
                    _dir: dir,
                };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("nginx did not listen on {port}");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client whose connections come from `source` (a loopback address).
fn client_from(source: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(source))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_nginx_sign_in_transfer_stream_and_survive_one_stopping() {
    use serde_json::json;
    use std::time::Duration;

    use crate::support::{ServerProcess, TestApp, WsClient, data};

    let db = crate::support::fresh_database().await;
    let prefix = format!("rl-nginx-{}", uuid::Uuid::new_v4().simple());
    let start = |db: String, prefix: String| {
        tokio::task::spawn_blocking(move || {
            ServerProcess::start(
                &db,
                &[
                    ("APP_ENV", "development"),
                    ("TRUST_FORWARDED_FOR", "true"),
                    ("RATE_LIMITS_ENABLED", "true"),
                    ("RATE_LIMIT_PREFIX", &prefix),
                    ("RATE_REQUESTS_ANONYMOUS", "20/600"),
                ],
            )
        })
    };
    let (a, b) = tokio::join!(start(db.clone(), prefix.clone()), start(db.clone(), prefix));
    let (a, b) = (a.expect("instance a"), b.expect("instance b"));
    let nginx = tokio::task::spawn_blocking({
        let ups = [a.addr, b.addr];
        move || Nginx::start(ups)
    })
    .await
    .expect("nginx");
    let front = TestApp::attach(nginx.addr, &db).await;

    // The client's own address, as nginx saw it, is what the instances count:
    // a forged X-Forwarded-For from 127.0.0.3 does not move it to another bucket.
    let typename = json!({ "query": "{ __typename }" });
    let from3 = client_from([127, 0, 0, 3]);
    let mut statuses = Vec::new();
    for _ in 0..21 {
        let resp = from3
            .post(front.url("/graphql"))
            .header("x-forwarded-for", "198.51.100.9")
            .json(&typename)
            .send()
            .await
            .expect("through nginx");
        statuses.push(resp.status().as_u16());
    }
    assert!(statuses[..20].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        statuses[20], 429,
        "the 21st from 127.0.0.3 is over its limit"
    );
    let from4 = client_from([127, 0, 0, 4]);
    let other = from4
        .post(front.url("/graphql"))
        .json(&typename)
        .send()
        .await
        .expect("through nginx");
    assert_eq!(
        other.status().as_u16(),
        200,
        "127.0.0.4 has a bucket of its own"
    );

    // Sign in, fund, subscribe over WebSocket through nginx, transfer.
    let alice = front.register("nginx-alice@example.com").await;
    let bob = front.register("nginx-bob@example.com").await;
    let alice = front.login(&alice.email).await;
    let aw = front.open_wallet(&alice, "EUR").await;
    let bw = front.open_wallet(&bob, "EUR").await;
    data(
        &front.deposit(&alice, &aw, "50", "nginx-fund").await,
        "deposit",
    );
    let mut ws = WsClient::authed(nginx.addr, "graphql-transport-ws", &bob.token).await;
    ws.subscribe(
        "1",
        "subscription($after: Int) { balanceUpdated(afterSequence: $after) { sequence wallet { balance } } }",
        json!({ "after": 0 }),
    )
    .await;
    let sent = front
        .transfer(
            &alice,
            json!({ "fromWalletId": aw, "toWalletId": bw, "amount": "7.5" }),
            "nginx-t1",
        )
        .await;
    data(&sent, "transfer");
    let event = ws.next_data("1", Duration::from_secs(5)).await;
    assert_eq!(event["data"]["balanceUpdated"]["wallet"]["balance"], "7.50");

    // The compose file's health check: `wallet-bff healthcheck` asks /readyz.
    let healthcheck = |addr: std::net::SocketAddr| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wallet-bff"))
            .arg("healthcheck")
            .env_clear()
            .env("BIND_ADDR", addr.to_string())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run healthcheck")
            .success()
    };
    let b_addr = b.addr;
    assert!(healthcheck(b_addr), "a running instance is healthy");

    // One instance stops: requests keep succeeding through the other.
    b.kill();
    assert!(!healthcheck(b_addr), "a stopped one is not");
    for i in 0..10 {
        let t = front
            .transfer(
                &alice,
                json!({ "fromWalletId": aw, "toWalletId": bw, "amount": "1" }),
                &format!("nginx-after-{i}"),
            )
            .await;
        assert_eq!(data(&t, "transfer")["transaction"]["status"], "COMPLETED");
    }
    let me = front
        .gql(
            Some(&bob.token),
            "{ me { wallets { balance } } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&me, "me")["wallets"][0]["balance"], "17.50");
    drop(a);
}
