//! Trusted documents: the apps' operations, known ahead by their SHA-256 id
//! from the persisted-documents manifests `frontend-contract` generates
//! (`GRAPHQL_TRUSTED_DOCUMENTS_FILE`, several: old app builds stay installed
//! for weeks, so manifests are only ever added).
//!
//! - `off`: no manifest; Automatic Persisted Queries as usual.
//! - `allow`: a manifest id (`documentId`, or APQ's
//!   `extensions.persistedQuery.sha256Hash`) runs its manifest document;
//!   anything else runs as without manifests.
//! - `require`: only manifest documents run: by id, or sent as their exact
//!   text. Anything else is refused with `TRUSTED_DOCUMENT_REQUIRED`, before
//!   parsing or validation. Recommended in production.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use async_graphql::{Request, ServerResult};
use domain::ErrorCode;
use sha2::{Digest, Sha256};

use crate::error::coded_server_error;

/// How trusted documents are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustedMode {
    /// No manifests.
    Off,
    /// Manifest documents run by id; others too.
    Allow,
    /// Only manifest documents run.
    Require,
}

impl std::str::FromStr for TrustedMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "off" => Ok(TrustedMode::Off),
            "allow" => Ok(TrustedMode::Allow),
            "require" => Ok(TrustedMode::Require),
            other => Err(format!("{other:?} is not off, allow or require")),
        }
    }
}

/// The manifests' documents by their hex SHA-256.
#[derive(Debug, Default)]
pub struct Manifest {
    docs: HashMap<String, String>,
}

impl Manifest {
    /// Reads manifests (JSON objects of `"sha256:<hex>"` or `"<hex>"` to the
    /// document's text) and checks that every id is its text's hash.
    pub fn load(files: &[PathBuf]) -> anyhow::Result<Self> {
        let mut docs = HashMap::new();
        for file in files {
            let text = std::fs::read_to_string(file).with_context(|| {
                format!(
                    "GRAPHQL_TRUSTED_DOCUMENTS_FILE: cannot read {}",
                    file.display()
                )
            })?;
            let entries: HashMap<String, String> = serde_json::from_str(&text).with_context(|| {
                format!(
                    "GRAPHQL_TRUSTED_DOCUMENTS_FILE: {} is not a persisted-documents manifest (a JSON object of id to document)",
                    file.display()
                )
            })?;
            for (id, doc) in entries {
                let hex = id
                    .strip_prefix("sha256:")
                    .unwrap_or(&id)
                    .to_ascii_lowercase();
                if hash(&doc) != hex {
                    anyhow::bail!(
                        "GRAPHQL_TRUSTED_DOCUMENTS_FILE: in {}, {id} is not the SHA-256 of its document",
                        file.display()
                    );
                }
                docs.insert(hex, doc);
            }
        }
        Ok(Self { docs })
    }

    /// How many documents the manifests hold.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether they hold none.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    fn by_id(&self, id: &str) -> Option<&String> {
        let hex = id
            .strip_prefix("sha256:")
            .unwrap_or(id)
            .to_ascii_lowercase();
        self.docs.get(&hex)
    }
}

fn hash(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// The manifests and how they are enforced (asked before the APQ store).
pub struct TrustedDocuments {
    mode: TrustedMode,
    manifest: Arc<Manifest>,
}

impl TrustedDocuments {
    /// Enforces `mode` with `manifest`.
    pub fn new(mode: TrustedMode, manifest: Arc<Manifest>) -> Self {
        Self { mode, manifest }
    }
}

/// The id a request names its document by: GraphQL over HTTP's
/// `documentId` (the HTTP layer puts it in `extensions`), or APQ's hash.
fn requested_id(request: &Request) -> Option<String> {
    if let Some(async_graphql::Value::String(id)) = request.extensions.get("documentId") {
        return Some(id.clone());
    }
    let persisted = request.extensions.get("persistedQuery")?;
    let async_graphql::Value::Object(fields) = persisted else {
        return None;
    };
    match fields.get("sha256Hash") {
        Some(async_graphql::Value::String(h)) => Some(h.clone()),
        _ => None,
    }
}

fn refused(message: &str) -> async_graphql::ServerError {
    coded_server_error(ErrorCode::TrustedDocumentRequired, message)
}

impl TrustedDocuments {
    /// Puts the manifest document in place of a known id, or refuses the
    /// request as the mode says; before parsing, so a refused document
    /// costs nothing more.
    pub fn prepare(&self, mut request: Request) -> ServerResult<Request> {
        if self.mode == TrustedMode::Off {
            request.extensions.remove("documentId");
            return Ok(request);
        }
        match requested_id(&request) {
            Some(id) => match self.manifest.by_id(&id) {
                Some(doc) => {
                    if !request.query.is_empty() && request.query != *doc {
                        return Err(refused("the document sent is not the one its id names"));
                    }
                    request.query = doc.clone();
                    // Known here: the APQ store is not asked.
                    request.extensions.remove("persistedQuery");
                    request.extensions.remove("documentId");
                }
                None if self.mode == TrustedMode::Require => {
                    return Err(refused(
                        "this document id is not in the trusted documents of any app release",
                    ));
                }
                None => {
                    request.extensions.remove("documentId");
                }
            },
            None if self.mode == TrustedMode::Require
                && self.manifest.by_id(&hash(&request.query)).is_none() =>
            {
                return Err(refused(
                    "only the apps' trusted documents run here: send a document id from the manifest",
                ));
            }
            None => {}
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_whose_id_is_not_its_documents_hash_is_refused() {
        let dir = std::env::temp_dir().join(format!("wallet-bff-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("good.json");
        let doc = "query Me { me { id } }";
        std::fs::write(
            &good,
            serde_json::json!({ format!("sha256:{}", hash(doc)): doc }).to_string(),
        )
        .expect("write");
        let bad = dir.join("bad.json");
        std::fs::write(
            &bad,
            serde_json::json!({ format!("sha256:{}", hash("other")): doc }).to_string(),
        )
        .expect("write");
        let manifest = Manifest::load(std::slice::from_ref(&good)).expect("good manifest");
        assert_eq!(manifest.len(), 1);
        assert_eq!(
            manifest
                .by_id(&format!("sha256:{}", hash(doc)))
                .map(String::as_str),
            Some(doc)
        );
        let err = format!("{:#}", Manifest::load(&[good, bad]).expect_err("tampered"));
        assert!(err.contains("GRAPHQL_TRUSTED_DOCUMENTS_FILE"), "{err}");
        assert!("maybe".parse::<TrustedMode>().is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
