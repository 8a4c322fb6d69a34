//! The account lifecycle: profile, export, closing, erasure by destroying
//! the user's data key, and `rotate-keys`.

use entity::entities::{kyc_applications, ledger_entries, user_keys, users};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::support::kyc::FakeKyc;
use crate::support::*;
use crate::webauthn::{Key, register_key, step_up};

const PROFILE: &str =
    "{ me { displayName profile { phone locale address { street city postalCode country } } } }";
const UPDATE: &str =
    "mutation($i: UpdateProfileInput!) { updateProfile(input: $i) { id displayName } }";

fn kyc_input() -> Value {
    json!({
        "firstName": "Grace", "lastName": "Hopper", "dateOfBirth": "1980-12-09",
        "address": { "street": "1 Navy Yard", "city": "Arlington", "postalCode": "22202", "country": "USA" },
        "country": "USA", "documentType": "PASSPORT", "documentNumber": "P1234567",
    })
}

async fn set_profile(app: &TestApp, s: &Session, phone: &str, street: &str) {
    let body = app
        .gql(
            Some(&s.token),
            UPDATE,
            json!({ "i": {
                "phone": phone,
                "locale": "en-US",
                "address": { "street": street, "city": "Arlington", "postalCode": "22202", "country": "USA" },
            } }),
        )
        .await;
    data(&body, "updateProfile");
}

fn uuid(s: &Session) -> uuid::Uuid {
    uuid::Uuid::parse_str(&s.user_id).expect("uuid")
}

