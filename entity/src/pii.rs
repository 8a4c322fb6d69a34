//! Personal data encrypted at rest with AES-256-GCM.
//!
//! Each value is sealed under a key derived (HKDF-SHA256) from two secrets:
//! a master key from `PII_KEYS`, which never touches the database, and the
//! user's own data key, a random 32-byte secret in `user_keys`. Destroying
//! the user's data key makes every value of that user unreadable for good
//! (crypto-shredding), backups of the rows included, while the master keys
//! stay for everyone else.
//!
//! A sealed value is text: `v1.<master key id>.<base64(nonce ‖ ciphertext ‖ tag)>`,
//! with a fresh 96-bit random nonce per value. The associated data binds the
//! value to its table, column and row and to the key id, so a value copied
//! into another row or column fails to decrypt instead of showing someone
//! else's data. `rotate-keys` re-seals values whose key id is not the
//! current one.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use sha2::Sha256;
use uuid::Uuid;

/// Version prefix of sealed values.
const VERSION: &str = "v1";
/// HKDF info string: a key for this purpose only.
const INFO: &[u8] = b"wallet-bff personal data v1";

/// Why a value could not be sealed or opened. Says nothing about the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PiiError {
    /// The stored text is not a sealed value.
    #[error("not a sealed value")]
    Malformed,
    /// The value names a master key that is not configured.
    #[error("master key {0:?} is not in PII_KEYS")]
    UnknownKey(String),
    /// Wrong key, wrong row or column, or tampered.
    #[error("the value does not decrypt here")]
    Undecryptable,
    /// The user's data key was destroyed (the account was erased).
    #[error("the user's data key was destroyed")]
    Shredded,
}

/// The master keys, by id, and which one seals new values.
#[derive(Clone)]
pub struct Keyring {
    keys: BTreeMap<String, [u8; 32]>,
    current: String,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish()
    }
}

