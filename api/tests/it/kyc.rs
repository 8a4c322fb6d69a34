//! KYC from the user's side: `submitKyc` against a local server speaking the
//! provider's API with signed requests, and the provider's signed webhooks.

use std::time::Duration;

use entity::entities::{kyc_applications, kyc_status_history};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::support::kyc::{Alg, FakeKyc, WEBHOOK_SECRET, event, sign_webhook};
use crate::support::*;

const SUBMIT: &str = "mutation($i: SubmitKycInput!) { submitKyc(input: $i) { id status sdkAccessToken levelName submittedAt } }";
const HISTORY: &str =
    "{ me { kycStatus kycLevel kycHistory { fromStatus toStatus level reason source } } }";
const KYC_STATUS: &str = "subscription($after: Int) { kycStatus(afterSequence: $after) { sequence status level reason } }";

fn input(first: &str) -> Value {
    json!({
        "firstName": first,
        "lastName": "Lovelace",
        "dateOfBirth": "1985-12-10",
        "address": { "street": "12 St James's Square", "city": "London", "postalCode": "SW1Y 4JH", "country": "GBR" },
        "country": "GBR",
        "documentType": "PASSPORT",
        "documentNumber": "X9876543",
    })
}

async fn webhook(app: &TestApp, body: &str, alg: Alg) -> (u16, Value) {
    let (digest, alg_name) = sign_webhook(body, alg, WEBHOOK_SECRET);
    let resp = app
        .client
        .post(app.url("/webhooks/kyc"))
        .header("content-type", "application/json")
        .header("x-payload-digest", digest)
        .header("x-payload-digest-alg", alg_name)
        .body(body.to_owned())
        .send()
        .await
        .expect("webhook");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn green() -> Value {
    json!({ "reviewAnswer": "GREEN", "rejectLabels": [] })
}

fn red(kind: &str) -> Value {
    json!({
        "reviewAnswer": "RED",
        "reviewRejectType": kind,
        "rejectLabels": ["UNSATISFACTORY_PHOTOS"],
        "clientComment": "The photo of the passport is blurred.",
        "moderationComment": "internal note",
    })
}

async fn spawn(fake: &FakeKyc) -> TestApp {
    TestApp::spawn_with(Backend::Postgres, |s| {
        fake.configure(s);
        s.kyc.limits = domain::limits::TierLimits::default();
    })
    .await
}

#[tokio::test]
async fn a_submission_is_signed_sealed_and_reviewed_by_signed_webhooks_each_change_seen_once() {
    let fake = FakeKyc::start().await;
    let app = spawn(&fake).await;
    let s = app.register("ada@example.com").await;
    let mut ws = WsClient::authed(app.addr, "graphql-transport-ws", &s.token).await;
    // From sequence 0: replay, then live, with no gap however fast the
    // submission follows.
    ws.subscribe("k", KYC_STATUS, json!({ "after": 0 })).await;

    let submitted = app
        .gql(Some(&s.token), SUBMIT, json!({ "i": input("Ada") }))
        .await;
    let application = data(&submitted, "submitKyc");
    assert_eq!(application["status"], "PENDING");
    assert_eq!(application["levelName"], "basic-kyc-level");
    let token = application["sdkAccessToken"].as_str().expect("token");
    assert!(
        fake.token_is_for(token, &s.user_id),
        "the SDK token is the provider's, for this user"
    );
    let (signed, refused) = fake.signatures();
    assert!(signed >= 2, "create applicant and access token");
    assert_eq!(refused, 0, "every request carried a valid signature");
    let applicant = fake.applicant_of(&s.user_id);
    assert_eq!(applicant.fixed_info["firstName"], "Ada");
    // A fresh SDK token while the verification is under way.
    let again = app
        .gql(Some(&s.token), "mutation { kycAccessToken }", json!({}))
        .await;
    let fresh = data(&again, "kycAccessToken").as_str().expect("token");
    assert!(fresh != token && fake.token_is_for(fresh, &s.user_id));
    assert_eq!(applicant.fixed_info["dob"], "1985-12-10");
    assert_eq!(applicant.fixed_info["idDocs"][0]["idDocType"], "PASSPORT");

    // The database holds no plaintext of the personal data.
    let row = kyc_applications::Entity::find()
        .one(&app.db)
        .await
        .expect("query")
        .expect("row");
    // Every personal field is sealed; the ciphertexts are taken out before
    // looking for plaintext, or random base64 could spell "Ada" by chance.
    let mut stored = format!("{row:?}");
    for sealed in [
        &row.first_name,
        &row.last_name,
        &row.date_of_birth,
        &row.address,
        &row.country,
        &row.document_number,
    ] {
        let sealed = sealed.as_deref().expect("a sealed value");
        assert!(sealed.starts_with("v1."), "not sealed: {sealed}");
        stored = stored.replace(sealed, "<sealed>");
    }
    for plain in [
        "Ada",
        "Lovelace",
        "1985-12-10",
        "St James",
        "X9876543",
        "GBR",
    ] {
        assert!(!stored.contains(plain), "{plain} stored in clear: {stored}");
    }
    assert!(
        row.first_name
            .as_deref()
            .is_some_and(|v| v.starts_with("v1.test-1."))
    );

    // Signatures: missing, wrong secret, wrong algorithm, tampered body.
    let on_hold = event(
        &applicant.id,
        &s.user_id,
        "applicantOnHold",
        "2026-12-01 10:00:01.000",
        Value::Null,
    );
    let plain = app
        .client
        .post(app.url("/webhooks/kyc"))
        .body(on_hold.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(plain.status().as_u16(), 401);
    let (wrong, alg) = sign_webhook(&on_hold, Alg::Sha256, "not-the-webhook-secret");
    for (digest, alg) in [
        (wrong.as_str(), alg),
        (
            &sign_webhook(&on_hold, Alg::Sha256, WEBHOOK_SECRET).0,
            "HMAC_SHA512_HEX",
        ),
    ] {
        let resp = app
            .client
            .post(app.url("/webhooks/kyc"))
            .header("x-payload-digest", digest)
            .header("x-payload-digest-alg", alg)
            .body(on_hold.clone())
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status().as_u16(), 401);
    }
    let (digest, alg) = sign_webhook(&on_hold, Alg::Sha256, WEBHOOK_SECRET);
    let tampered = on_hold.replace("applicantOnHold", "applicantPending");
    let resp = app
        .client
        .post(app.url("/webhooks/kyc"))
        .header("x-payload-digest", digest)
        .header("x-payload-digest-alg", alg)
        .body(tampered)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 401);
    let me = app.gql(Some(&s.token), HISTORY, json!({})).await;
    assert_eq!(
        me["data"]["me"]["kycStatus"], "PENDING",
        "refused webhooks change nothing"
    );

    // On hold (SHA-512), then GREEN (SHA-256), then the GREEN again.
    assert_eq!(
        webhook(&app, &on_hold, Alg::Sha512).await,
        (200, json!({ "outcome": "APPLIED" }))
    );
    let reviewed = event(
        &applicant.id,
        &s.user_id,
        "applicantReviewed",
        "2026-12-01 10:05:00.000",
        green(),
    );
    assert_eq!(
        webhook(&app, &reviewed, Alg::Sha256).await.1["outcome"],
        "APPLIED"
    );
    assert_eq!(
        webhook(&app, &reviewed, Alg::Sha256).await,
        (200, json!({ "outcome": "DUPLICATE" }))
    );
    // An older event arriving late is ignored by its creation time.
    let late = event(
        &applicant.id,
        &s.user_id,
        "applicantPending",
        "2026-12-01 10:00:00.500",
        Value::Null,
    );
    assert_eq!(
        webhook(&app, &late, Alg::Sha256).await.1["outcome"],
        "STALE"
    );
    let me = app.gql(Some(&s.token), HISTORY, json!({})).await;
    assert_eq!(me["data"]["me"]["kycStatus"], "APPROVED");
    assert_eq!(me["data"]["me"]["kycLevel"], 1);
    // Verified: a withdrawal within the tier passes.
    let w = app.open_wallet(&s, "USD").await;
    data(&app.deposit(&s, &w, "100", "d1").await, "deposit");
    data(&app.withdraw(&s, &w, "10", "w1").await, "withdraw");

    // A later RED blocks the user again, for good.
    let revoked = event(
        &applicant.id,
        &s.user_id,
        "applicantReviewed",
        "2026-12-02 09:00:00.000",
        red("FINAL"),
    );
    assert_eq!(
        webhook(&app, &revoked, Alg::Sha256).await.1["outcome"],
        "APPLIED"
    );
    let blocked = app.deposit(&s, &w, "1", "d2").await;
    assert_eq!(error_code(&blocked), "KYC_REQUIRED", "{blocked}");
    let again = app
        .gql(Some(&s.token), SUBMIT, json!({ "i": input("Ada") }))
        .await;
    assert_eq!(error_code(&again), "FORBIDDEN", "{again}");
    let no_token = app
        .gql(Some(&s.token), "mutation { kycAccessToken }", json!({}))
        .await;
    assert_eq!(error_code(&no_token), "BAD_USER_INPUT", "{no_token}");

    // The subscriber saw each real change once, in order.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let ev = ws.next_data("k", Duration::from_secs(5)).await;
        seen.push(
            ev["data"]["kycStatus"]["status"]
                .as_str()
                .unwrap_or_else(|| panic!("{ev}"))
                .to_owned(),
        );
    }
    assert_eq!(seen, ["PENDING", "IN_REVIEW", "APPROVED", "REJECTED"]);
    assert!(
        ws.silent_for(Duration::from_millis(800)).await,
        "no event twice"
    );

    let me = app.gql(Some(&s.token), HISTORY, json!({})).await;
    let history = me["data"]["me"]["kycHistory"].as_array().expect("history");
    let steps: Vec<(&str, &str)> = history
        .iter()
        .map(|h| {
            (
                h["toStatus"].as_str().expect("to"),
                h["source"].as_str().expect("source"),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("PENDING", "USER"),
            ("IN_REVIEW", "PROVIDER"),
            ("APPROVED", "PROVIDER"),
            ("REJECTED", "PROVIDER")
        ]
    );
    assert_eq!(
        history[3]["reason"],
        "The photo of the passport is blurred."
    );
    let audited = entity::entities::audit_log::Entity::find()
        .filter(entity::entities::audit_log::Column::Action.eq("kyc.provider_review"))
        .filter(
            entity::entities::audit_log::Column::SubjectId
                .eq(uuid::Uuid::parse_str(&s.user_id).expect("id")),
        )
        .all(&app.db)
        .await
        .expect("audit");
    assert_eq!(audited.len(), 3, "one audit record per provider change");
}