#[tokio::test]
async fn export_close_and_erase_keep_the_books_and_leave_the_person_unreadable() {
    let fake = FakeKyc::start().await;
    let app = TestApp::spawn_with(Backend::Postgres, |s| fake.configure(s)).await;
    let grace = app.register_named("grace@example.com", "Grace").await;
    let bob = app.register_named("bob@example.com", "Bob").await;
    set_profile(&app, &bob, "+15550000002", "2 Other Street").await;

    // The profile: stored sealed, shown to its owner only.
    set_profile(&app, &grace, "+1 555 000 0001", "1 Navy Yard").await;
    let renamed = app
        .gql(
            Some(&grace.token),
            UPDATE,
            json!({ "i": { "displayName": "Grace H." } }),
        )
        .await;
    assert_eq!(data(&renamed, "updateProfile")["displayName"], "Grace H.");
    let me = app.gql(Some(&grace.token), PROFILE, json!({})).await;
    let profile = &data(&me, "me")["profile"];
    assert_eq!(profile["phone"], "+15550000001");
    assert_eq!(profile["address"]["street"], "1 Navy Yard");
    assert_eq!(profile["locale"], "en-US");
    let row = users::Entity::find_by_id(uuid(&grace))
        .one(&app.db)
        .await
        .expect("q")
        .expect("row");
    let raw = format!("{:?} {:?}", row.phone, row.address);
    assert!(
        !raw.contains("5550000001") && !raw.contains("Navy"),
        "{raw}"
    );
    let bad = app
        .gql(
            Some(&grace.token),
            UPDATE,
            json!({ "i": { "phone": "12345" } }),
        )
        .await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT");
    assert!(
        !bad.to_string().contains("12345\""),
        "the value is not echoed: {bad}"
    );

    // KYC data and money.
    let submitted = app
        .gql(
            Some(&grace.token),
            "mutation($i: SubmitKycInput!) { submitKyc(input: $i) { status } }",
            json!({ "i": kyc_input() }),
        )
        .await;
    assert_eq!(data(&submitted, "submitKyc")["status"], "PENDING");
    let w = app.open_wallet(&grace, "USD").await;
    app.open_wallet(&bob, "USD").await;
    data(&app.deposit(&grace, &w, "40", "fund").await, "deposit");

    // The export holds Grace's data and nobody else's.
    let export = app
        .gql(Some(&grace.token), "{ exportMyData }", json!({}))
        .await;
    let doc = &data(&export, "exportMyData");
    assert_eq!(doc["account"]["email"], "grace@example.com");
    assert_eq!(doc["profile"]["phone"], "+15550000001");
    assert_eq!(doc["kyc"]["application"]["firstName"], "Grace");
    assert_eq!(doc["kyc"]["application"]["documentNumber"], "P1234567");
    assert_eq!(doc["kyc"]["history"][0]["toStatus"], "PENDING");
    assert_eq!(doc["wallets"][0]["available"], "40");
    assert_eq!(doc["transactions"][0]["amount"], "40");
    assert!(doc["preferences"].as_array().is_some_and(|p| !p.is_empty()));
    assert!(doc["auditTrail"].as_array().is_some_and(|a| !a.is_empty()));
    let text = doc.to_string();
    for other in [
        "bob@example.com",
        "5550000002",
        "2 Other Street",
        bob.user_id.as_str(),
    ] {
        assert!(!text.contains(other), "{other} in Grace's export");
    }

    // Closing: refused while money is held; then wallets closed, sessions ended.
    let refused = app
        .gql(Some(&grace.token), "mutation { closeAccount }", json!({}))
        .await;
    assert_eq!(error_code(&refused), "BAD_USER_INPUT", "{refused}");
    let sent = app
        .transfer(
            &grace,
            json!({ "fromWalletId": w, "toEmail": "bob@example.com", "amount": "40" }),
            "out",
        )
        .await;
    data(&sent, "transfer");
    let admin = app.admin("root@example.com").await;
    let open = app
        .gql(
            Some(&admin.token),
            "mutation($id: ID!) { eraseUser(id: $id) }",
            json!({ "id": grace.user_id }),
        )
        .await;
    assert_eq!(error_code(&open), "STEP_UP_REQUIRED", "{open}");
    let closed = app
        .gql(Some(&grace.token), "mutation { closeAccount }", json!({}))
        .await;
    assert_eq!(data(&closed, "closeAccount"), &json!(true));
    let after = app
        .gql(Some(&grace.token), "{ me { id } }", json!({}))
        .await;
    assert_eq!(
        error_code(&after),
        "UNAUTHENTICATED",
        "the session ended: {after}"
    );
    let login = app
        .gql(
            None,
            "mutation($i: LoginInput!) { login(input: $i) { __typename } }",
            json!({ "i": { "email": "grace@example.com", "password": "correct horse battery" } }),
        )
        .await;
    assert_eq!(error_code(&login), "ACCOUNT_CLOSED", "{login}");
    let wallet = entity::store::wallets::get(&app.db, uuid::Uuid::parse_str(&w).expect("id"))
        .await
        .expect("q")
        .expect("wallet");
    assert_eq!(wallet.status, domain::WalletStatus::Closed);

    // Erasure: an admin with a step-up; only closed accounts.
    let mut key = Key::new();
    register_key(&app, &admin, &mut key, "admin key").await;
    let token = step_up(&app, &admin, &mut key).await;
    let not_closed = app
        .gql(
            Some(&admin.token),
            "mutation($id: ID!, $t: String) { eraseUser(id: $id, stepUpToken: $t) }",
            json!({ "id": bob.user_id, "t": token }),
        )
        .await;
    assert_eq!(error_code(&not_closed), "BAD_USER_INPUT", "{not_closed}");
    let token = step_up(&app, &admin, &mut key).await;
    let erased = app
        .gql(
            Some(&admin.token),
            "mutation($id: ID!, $t: String) { eraseUser(id: $id, stepUpToken: $t) }",
            json!({ "id": grace.user_id, "t": token }),
        )
        .await;
    assert_eq!(data(&erased, "eraseUser"), &json!(true));

    // The person is unreadable: no data key, no e-mail or name; the sealed
    // KYC values are still there and open with nothing.
    let key_row = user_keys::Entity::find_by_id(uuid(&grace))
        .one(&app.db)
        .await
        .expect("q")
        .expect("key");
    assert!(key_row.secret.is_none() && key_row.shredded_at.is_some());
    let row = users::Entity::find_by_id(uuid(&grace))
        .one(&app.db)
        .await
        .expect("q")
        .expect("row");
    assert!(!format!("{row:?}").contains("grace"), "{row:?}");
    assert_eq!(row.display_name, "Erased user");
    let application = kyc_applications::Entity::find()
        .filter(kyc_applications::Column::UserId.eq(uuid(&grace)))
        .one(&app.db)
        .await
        .expect("q")
        .expect("application");
    let sealed = application.first_name.clone().expect("sealed value kept");
    let keys = entity::pii::Keyring::parse(PII_KEYS).expect("keys");
    let guess = entity::pii::UserKey::generate();
    let at = entity::pii::Field::new("kyc_applications", "first_name", application.id);
    assert!(keys.open(&guess, at, &sealed).is_err());
    assert!(
        entity::store::kyc::application_data(&app.db, &keys, uuid(&grace))
            .await
            .expect("q")
            .is_none()
    );
    // The books stay, balanced, and still name the wallets.
    let lines = ledger_entries::Entity::find()
        .all(&app.db)
        .await
        .expect("lines");
    assert!(lines.iter().any(|l| l.wallet_id == Some(wallet.id)));
    let sum: rust_decimal::Decimal = lines.iter().map(|l| l.amount.0).sum();
    assert!(sum.is_zero(), "ledger lines sum to {sum}");
    let bob_view = app
        .gql(
            Some(&bob.token),
            "{ me { wallets { balance } } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&bob_view, "me")["wallets"][0]["balance"], "40.00");
    let actions = entity::entities::audit_log::Entity::find()
        .filter(entity::entities::audit_log::Column::Action.eq("user.erased"))
        .all(&app.db)
        .await
        .expect("audit");
    assert_eq!(actions.len(), 1);
    assert!(actions[0].details["booksKeptUntil"].is_string());
}

#[tokio::test]
async fn closing_an_account_with_a_security_key_needs_a_step_up() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let s = app.register("keyed@example.com").await;
    let mut key = Key::new();
    register_key(&app, &s, &mut key, "phone").await;
    let refused = app
        .gql(Some(&s.token), "mutation { closeAccount }", json!({}))
        .await;
    assert_eq!(error_code(&refused), "STEP_UP_REQUIRED", "{refused}");
    let token = step_up(&app, &s, &mut key).await;
    let closed = app
        .gql(
            Some(&s.token),
            "mutation($t: String) { closeAccount(stepUpToken: $t) }",
            json!({ "t": token }),
        )
        .await;
    assert_eq!(data(&closed, "closeAccount"), &json!(true));
}

