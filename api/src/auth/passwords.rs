//! argon2id password hashes. Hashing runs on the blocking pool; a login for an
//! unknown account verifies against a dummy hash so both take the same time.

use std::sync::{Arc, OnceLock};

use anyhow::Context;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Params, Version};
use domain::Password;

/// At most one hash per core at a time: each takes 19 MiB and a core for
/// tens of milliseconds, so a burst of logins queues here instead of
/// exhausting memory on the blocking pool.
fn hashing_slots() -> Arc<tokio::sync::Semaphore> {
    static SLOTS: OnceLock<Arc<tokio::sync::Semaphore>> = OnceLock::new();
    SLOTS
        .get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            Arc::new(tokio::sync::Semaphore::new(cores))
        })
        .clone()
}

fn hasher() -> Argon2<'static> {
    // OWASP's argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Runs argon2 work on the blocking pool once a hashing slot is free. The
/// slot is held by the blocking task itself, so a cancelled request cannot
/// free it before the work ends.
async fn on_hashing_slot<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let slot = hashing_slots()
        .acquire_owned()
        .await
        .context("hashing slots closed")?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    })
    .await
    .context("password hashing task")?
}

/// Hashes a new password into a PHC string.
pub async fn hash(password: &Password) -> anyhow::Result<String> {
    let secret = password.expose().to_owned();
    on_hashing_slot(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher()
            .hash_password(secret.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    })
    .await
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        hasher()
            .hash_password(b"wallet-bff dummy password for timing", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Verifies a password against a stored hash; with no stored hash, verifies
/// against a dummy one and returns false, taking the same time.
pub async fn verify(password: &Password, stored: Option<String>) -> anyhow::Result<bool> {
    let secret = password.expose().to_owned();
    on_hashing_slot(move || {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let parsed = PasswordHash::new(&phc).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
        let ok = hasher().verify_password(secret.as_bytes(), &parsed).is_ok();
        Ok(known && ok)
    })
    .await
}

/// Computes the dummy hash ahead of the first login.
pub fn warm_up() {
    let _ = dummy_hash();
}