#[tokio::test]
async fn a_retry_rejection_allows_a_second_submission_and_the_manual_review_shares_the_history() {
    let fake = FakeKyc::start().await;
    let app = spawn(&fake).await;
    let s = app.register("retry@example.com").await;
    data(
        &app.gql(Some(&s.token), SUBMIT, json!({ "i": input("Ada") }))
            .await,
        "submitKyc",
    );
    let applicant = fake.applicant_of(&s.user_id);
    let retry = event(
        &applicant.id,
        &s.user_id,
        "applicantReviewed",
        "2026-12-01 11:00:00.000",
        red("RETRY"),
    );
    assert_eq!(
        webhook(&app, &retry, Alg::Sha256).await.1["outcome"],
        "APPLIED"
    );
    let second = app
        .gql(Some(&s.token), SUBMIT, json!({ "i": input("Augusta Ada") }))
        .await;
    assert_eq!(data(&second, "submitKyc")["status"], "PENDING");
    // The same applicant, with the corrected data.
    assert_eq!(fake.applicants().len(), 1);
    assert_eq!(
        fake.applicant_of(&s.user_id).fixed_info["firstName"],
        "Augusta Ada"
    );
    // A compliance officer approves by hand; the provider's later GREEN then changes nothing.
    let officer = app.admin("officer@example.com").await;
    let approved = app
        .gql(
            Some(&officer.token),
            "mutation($u: ID!) { reviewKyc(userId: $u, decision: APPROVE) { kycStatus kycLevel } }",
            json!({ "u": s.user_id }),
        )
        .await;
    assert_eq!(data(&approved, "reviewKyc")["kycStatus"], "APPROVED");
    let green = event(
        &applicant.id,
        &s.user_id,
        "applicantReviewed",
        "2026-12-01 12:00:00.000",
        green(),
    );
    assert_eq!(
        webhook(&app, &green, Alg::Sha512).await.1["outcome"],
        "UNCHANGED"
    );
    let me = app.gql(Some(&s.token), HISTORY, json!({})).await;
    let sources: Vec<&str> = me["data"]["me"]["kycHistory"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["source"].as_str().expect("source"))
        .collect();
    assert_eq!(sources, ["USER", "PROVIDER", "USER", "COMPLIANCE"]);
}