impl Keyring {
    /// Parses `PII_KEYS`: `ID=BASE64` entries, comma-separated, each key 32
    /// bytes, ids of letters, digits, `-` and `_`; exactly one marked current
    /// with a leading `*`. Errors name the entry, never a key.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut keys = BTreeMap::new();
        let mut current = None;
        for (n, entry) in raw
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (marked, entry) = match entry.strip_prefix('*') {
                Some(rest) => (true, rest),
                None => (false, entry),
            };
            let (id, key) = entry
                .split_once('=')
                .ok_or_else(|| format!("entry {} is not ID=BASE64", n + 1))?;
            let id = id.trim();
            if id.is_empty()
                || id.len() > 32
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "entry {}: a key id has 1 to 32 letters, digits, '-' or '_'",
                    n + 1
                ));
            }
            let bytes = STANDARD
                .decode(key.trim())
                .map_err(|_| format!("key {id:?} is not base64"))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| format!("key {id:?} must be 32 bytes (AES-256)"))?;
            if keys.insert(id.to_owned(), key).is_some() {
                return Err(format!("key id {id:?} appears twice"));
            }
            if marked {
                if current.is_some() {
                    return Err("more than one key is marked current ('*')".to_owned());
                }
                current = Some(id.to_owned());
            }
        }
        if keys.is_empty() {
            return Err("no keys".to_owned());
        }
        let current = current.ok_or("no key is marked current (prefix its id with '*')")?;
        Ok(Self { keys, current })
    }

    /// A fresh `PII_KEYS` value with one random key, current.
    pub fn generate(id: &str) -> String {
        format!("*{id}={}", STANDARD.encode(rand::random::<[u8; 32]>()))
    }

    /// The id of the key new values are sealed under.
    pub fn current_id(&self) -> &str {
        &self.current
    }

    fn cipher(&self, key_id: &str, user: &UserKey) -> Result<Aes256Gcm, PiiError> {
        let master = self
            .keys
            .get(key_id)
            .ok_or_else(|| PiiError::UnknownKey(key_id.to_owned()))?;
        let hk = Hkdf::<Sha256>::new(Some(&user.0), master);
        let mut okm = [0u8; 32];
        hk.expand(INFO, &mut okm)
            .map_err(|_| PiiError::Undecryptable)?;
        Ok(Aes256Gcm::new(&Key::<Aes256Gcm>::from(okm)))
    }

    /// Seals `plaintext` for the user at `at`, under the current key.
    pub fn seal(&self, user: &UserKey, at: Field, plaintext: &str) -> String {
        let cipher = self
            .cipher(&self.current, user)
            .expect("the current key is in the ring");
        let nonce_bytes: [u8; 12] = rand::random();
        let aad = at.associated_data(&self.current);
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a short value cannot fail");
        let mut body = Vec::with_capacity(12 + sealed.len());
        body.extend_from_slice(&nonce_bytes);
        body.extend_from_slice(&sealed);
        format!("{VERSION}.{}.{}", self.current, STANDARD.encode(body))
    }

    /// Opens a sealed value of the user at `at`.
    pub fn open(&self, user: &UserKey, at: Field, sealed: &str) -> Result<String, PiiError> {
        let (key_id, body) = split(sealed)?;
        let cipher = self.cipher(key_id, user)?;
        let body = STANDARD.decode(body).map_err(|_| PiiError::Malformed)?;
        if body.len() < 12 + 16 {
            return Err(PiiError::Malformed);
        }
        let (nonce, ciphertext) = body.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| PiiError::Malformed)?;
        let aad = at.associated_data(key_id);
        let plain = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| PiiError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| PiiError::Undecryptable)
    }

    /// Whether a sealed value is under the current key.
    pub fn is_current(&self, sealed: &str) -> bool {
        split(sealed).is_ok_and(|(id, _)| id == self.current)
    }

    /// Opens and seals again under the current key (`None`: already current).
    pub fn reseal(
        &self,
        user: &UserKey,
        at: Field,
        sealed: &str,
    ) -> Result<Option<String>, PiiError> {
        if self.is_current(sealed) {
            return Ok(None);
        }
        let plain = self.open(user, at, sealed)?;
        Ok(Some(self.seal(user, at, &plain)))
    }
}

fn split(sealed: &str) -> Result<(&str, &str), PiiError> {
    let mut parts = sealed.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(VERSION), Some(id), Some(body)) if !id.is_empty() => Ok((id, body)),
        _ => Err(PiiError::Malformed),
    }
}

/// A user's own data key; gone once the account is erased.
#[derive(Clone)]
pub struct UserKey(pub [u8; 32]);

impl std::fmt::Debug for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserKey(***)")
    }
}

impl UserKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(rand::random())
    }

    /// The stored (base64) form.
    pub fn encode(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// From the stored form.
    pub fn decode(text: &str) -> Result<Self, PiiError> {
        let bytes = STANDARD.decode(text).map_err(|_| PiiError::Malformed)?;
        Ok(Self(bytes.try_into().map_err(|_| PiiError::Malformed)?))
    }
}

/// Where a sealed value lives: its table, column and row.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Table name.
    pub table: &'static str,
    /// Column name.
    pub column: &'static str,
    /// The row's id.
    pub row: Uuid,
}

impl Field {
    /// The field `column` of row `row` in `table`.
    pub fn new(table: &'static str, column: &'static str, row: Uuid) -> Self {
        Self { table, column, row }
    }