#[tokio::test]
async fn rotate_keys_reseals_every_value_and_a_value_moved_to_another_row_does_not_decrypt() {
    let fake = FakeKyc::start().await;
    let url = fresh_database().await;
    let app = TestApp::spawn_on(Some(url.clone()), |s| fake.configure(s)).await;
    let a = app.register("a@example.com").await;
    let b = app.register("b@example.com").await;
    set_profile(&app, &a, "+15550000010", "10 First Street").await;
    set_profile(&app, &b, "+15550000020", "20 Second Street").await;
    let submitted = app
        .gql(
            Some(&a.token),
            "mutation($i: SubmitKycInput!) { submitKyc(input: $i) { status } }",
            json!({ "i": kyc_input() }),
        )
        .await;
    data(&submitted, "submitKyc");

    // A's sealed phone copied into B's row does not open there.
    let row_a = users::Entity::find_by_id(uuid(&a))
        .one(&app.db)
        .await
        .expect("q")
        .expect("a");
    let row_b = users::Entity::find_by_id(uuid(&b))
        .one(&app.db)
        .await
        .expect("q")
        .expect("b");
    let mut moved: users::ActiveModel = row_b.clone().into();
    moved.phone = Set(row_a.phone.clone());
    moved.update(&app.db).await.expect("copy");
    let original = row_b.phone.clone();
    let broken = app.gql(Some(&b.token), PROFILE, json!({})).await;
    assert_eq!(error_code(&broken), "INTERNAL_SERVER_ERROR", "{broken}");
    assert!(!broken.to_string().contains("5550000010"));
    let mut restored: users::ActiveModel = row_b.into();
    restored.phone = Set(original);
    restored.update(&app.db).await.expect("restore");

    // Rotate to a new key with the real binary, the old one still listed.
    let new_key = entity::pii::Keyring::generate("test-2");
    let both = format!("{new_key},{}", PII_KEYS.trim_start_matches('*'));
    let dir = std::env::temp_dir().join(format!("wallet-bff-rotate-{}", uuid::Uuid::new_v4()));
    // Async: the servers of this test run on this thread and must go on
    // (the tool waits for row locks they may hold for a moment).
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wallet-bff"))
        .args(["rotate-keys", "--batch", "1"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &url)
        .env("DATA_DIR", &dir)
        .env("PII_KEYS", &both)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("rotate-keys");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("resealed=10"),
        "4 profile values and 6 KYC values: {log}"
    );
    let sealed: Vec<String> = users::Entity::find()
        .all(&app.db)
        .await
        .expect("users")
        .into_iter()
        .flat_map(|u| [u.phone, u.address])
        .chain(
            kyc_applications::Entity::find()
                .all(&app.db)
                .await
                .expect("apps")
                .into_iter()
                .flat_map(|k| {
                    [
                        k.first_name,
                        k.last_name,
                        k.date_of_birth,
                        k.address,
                        k.country,
                        k.document_number,
                    ]
                }),
        )
        .flatten()
        .collect();
    assert_eq!(sealed.len(), 10);
    assert!(
        sealed.iter().all(|v| v.starts_with("v1.test-2.")),
        "{sealed:?}"
    );

    // A server that knows only the new key reads everything.
    let fresh = TestApp::spawn_on(Some(url), |s| s.kyc.pii_keys = Some(new_key.clone())).await;
    for (s, phone) in [(&a, "+15550000010"), (&b, "+15550000020")] {
        let me = fresh.gql(Some(&s.token), PROFILE, json!({})).await;
        assert_eq!(data(&me, "me")["profile"]["phone"], phone);
    }
    let export = fresh
        .gql(Some(&a.token), "{ exportMyData }", json!({}))
        .await;
    assert_eq!(
        data(&export, "exportMyData")["kyc"]["application"]["lastName"],
        "Hopper"
    );
}