#[tokio::test]
async fn provider_failures_write_nothing_and_retrying_recovers() {
    let fake = FakeKyc::start().await;
    let app = spawn(&fake).await;
    let s = app.register("outage@example.com").await;
    // The provider is down.
    fake.script(&[Some(503)]);
    let down = app
        .gql(Some(&s.token), SUBMIT, json!({ "i": input("Ada") }))
        .await;
    assert_eq!(error_code(&down), "PROVIDER_UNAVAILABLE", "{down}");
    // The applicant is made, then the token request fails: still nothing here.
    fake.script(&[None, Some(500)]);
    let half = app
        .gql(Some(&s.token), SUBMIT, json!({ "i": input("Ada") }))
        .await;
    assert_eq!(error_code(&half), "PROVIDER_UNAVAILABLE", "{half}");
    assert!(
        !half.to_string().contains("scripted"),
        "provider text is not shown: {half}"
    );
    let rows = kyc_applications::Entity::find()
        .all(&app.db)
        .await
        .expect("rows");
    assert!(rows.is_empty());
    let history = kyc_status_history::Entity::find()
        .filter(
            kyc_status_history::Column::UserId.eq(uuid::Uuid::parse_str(&s.user_id).expect("id")),
        )
        .all(&app.db)
        .await
        .expect("history");
    assert!(history.is_empty());
    let me = app.gql(Some(&s.token), HISTORY, json!({})).await;
    assert_eq!(me["data"]["me"]["kycStatus"], "NOT_STARTED");
    // The retry finds the applicant made before (409) and goes on.
    let ok = app
        .gql(Some(&s.token), SUBMIT, json!({ "i": input("Ada") }))
        .await;
    assert_eq!(data(&ok, "submitKyc")["status"], "PENDING");
    assert_eq!(fake.applicants().len(), 1);

    // Bad input is refused before the provider is asked.
    let mut young = input("Ada");
    young["dateOfBirth"] = json!("2015-01-01");
    let other = app.register("young@example.com").await;
    let refused = app
        .gql(Some(&other.token), SUBMIT, json!({ "i": young }))
        .await;
    assert_eq!(error_code(&refused), "BAD_USER_INPUT");
    assert!(
        !refused.to_string().contains("2015-01-01"),
        "the value is not echoed: {refused}"
    );
    let mut bad_country = input("Ada");
    bad_country["country"] = json!("UK");
    let refused = app
        .gql(Some(&other.token), SUBMIT, json!({ "i": bad_country }))
        .await;
    assert_eq!(error_code(&refused), "BAD_USER_INPUT");
}

