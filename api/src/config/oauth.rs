//! Sign-in through OAuth2 / OpenID Connect providers (authorization code
//! with PKCE): which providers, their endpoints and client credentials.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `OAUTH_PROVIDERS` | empty | OAuth2 / OpenID Connect providers, comma-separated names (`google,github`) |
//! | `OAUTH_<NAME>_ISSUER` | none | issuer URL: endpoints come from its `/.well-known/openid-configuration` |
//! | `OAUTH_<NAME>_AUTH_URL`, `_TOKEN_URL`, `_USERINFO_URL` | from discovery | explicit endpoints, instead of or over the issuer's |
//! | `OAUTH_<NAME>_CLIENT_ID`, `_CLIENT_SECRET` | required per provider | client credentials registered at the provider |
//! | `OAUTH_<NAME>_SCOPES` | `openid email profile` | scopes requested |
//! | `OAUTH_<NAME>_CLIENT_AUTH` | `client_secret_basic` | or `client_secret_post`: how the client authenticates at the token endpoint |
//! | `OAUTH_REDIRECT_URIS` | empty | redirect URIs the apps may pass to `startOAuthLogin`, comma-separated (exact match) |
//! | `OAUTH_FLOW_TTL_SECS` | `600` | how long an authorization may take |

use anyhow::bail;

use super::Env;

/// One OAuth2 / OpenID Connect provider. `Debug` hides the secret.
#[derive(Clone)]
pub struct OauthProviderSettings {
    /// Name used in `startOAuthLogin(provider:)`, lower case.
    pub name: String,
    /// Issuer for discovery.
    pub issuer: Option<String>,
    /// Authorization endpoint (overrides discovery).
    pub auth_url: Option<String>,
    /// Token endpoint (overrides discovery).
    pub token_url: Option<String>,
    /// Userinfo endpoint (overrides discovery).
    pub userinfo_url: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Scopes requested.
    pub scopes: Vec<String>,
    /// How the client authenticates at the token endpoint.
    pub client_auth: ClientAuth,
}

/// How an OAuth2 client authenticates at the token endpoint (RFC 6749
/// section 2.3.1; OpenID Connect `token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (`client_secret_basic`).
    #[default]
    Basic,
    /// Id and secret in the form body (`client_secret_post`).
    Post,
}

impl std::fmt::Debug for OauthProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OauthProviderSettings")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

pub(super) fn providers(env: &Env<'_>) -> anyhow::Result<Vec<OauthProviderSettings>> {
    env.list("OAUTH_PROVIDERS")
        .into_iter()
        .map(|raw| {
            let name = raw.to_ascii_lowercase();
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                bail!("OAUTH_PROVIDERS entry {raw:?} may only use letters, digits and _");
            }
            let upper = name.to_ascii_uppercase();
            let key = |suffix: &str| format!("OAUTH_{upper}_{suffix}");
            let required = |suffix: &str| {
                env.var(&key(suffix))
                    .ok_or_else(|| anyhow::anyhow!("{} is required", key(suffix)))
            };
            let provider = OauthProviderSettings {
                issuer: env.var(&key("ISSUER")),
                auth_url: env.var(&key("AUTH_URL")),
                token_url: env.var(&key("TOKEN_URL")),
                userinfo_url: env.var(&key("USERINFO_URL")),
                client_id: required("CLIENT_ID")?,
                client_secret: required("CLIENT_SECRET")?,
                client_auth: match env.var(&key("CLIENT_AUTH")).as_deref().map(str::trim) {
                    None | Some("client_secret_basic") => ClientAuth::Basic,
                    Some("client_secret_post") => ClientAuth::Post,
                    Some(other) => bail!(
                        "{}={other:?} must be client_secret_basic or client_secret_post",
                        key("CLIENT_AUTH")
                    ),
                },
                scopes: env
                    .var(&key("SCOPES"))
                    .unwrap_or_else(|| "openid email profile".to_owned())
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
                name,
            };
            let explicit = provider.auth_url.is_some()
                && provider.token_url.is_some()
                && provider.userinfo_url.is_some();
            if provider.issuer.is_none() && !explicit {
                bail!(
                    "{} or all of {}, {} and {} are required",
                    key("ISSUER"),
                    key("AUTH_URL"),
                    key("TOKEN_URL"),
                    key("USERINFO_URL")
                );
            }
            Ok(provider)
        })
        .collect()
}
