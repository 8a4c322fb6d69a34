//! The account lifecycle from the user's side: the profile, closing the
//! account, and the export of everything held about them.

use async_graphql::{Context, InputObject, Json, MaybeUndefined, Object};
use domain::{DisplayName, DomainError};
use entity::store::account::{self, ProfileUpdate};

use super::kyc::AddressInput;
use super::parts;
use super::types::User;
use crate::error::{ApiError, Result};

/// Input of `updateProfile`: a field left out stays, `null` clears it.
#[derive(InputObject, Debug, Default)]
pub struct UpdateProfileInput {
    /// Name shown to others (cannot be cleared).
    pub display_name: Option<String>,
    /// Phone number, E.164: `+` and 8 to 15 digits.
    pub phone: MaybeUndefined<String>,
    /// Postal address.
    pub address: MaybeUndefined<AddressInput>,
    /// Locale, BCP 47 such as `en-GB` or `de`.
    pub locale: MaybeUndefined<String>,
}

fn phone(raw: &str) -> Result<String, DomainError> {
    let compact: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = compact.strip_prefix('+').unwrap_or("");
    if !(8..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(DomainError::bad_input(
            "phone must be in E.164 form: + and 8 to 15 digits",
        ));
    }
    Ok(compact)
}

fn locale(raw: &str) -> Result<String, DomainError> {
    let ok = (2..=16).contains(&raw.len())
        && raw.split('-').all(|part| {
            (2..=8).contains(&part.len()) && part.chars().all(|c| c.is_ascii_alphanumeric())
        });
    if !ok {
        return Err(DomainError::bad_input(
            "locale must be a BCP 47 tag such as en-GB",
        ));
    }
    Ok(raw.to_owned())
}

fn maybe<T, U>(
    value: MaybeUndefined<T>,
    parse: impl FnOnce(T) -> Result<U, DomainError>,
) -> Result<Option<Option<U>>, DomainError> {
    match value {
        MaybeUndefined::Undefined => Ok(None),
        MaybeUndefined::Null => Ok(Some(None)),
        MaybeUndefined::Value(v) => parse(v).map(|u| Some(Some(u))),
    }
}

/// Lifecycle queries.
#[derive(Default)]
pub struct ProfileQuery;

#[Object]
impl ProfileQuery {
    /// Everything held about the signed-in user as one JSON document:
    /// account, profile, KYC application and status history, wallets,
    /// transactions, notifications, preferences, push devices and the audit
    /// entries about them. Nobody else's data is in it.
    async fn export_my_data(&self, ctx: &Context<'_>) -> Result<Json<serde_json::Value>> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let doc = account::export(&state.db, &state.pii, user.id).await?;
        crate::auth::audit(
            state,
            Some(user.id),
            "user.data_exported",
            "user",
            Some(user.id),
            serde_json::json!({}),
        )
        .await?;
        Ok(Json(doc))
    }
}

/// Lifecycle mutations.
#[derive(Default)]
pub struct ProfileMutation;

#[Object]
impl ProfileMutation {
    /// Changes the profile: display name, phone, address, locale. Phone and
    /// address are stored encrypted.
    async fn update_profile(&self, ctx: &Context<'_>, input: UpdateProfileInput) -> Result<User> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let update = ProfileUpdate {
            display_name: input
                .display_name
                .as_deref()
                .map(DisplayName::parse)
                .transpose()?,
            phone: maybe(input.phone, |p| phone(&p))?,
            address: maybe(input.address, |a| a.parse())?,
            locale: maybe(input.locale, |l| locale(&l))?,
        };
        account::update_profile(&state.db, &state.pii, user.id, update).await?;
        let record = entity::store::users::load(&state.db, user.id)
            .await?
            .ok_or_else(|| ApiError::from(DomainError::not_found("user")))?;
        Ok(record.into())
    }

    /// Closes the account for good: every wallet must be at zero with
    /// nothing pending. Needs a step-up token when the account has security
    /// keys. Ends every session; signing in afterwards answers
    /// `ACCOUNT_CLOSED`. The data can then be erased (`eraseUser`).
    async fn close_account(
        &self,
        ctx: &Context<'_>,
        step_up_token: Option<String>,
    ) -> Result<bool> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let has_keys = !entity::store::security::credentials(&state.db, user.id)
            .await?
            .is_empty();
        if has_keys {
            crate::auth::webauthn::require_step_up(
                state,
                user.id,
                step_up_token.as_deref(),
                &format!("close-account:{}", user.id),
            )
            .await?;
        }
        account::close(&state.db, user.id).await?;
        tracing::info!(user.id = %user.id, "account closed");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_and_locales_are_checked() {
        assert_eq!(phone("+44 7911 123-456").expect("ok"), "+447911123456");
        assert!(phone("07911123456").is_err());
        assert!(phone("+1234").is_err());
        assert!(locale("en-GB").is_ok() && locale("de").is_ok());
        assert!(locale("english please").is_err());
    }
}
