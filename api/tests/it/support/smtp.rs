//! A real SMTP server for the tests: `scripts/smtp/sink.py` on Debian's
//! aiosmtpd (installed by scripts/test.sh), one per test, which the test
//! may stop and start again on the same port.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// One message the server accepted.
#[derive(Debug, Clone, Deserialize)]
pub struct Mail {
    /// SMTP `RCPT TO` addresses.
    pub rcpt_tos: Vec<String>,
    /// The `Message-ID` header.
    pub message_id: String,
    /// The `From` header.
    pub from: String,
    /// The `Subject` header.
    pub subject: String,
    /// The plain text part.
    pub text: Option<String>,
    /// The HTML part.
    pub html: Option<String>,
}

/// A running SMTP sink.
pub struct SmtpSink {
    pub port: u16,
    dir: PathBuf,
    delay_ms: u64,
    child: Option<std::process::Child>,
}

fn python() -> String {
    std::env::var("TEST_SMTP_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".to_owned())
}

impl SmtpSink {
    /// Starts a sink that accepts at once.
    pub fn start() -> Self {
        Self::start_with_delay(0)
    }

    /// Starts a sink that answers each message after `delay_ms` (and keeps
    /// it only when the client is still connected then).
    pub fn start_with_delay(delay_ms: u64) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = std::env::temp_dir().join(format!("wallet-bff-smtp-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("sink dir");
        let mut sink = Self {
            port,
            dir,
            delay_ms,
            child: None,
        };
        sink.restart();
        sink
    }

    /// `SMTP_URL` for the server (no TLS on loopback).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on the same port and waits until it accepts.
    pub fn restart(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/smtp/sink.py");
        let child = std::process::Command::new(python())
            .args([
                script,
                "--port",
                &self.port.to_string(),
                "--dir",
                &self.dir.display().to_string(),
                "--delay-ms",
                &self.delay_ms.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd must be installed for this test (scripts/test.sh installs python3-aiosmtpd)");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the SMTP sink did not start on port {}", self.port);
    }

    /// Kills it; messages it accepted stay readable.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every message accepted so far, in order.
    pub fn mails(&self) -> Vec<Mail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .expect("sink dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).expect("mail file");
                serde_json::from_str(&text).expect("mail json")
            })
            .collect()
    }

    /// How many messages it is holding its reply to right now.
    pub fn in_flight(&self) -> usize {
        std::fs::read_dir(&self.dir)
            .expect("sink dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("pending-"))
            .count()
    }

    /// Waits until at least `n` messages arrived; returns them all.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Mail> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mails = self.mails();
            if mails.len() >= n || tokio::time::Instant::now() >= deadline {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
