//! OAuth2 / OpenID Connect login: the authorization code flow with PKCE
//! (S256) and `state`, through the `oauth2` crate.
//!
//! `startOAuthLogin` keeps the PKCE verifier, the provider and the redirect
//! URI server-side under a hash of `state`; `completeOAuthLogin` takes that
//! flow (once), exchanges the code with the verifier, and asks the
//! provider's userinfo endpoint who signed in. Endpoints come from the
//! issuer's discovery document unless configured explicitly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::Context as _;
use chrono::Duration;
use domain::{DisplayName, DomainError, Email};
use entity::store::records::UserRecord;
use entity::store::security::{self, NewFlow, OauthOutcome, ProviderIdentity};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::webauthn::{kinds, lookup};
use crate::config::{OauthProviderSettings, Settings};
use crate::error::{ApiError, Result};
use crate::state::AppState;

/// Endpoints of one provider.
#[derive(Debug, Clone)]
struct Endpoints {
    auth_url: String,
    token_url: String,
    userinfo_url: String,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
}

struct Provider {
    settings: OauthProviderSettings,
    endpoints: OnceCell<Endpoints>,
}

/// The configured providers and one HTTP client for talking to them.
pub struct OauthProviders {
    providers: HashMap<String, Provider>,
    redirect_uris: Vec<String>,
    flow_ttl: Duration,
    http: reqwest::Client,
    /// Production: every endpoint, discovered ones too, must be HTTPS.
    https_only: bool,
}

impl std::fmt::Debug for OauthProviders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OauthProviders")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Server-side state of one authorization.
#[derive(Debug, Serialize, Deserialize)]
struct PendingLogin {
    provider: String,
    redirect_uri: String,
    verifier: String,
}

#[derive(Debug, Deserialize)]
struct UserInfo {
    sub: String,
    email: Option<String>,
    #[serde(default, deserialize_with = "flexible_bool")]
    email_verified: bool,
    name: Option<String>,
}

/// Some providers send `email_verified` as the string "true".
fn flexible_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flexible {
        Bool(bool),
        Text(String),
    }
    Ok(match Option::<Flexible>::deserialize(d)? {
        Some(Flexible::Bool(b)) => b,
        Some(Flexible::Text(t)) => t.eq_ignore_ascii_case("true"),
        None => false,
    })
}

/// A started login: where to send the user.
#[derive(Debug)]
pub struct Started {
    /// The provider's authorization URL with every parameter.
    pub authorization_url: String,
    /// The `state` value the app gets back on its redirect URI.
    pub state: String,
}

fn unavailable(provider: &str, err: impl std::fmt::Display) -> ApiError {
    ApiError::internal(anyhow::anyhow!("OAuth2 provider {provider}: {err}"))
}

/// Sends a request to the provider and reads its JSON answer; any failure
/// is the provider being unavailable (logged, masked for the client).
async fn fetch_json<T: serde::de::DeserializeOwned>(
    provider: &str,
    request: reqwest::RequestBuilder,
) -> Result<T> {
    request
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| unavailable(provider, e))?
        .json()
        .await
        .map_err(|e| unavailable(provider, e))
}