#[tokio::test]
async fn webhooks_for_unknown_applicants_malformed_or_oversized_bodies_are_answered_plainly() {
    let fake = FakeKyc::start().await;
    let app = spawn(&fake).await;
    let unknown = event(
        "no-such-applicant",
        "nobody",
        "applicantReviewed",
        "2026-12-01 10:00:00.000",
        green(),
    );
    assert_eq!(
        webhook(&app, &unknown, Alg::Sha256).await,
        (200, json!({ "outcome": "UNKNOWN_APPLICANT" }))
    );
    let audited = entity::entities::audit_log::Entity::find()
        .filter(entity::entities::audit_log::Column::Action.eq("kyc.webhook_unknown_applicant"))
        .all(&app.db)
        .await
        .expect("audit");
    assert_eq!(audited.len(), 1);
    for body in [
        "{not json",
        r#"{"applicantId":"a","type":"applicantReviewed","createdAtMs":"2026-12-01 10:00:00"}"#,
        r#"{"applicantId":"a","type":"applicantPending","createdAtMs":"soon"}"#,
    ] {
        let (status, answer) = webhook(&app, body, Alg::Sha256).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            answer["error"].is_string() && !answer.to_string().contains("panicked"),
            "{answer}"
        );
    }
    let huge = format!(r#"{{"applicantId":"a","pad":"{}"}}"#, "x".repeat(70_000));
    let (status, _) = webhook(&app, &huge, Alg::Sha256).await;
    assert_eq!(status, 413);
}