    fn associated_data(&self, key_id: &str) -> String {
        format!(
            "{VERSION}|{}|{}|{}|{key_id}",
            self.table, self.column, self.row
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(raw: &str) -> Keyring {
        Keyring::parse(raw).expect("keys")
    }

    #[test]
    fn values_open_only_where_they_were_sealed() {
        let keys = Keyring::generate("k1");
        let ring = ring(&keys);
        let user = UserKey::generate();
        let row = Uuid::now_v7();
        let at = Field::new("users", "phone", row);
        let sealed = ring.seal(&user, at, "+44 20 7946 0000");
        assert!(sealed.starts_with("v1.k1."));
        assert!(!sealed.contains("7946"));
        assert_eq!(
            ring.open(&user, at, &sealed).expect("opens"),
            "+44 20 7946 0000"
        );
        // Another row, another column, another user: nothing.
        let other_row = Field::new("users", "phone", Uuid::now_v7());
        assert_eq!(
            ring.open(&user, other_row, &sealed),
            Err(PiiError::Undecryptable)
        );
        let other_col = Field::new("users", "address", row);
        assert_eq!(
            ring.open(&user, other_col, &sealed),
            Err(PiiError::Undecryptable)
        );
        assert_eq!(
            ring.open(&UserKey::generate(), at, &sealed),
            Err(PiiError::Undecryptable)
        );
        // Two seals of one value differ (fresh nonces).
        assert_ne!(sealed, ring.seal(&user, at, "+44 20 7946 0000"));
    }

    #[test]
    fn rotation_reseals_under_the_current_key_and_old_keys_still_open() {
        let old = Keyring::generate("old");
        let new = Keyring::generate("new");
        let before = ring(&old);
        let after = ring(&format!("{},{}", new, old.trim_start_matches('*')));
        assert_eq!(after.current_id(), "new");
        let user = UserKey::generate();
        let at = Field::new("kyc_applications", "legal_name", Uuid::now_v7());
        let sealed = before.seal(&user, at, "Ada Lovelace");
        assert_eq!(
            after.open(&user, at, &sealed).expect("old key opens"),
            "Ada Lovelace"
        );
        let resealed = after
            .reseal(&user, at, &sealed)
            .expect("reseal")
            .expect("changed");
        assert!(resealed.starts_with("v1.new."));
        assert_eq!(after.reseal(&user, at, &resealed).expect("reseal"), None);
        // Without the old key only the resealed value opens.
        let only_new = ring(&new);
        assert_eq!(
            only_new.open(&user, at, &resealed).expect("opens"),
            "Ada Lovelace"
        );
        assert_eq!(
            only_new.open(&user, at, &sealed),
            Err(PiiError::UnknownKey("old".to_owned()))
        );
    }

    #[test]
    fn bad_key_lists_are_refused_without_showing_keys() {
        let good = STANDARD.encode([7u8; 32]);
        let short = STANDARD.encode([7u8; 16]);
        assert!(Keyring::parse(&format!("*a={good}")).is_ok());
        for (raw, needle) in [
            (format!("a={good}"), "marked current"),
            (format!("*a={short}"), "32 bytes"),
            (format!("*a={good},*b={good}"), "more than one"),
            (format!("*a={good},a={good}"), "twice"),
            ("*a=not base64!".to_owned(), "base64"),
            (format!("*a b={good}"), "key id"),
            (String::new(), "no keys"),
        ] {
            let err = Keyring::parse(&raw).expect_err(&raw);
            assert!(err.contains(needle), "{raw}: {err}");
            assert!(!err.contains(&good) && !err.contains(&short));
        }
    }

    #[test]
    fn tampered_and_malformed_values_are_refused() {
        let ring = ring(&Keyring::generate("k"));
        let user = UserKey::generate();
        let at = Field::new("users", "address", Uuid::now_v7());
        let sealed = ring.seal(&user, at, "1 Main St");
        let mut body = STANDARD
            .decode(sealed.rsplit('.').next().expect("body"))
            .expect("b64");
        body[14] ^= 1;
        let tampered = format!("v1.k.{}", STANDARD.encode(body));
        assert_eq!(
            ring.open(&user, at, &tampered),
            Err(PiiError::Undecryptable)
        );
        assert_eq!(ring.open(&user, at, "1 Main St"), Err(PiiError::Malformed));
        assert_eq!(ring.open(&user, at, "v1.k.AAAA"), Err(PiiError::Malformed));
    }
}
