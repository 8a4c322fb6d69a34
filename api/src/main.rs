//! `wallet-bff`: `serve`, `migrate`, `healthcheck`, `export-schema`, `export-error-codes`, `rotate-keys`, `grant-role`.

use anyhow::Context;
use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's allocator: a request allocates and frees
/// many small objects across worker threads, where glibc's `malloc` and
/// `free` took about a fifth of the server's CPU time (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's options, for the allocator to read at the process's first
/// allocation. Its defaults keep arenas committed and freed pages for a
/// second, which doubles an idle server's resident memory (about 50 MB
/// instead of 25); these give freed pages back at once, at no measurable
/// cost in throughput (BENCHMARKS.md). An operator's own values win.
const ALLOCATOR_OPTIONS: [(&str, &str); 2] = [
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
    ("MIMALLOC_PURGE_DELAY", "0"),
];

/// Options read at the first allocation cannot be set from `main`, which
/// runs after it: when they are missing from the environment, the process
/// replaces itself (same pid, same arguments) with one that has them.
#[cfg(unix)]
fn tune_allocator() {
    use std::os::unix::process::CommandExt;
    if ALLOCATOR_OPTIONS
        .iter()
        .all(|(name, _)| std::env::var_os(name).is_some())
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    cmd.args(args);
    for (name, value) in ALLOCATOR_OPTIONS {
        if std::env::var_os(name).is_none() {
            cmd.env(name, value);
        }
    }
    // Returns only when the exec failed: go on with mimalloc's defaults.
    let err = cmd.exec();
    eprintln!(
        "wallet-bff: could not restart with the allocator's options ({err}); using its defaults"
    );
}

#[cfg(not(unix))]
fn tune_allocator() {}

fn main() -> anyhow::Result<()> {
    tune_allocator();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?
        .block_on(cli())
}

/// The wallet-bff server. Configuration comes from environment variables
/// (see README.md and `.env.sample`).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Ask the server at BIND_ADDR for `/readyz`: exit 0 when it is ready
    /// (for container health checks, where no curl is installed).
    Healthcheck,
    /// Print the GraphQL SDL that schema.graphql must equal.
    ExportSchema,
    /// Print frontend-contract/src/error-codes.ts (the error codes as TypeScript).
    ExportErrorCodes,
    /// Re-encrypt every personal value under the current PII_KEYS key, in
    /// batches (safe while servers run); then older keys can be dropped.
    RotateKeys {
        /// Rows per batch.
        #[arg(long, default_value_t = 200)]
        batch: u64,
    },
    /// Grant a role to the account with this e-mail.
    GrantRole {
        /// The account's e-mail.
        #[arg(long)]
        email: String,
        /// user, support, compliance or admin.
        #[arg(long)]
        role: String,
    },
}

async fn cli() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::ExportSchema) => {
            print!("{}", api::graphql::sdl());
            return Ok(());
        }
        Some(Command::ExportErrorCodes) => {
            print!("{}", api::graphql::error_codes_ts());
            return Ok(());
        }
        Some(Command::Healthcheck) => return healthcheck().await,
        _ => {}
    }
    let settings = api::config::Settings::from_env()?;
    let telemetry = api::telemetry::init(settings.log_format, settings.traces.as_ref())?;
    let result = run(cli.command.unwrap_or(Command::Serve), settings).await;
    telemetry.shutdown().await;
    result
}

async fn run(command: Command, settings: api::config::Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            if settings.embedded {
                tracing::info!(data_dir = %settings.data_dir.display(), "no DATABASE_URL: using the embedded SQLite database");
            }
            let state = api::build_state(settings.clone()).await?;
            let listener = tokio::net::TcpListener::bind(settings.bind_addr)
                .await
                .with_context(|| format!("binding {}", settings.bind_addr))?;
            let addr = listener.local_addr().context("reading the bound address")?;
            tracing::info!("listening on http://{addr}");
            if settings.graphiql_enabled {
                tracing::info!("GraphiQL: open http://{addr}/graphql in a browser");
            }
            api::serve(listener, state, shutdown_signal()).await
        }
        Command::Migrate => {
            api::open_database(&settings).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::RotateKeys { batch } => {
            let db = api::open_database(&settings).await?;
            let keys = settings.resolve_pii_keys()?;
            let resealed = entity::store::account::rotate_keys(&db, &keys, batch.max(1))
                .await
                .context("re-encrypting personal data")?;
            tracing::info!(
                resealed,
                key = keys.current_id(),
                "personal data re-encrypted under the current key"
            );
            Ok(())
        }
        Command::GrantRole { email, role } => {
            let email = domain::Email::parse(&email).map_err(|e| anyhow::anyhow!(e.message))?;
            let role = domain::Role::parse(&role).map_err(|e| anyhow::anyhow!(e.message))?;
            let db = api::open_database(&settings).await?;
            let user = entity::store::users::grant_role(&db, None, &email, role)
                .await
                .with_context(|| format!("granting the role {}", role.as_str()))?;
            tracing::info!(user.id = %user.id, role = role.as_str(), "role granted");
            Ok(())
        }
        Command::ExportSchema | Command::ExportErrorCodes | Command::Healthcheck => Ok(()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

/// `GET /readyz` on this machine's BIND_ADDR (a wildcard address is asked on
/// loopback), within two seconds.
async fn healthcheck() -> anyhow::Result<()> {
    let raw = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let mut addr: std::net::SocketAddr = raw
        .parse()
        .with_context(|| format!("BIND_ADDR={raw:?} is not an address"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let resp = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()?
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .with_context(|| format!("asking http://{addr}/readyz"))?;
    anyhow::ensure!(resp.status().is_success(), "not ready: {}", resp.status());
    Ok(())
}