impl OauthProviders {
    /// From the `OAUTH_*` settings.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            // The token endpoint must answer directly: never follow redirects
            // (SSRF and code leakage).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(StdDuration::from_secs(10))
            .build()
            .context("building the OAuth2 HTTP client")?;
        let providers = settings
            .oauth_providers
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    Provider {
                        settings: p.clone(),
                        endpoints: OnceCell::new(),
                    },
                )
            })
            .collect();
        Ok(Self {
            providers,
            redirect_uris: settings.oauth_redirect_uris.clone(),
            flow_ttl: Duration::seconds(settings.oauth_flow_ttl_secs),
            http,
            https_only: settings.app_env == crate::config::AppEnv::Production,
        })
    }

    fn provider(&self, name: &str) -> Result<&Provider> {
        self.providers
            .get(&name.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                let mut known: Vec<&str> = self.providers.keys().map(String::as_str).collect();
                known.sort_unstable();
                DomainError::bad_input(format!(
                    "unknown OAuth2 provider; configured: {}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ))
                .into()
            })
    }

    async fn endpoints(&self, provider: &Provider) -> Result<Endpoints> {
        let p = &provider.settings;
        provider
            .endpoints
            .get_or_try_init(|| async {
                let discovered = match &p.issuer {
                    Some(issuer) => Some(self.discover(&p.name, issuer).await?),
                    None => None,
                };
                let pick = |explicit: &Option<String>, found: Option<String>, what: &str| {
                    explicit.clone().or(found).ok_or_else(|| {
                        unavailable(
                            &p.name,
                            format!("no {what} endpoint configured or discovered"),
                        )
                    })
                };
                let endpoints = Endpoints {
                    auth_url: pick(
                        &p.auth_url,
                        discovered
                            .as_ref()
                            .map(|d| d.authorization_endpoint.clone()),
                        "authorization",
                    )?,
                    token_url: pick(
                        &p.token_url,
                        discovered.as_ref().map(|d| d.token_endpoint.clone()),
                        "token",
                    )?,
                    userinfo_url: pick(
                        &p.userinfo_url,
                        discovered
                            .as_ref()
                            .and_then(|d| d.userinfo_endpoint.clone()),
                        "userinfo",
                    )?,
                };
                if self.https_only {
                    for url in [
                        &endpoints.auth_url,
                        &endpoints.token_url,
                        &endpoints.userinfo_url,
                    ] {
                        if !url.starts_with("https://") {
                            return Err(unavailable(
                                &p.name,
                                format!("endpoint {url} is not HTTPS (required in production)"),
                            ));
                        }
                    }
                }
                Ok::<_, ApiError>(endpoints)
            })
            .await
            .cloned()
    }

    async fn discover(&self, name: &str, issuer: &str) -> Result<Discovery> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let discovery: Discovery = fetch_json(name, self.http.get(&url)).await?;
        if discovery.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(unavailable(
                name,
                format!(
                    "discovery names issuer {:?}, configured {issuer:?}",
                    discovery.issuer
                ),
            ));
        }
        Ok(discovery)
    }

    fn client(
        &self,
        provider: &Provider,
        endpoints: &Endpoints,
        redirect_uri: &str,
    ) -> Result<
        BasicClient<
            oauth2::EndpointSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
    > {
        let name = &provider.settings.name;
        Ok(
            BasicClient::new(ClientId::new(provider.settings.client_id.clone()))
                .set_client_secret(ClientSecret::new(provider.settings.client_secret.clone()))
                .set_auth_type(match provider.settings.client_auth {
                    crate::config::ClientAuth::Basic => oauth2::AuthType::BasicAuth,
                    crate::config::ClientAuth::Post => oauth2::AuthType::RequestBody,
                })
                .set_auth_uri(
                    AuthUrl::new(endpoints.auth_url.clone()).map_err(|e| unavailable(name, e))?,
                )
                .set_token_uri(
                    TokenUrl::new(endpoints.token_url.clone()).map_err(|e| unavailable(name, e))?,
                )
                .set_redirect_uri(
                    RedirectUrl::new(redirect_uri.to_owned()).map_err(|e| unavailable(name, e))?,
                ),
        )
    }

    /// Starts a login at `provider`, returning to `redirect_uri` (which must
    /// be one of `OAUTH_REDIRECT_URIS`).
    pub async fn start(
        &self,
        state: &AppState,
        provider: &str,
        redirect_uri: &str,
    ) -> Result<Started> {
        let provider = self.provider(provider)?;
        if !self.redirect_uris.iter().any(|u| u == redirect_uri) {
            return Err(DomainError::bad_input(
                "redirectUri is not one of the redirect URIs this server allows",
            )
            .into());
        }
        let endpoints = self.endpoints(provider).await?;
        let client = self.client(provider, &endpoints, redirect_uri)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge);
        for scope in &provider.settings.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, csrf) = request.url();
        let pending = PendingLogin {
            provider: provider.settings.name.clone(),
            redirect_uri: redirect_uri.to_owned(),
            verifier: verifier.secret().clone(),
        };
        security::put_flow(
            &state.db,
            NewFlow {
                kind: kinds::OAUTH,
                lookup: lookup(kinds::OAUTH, csrf.secret()),
                user_id: None,
                payload: serde_json::to_string(&pending).map_err(ApiError::internal)?,
                expires_at: entity::store::now() + self.flow_ttl,
            },
        )
        .await?;
        Ok(Started {
            authorization_url: url.to_string(),
            state: csrf.secret().clone(),
        })
    }

    /// Completes a login: checks `state`, exchanges `code` with the PKCE
    /// verifier, reads the user from the provider, and finds, links or
    /// creates the account.
    pub async fn complete(
        &self,
        state: &AppState,
        provider: &str,
        code: &str,
        csrf_state: &str,
    ) -> Result<(UserRecord, OauthOutcome)> {
        let stale = || {
            ApiError::from(DomainError::unauthenticated(
                "this sign-in is unknown, used or expired: start it again",
            ))
        };
        if csrf_state.is_empty() || csrf_state.len() > 512 || code.is_empty() || code.len() > 2048 {
            return Err(stale());
        }
        let provider = self.provider(provider)?;
        let flow = security::take_flow(&state.db, kinds::OAUTH, &lookup(kinds::OAUTH, csrf_state))
            .await?
            .ok_or_else(stale)?;
        let pending: PendingLogin =
            serde_json::from_str(&flow.payload).map_err(ApiError::internal)?;
        if provider.settings.name != pending.provider {
            return Err(stale());
        }
        let name = &provider.settings.name;
        let endpoints = self.endpoints(provider).await?;
        let client = self.client(provider, &endpoints, &pending.redirect_uri)?;
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
            .request_async(&self.http)
            .await
            .map_err(|err| {
                // The provider refused the code (wrong, used or expired).
                tracing::info!(provider = %name, error = %err, "OAuth2 code exchange refused");
                DomainError::unauthenticated(
                    "the provider did not accept this sign-in: start it again",
                )
            })?;
        let info: UserInfo = fetch_json(
            name,
            self.http
                .get(&endpoints.userinfo_url)
                .bearer_auth(token.access_token().secret()),
        )
        .await?;
        if info.sub.is_empty() || info.sub.len() > 255 {
            return Err(unavailable(name, "userinfo without a usable sub"));
        }
        let email = info.email.as_deref().and_then(|e| Email::parse(e).ok());
        let display_name = info
            .name
            .as_deref()
            .and_then(|n| DisplayName::parse(n).ok())
            .or_else(|| {
                email
                    .as_ref()
                    .and_then(|e| e.as_str().split('@').next())
                    .and_then(|local| DisplayName::parse(local).ok())
            })
            .map_or_else(|| DisplayName::parse("Wallet user"), Ok)?;
        Ok(security::oauth_user(
            &state.db,
            ProviderIdentity {
                provider: name,
                subject: &info.sub,
                email,
                email_verified: info.email_verified,
                display_name,
            },
        )
        .await?)
    }
}

/// Shared handle.
pub type SharedProviders = Arc<OauthProviders>;

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(extra: serde_json::Value) -> bool {
        let mut info = serde_json::json!({ "sub": "s", "email": "a@example.com" });
        if let (Some(info), Some(extra)) = (info.as_object_mut(), extra.as_object()) {
            info.extend(extra.clone());
        }
        serde_json::from_value::<UserInfo>(info)
            .expect("userinfo parses")
            .email_verified
    }

    #[test]
    fn email_verified_is_true_only_when_the_provider_says_so() {
        assert!(verified(serde_json::json!({ "email_verified": true })));
        assert!(verified(serde_json::json!({ "email_verified": "true" })));
        assert!(verified(serde_json::json!({ "email_verified": "TRUE" })));
        assert!(!verified(serde_json::json!({ "email_verified": false })));
        assert!(!verified(serde_json::json!({ "email_verified": "false" })));
        assert!(!verified(
            serde_json::json!({ "email_verified": "yes please" })
        ));
        assert!(!verified(serde_json::json!({ "email_verified": null })));
        assert!(!verified(serde_json::json!({})), "absent means unverified");
    }
}
