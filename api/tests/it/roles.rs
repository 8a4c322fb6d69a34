//! Roles `user`, `support`, `compliance` and `admin` on every operation: a
//! table with one row per root field of the schema (Query, Mutation and
//! Subscription), each run as anonymous, as the owner of the objects it
//! refers to, as another plain user and as each staff role, checking that
//! the caller is allowed or refused. The table must cover every root field
//! of the generated SDL, so a new field cannot ship without an access rule.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use api::config::OauthProviderSettings;
use domain::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Backend, Session, TestApp, WsClient, WsEnd, data};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Caller {
    /// No token.
    Anonymous,
    /// The plain user who owns the wallets and transactions the rows name.
    Owner,
    /// A plain user who owns none of them.
    OtherUser,
    Support,
    Compliance,
    /// Holds every role (`AuthUser::has_role`).
    Admin,
}

const CALLERS: [Caller; 6] = [
    Caller::Anonymous,
    Caller::Owner,
    Caller::OtherUser,
    Caller::Support,
    Caller::Compliance,
    Caller::Admin,
];

impl Caller {
    /// Whether the caller holds `role`; admins hold every role.
    fn holds(self, role: Role) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Support => role == Role::Support,
            Caller::Compliance => role == Role::Compliance,
            Caller::Anonymous | Caller::Owner | Caller::OtherUser => false,
        }
    }
}

/// Who may run an operation.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Anyone, with or without a token: the outcome does not depend on the
    /// caller (whatever credential it needs travels in the arguments).
    Public,
    /// Any signed-in user, on their own data.
    SignedIn,
    /// Only the owner of the object the arguments name: anyone else signed
    /// in (staff included) gets `NOT_FOUND` or `FORBIDDEN`.
    Owner,
    /// A signed-in user holding one of these roles (admins hold all).
    Staff(&'static [Role]),
}

impl Rule {
    fn permits(self, caller: Caller) -> bool {
        match self {
            Rule::Public => true,
            _ if caller == Caller::Anonymous => false,
            Rule::SignedIn => true,
            Rule::Owner => caller == Caller::Owner,
            Rule::Staff(roles) => roles.iter().any(|r| caller.holds(*r)),
        }
    }

    /// What a caller the rule refuses must get.
    fn refusal(self, caller: Caller) -> &'static [&'static str] {
        match self {
            _ if caller == Caller::Anonymous => &[UNAUTHENTICATED],
            Rule::Owner => &[NOT_FOUND, FORBIDDEN],
            _ => &[FORBIDDEN],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Query,
    Mutation,
    Subscription,
}

/// One operation of the table.
struct Row {
    kind: Kind,
    field: &'static str,
    op: &'static str,
    vars: Value,
    rule: Rule,
    /// Outcomes of a permitted call: `OK` (no error) or an error code that
    /// comes after the authorization check (validation, step-up, business).
    allowed: &'static [&'static str],
    /// Each signed-in caller uses a session of its own (e.g. `logout`).
    own_session: bool,
    /// Tells rows of the same field apart in messages.
    variant: &'static str,
}

const OK: &str = "OK";
const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
const FORBIDDEN: &str = "FORBIDDEN";
const NOT_FOUND: &str = "NOT_FOUND";
const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
const STEP_UP_REQUIRED: &str = "STEP_UP_REQUIRED";

/// Placeholders in `vars`, replaced with a fresh value on every call.
const FRESH_KEY: &str = "<fresh idempotency key>";
const FRESH_EMAIL: &str = "<fresh email>";
const FRESH_REFRESH: &str = "<fresh refresh token>";

const PASSWORD: &str = "correct horse battery";
const REDIRECT_URI: &str = "http://localhost:3000/oauth/callback";

fn row(kind: Kind, field: &'static str, op: &'static str, vars: Value, rule: Rule) -> Row {
    Row {
        kind,
        field,
        op,
        vars,
        rule,
        allowed: &[OK],
        own_session: false,
        variant: "",
    }
}

impl Row {
    fn allowing(mut self, allowed: &'static [&'static str]) -> Row {
        self.allowed = allowed;
        self
    }

    fn variant(mut self, variant: &'static str) -> Row {
        self.variant = variant;
        self
    }

    fn name(&self) -> String {
        format!("{:?} {}{}", self.kind, self.field, self.variant)
    }

    fn own_session(mut self) -> Row {
        self.own_session = true;
        self
    }
}

/// What the fixtures created.
struct Fixtures {
    owner_usd: String,
    pending_withdrawal: String,
    /// A completed transfer from the target to the owner.
    transfer: String,
    /// Payment requests from the target to the owner.
    request_to_pay: String,
    request_to_decline: String,
    notification: String,
    target: Session,
    target_eur: String,
    public: Session,
}

fn table(f: &Fixtures) -> Vec<Row> {
    use Kind::{Mutation as M, Query as Q, Subscription as S};
    const COMPLIANCE: Rule = Rule::Staff(&[Role::Compliance]);
    const ADMIN: Rule = Rule::Staff(&[Role::Admin]);
    const ANY_STAFF: Rule = Rule::Staff(&[Role::Support, Role::Compliance]);
    vec![
        // Query.
        row(
            Q,
            "auditLog",
            "query { auditLog(first: 5) { edges { node { id action } } } }",
            json!({}),
            COMPLIANCE,
        ),
        row(
            Q,
            "deadLetters",
            "query { deadLetters(first: 5) { edges { node { id } } } }",
            json!({}),
            ADMIN,
        ),
        row(
            Q,
            "notificationPreferences",
            "query { notificationPreferences { kind channel enabled } }",
            json!({}),
            Rule::SignedIn,
        ),
        row(
            Q,
            "pushDevices",
            "query { pushDevices { id } }",
            json!({}),
            Rule::SignedIn,
        ),
        row(
            Q,
            "riskReviews",
            "query { riskReviews(pending: false) { id score } }",
            json!({}),
            COMPLIANCE,
        ),
        row(
            Q,
            "paymentRequests",
            "query { paymentRequests { id status } }",
            json!({}),
            Rule::SignedIn,
        ),
        row(
            Q,
            "kycReviews",
            "query { kycReviews { id } }",
            json!({}),
            COMPLIANCE,
        ),
        // Null for anonymous callers, the caller otherwise.
        row(Q, "me", "query { me { id } }", json!({}), Rule::Public),
        row(
            Q,
            "notifications",
            "query { notifications(first: 5) { edges { node { id } } } }",
            json!({}),
            Rule::SignedIn,
        ),
        row(
            Q,
            "transactions",
            "query { transactions(first: 5) { edges { node { id } } } }",
            json!({}),
            Rule::SignedIn,
        ),
        row(
            Q,
            "transactions",
            "query($w: ID) { transactions(walletId: $w, first: 5) { edges { node { id } } } }",
            json!({ "w": f.owner_usd }),
            Rule::Owner,
        )
        .variant("(walletId: owner's)"),
        row(
            Q,
            "user",
            "query($id: ID!) { user(id: $id) { id email wallets { id } } }",
            json!({ "id": f.target.user_id }),
            ANY_STAFF,
        ),
        row(
            Q,
            "wallet",
            "query($id: ID!) { wallet(id: $id) { id balance } }",
            json!({ "id": f.owner_usd }),
            Rule::Owner,
        ),
        row(
            Q,
            "webauthnCredentials",
            "query { webauthnCredentials { id } }",
            json!({}),
            Rule::SignedIn,
        ),
        // Mutation.
        row(
            M,
            "beginStepUp",
            "mutation { beginStepUp }",
            json!({}),
            Rule::SignedIn,
        )
        // Nobody here has a security key.
        .allowing(&[STEP_UP_REQUIRED]),
        row(
            M,
            "beginWebauthnRegistration",
            "mutation { beginWebauthnRegistration }",
            json!({}),
            Rule::SignedIn,
        ),
        row(
            M,
            "changePassword",
            "mutation($i: ChangePasswordInput!) { changePassword(input: $i) }",
            json!({ "i": { "currentPassword": "not the password", "newPassword": "another long password" } }),
            Rule::SignedIn,
        )
        .allowing(&[BAD_USER_INPUT]),
        // The `state` is the credential: an unknown one is refused for all.
        row(
            M,
            "completeOAuthLogin",
            "mutation { completeOAuthLogin(provider: \"acme\", code: \"code\", state: \"no-such-state\") { __typename } }",
            json!({}),
            Rule::Public,
        )
        .allowing(&[UNAUTHENTICATED]),
        row(
            M,
            "deposit",
            "mutation($i: DepositInput!, $k: String!) { deposit(input: $i, idempotencyKey: $k) { transaction { id } } }",
            json!({ "i": { "walletId": f.owner_usd, "amount": "1" }, "k": FRESH_KEY }),
            Rule::Owner,
        ),
        row(
            M,
            "finishStepUp",
            "mutation($a: JSON!) { finishStepUp(assertion: $a) { token } }",
            json!({ "a": {} }),
            Rule::SignedIn,
        )
        .allowing(&[STEP_UP_REQUIRED]),
        // The `mfaToken` is the credential: an unknown one is refused for all.
        row(
            M,
            "finishWebauthnLogin",
            "mutation($a: JSON!) { finishWebauthnLogin(mfaToken: \"no-such-challenge\", assertion: $a) { accessToken } }",
            json!({ "a": {} }),
            Rule::Public,
        )
        .allowing(&[UNAUTHENTICATED]),
        row(
            M,
            "finishWebauthnRegistration",
            "mutation($c: JSON!) { finishWebauthnRegistration(credential: $c, name: \"key\") { id } }",
            json!({ "c": {} }),
            Rule::SignedIn,
        )
        .allowing(&[BAD_USER_INPUT]),
        row(
            M,
            "freezeWallet",
            "mutation($id: ID!) { freezeWallet(id: $id, reason: \"authorization test\") { id status } }",
            json!({ "id": f.target_eur }),
            COMPLIANCE,
        ),
        // Admins pass the role check and are asked for a step-up.
        row(
            M,
            "grantRole",
            "mutation($u: ID!) { grantRole(userId: $u, role: SUPPORT) { id } }",
            json!({ "u": f.target.user_id }),
            ADMIN,
        )
        .allowing(&[STEP_UP_REQUIRED]),
        row(
            M,
            "login",
            "mutation($i: LoginInput!) { login(input: $i) { __typename } }",
            json!({ "i": { "email": f.public.email, "password": PASSWORD } }),
            Rule::Public,
        ),
        row(M, "logout", "mutation { logout }", json!({}), Rule::SignedIn).own_session(),
        row(
            M,
            "markNotificationsRead",
            "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) }",
            json!({ "ids": [f.notification] }),
            Rule::SignedIn,
        ),
        row(
            M,
            "openWallet",
            "mutation { openWallet(currency: \"EUR\") { id } }",
            json!({}),
            Rule::SignedIn,
        ),
        row(
            M,
            "refreshSession",
            "mutation($r: String!) { refreshSession(refreshToken: $r) { accessToken } }",
            json!({ "r": FRESH_REFRESH }),
            Rule::Public,
        ),
        row(
            M,
            "register",
            "mutation($i: RegisterInput!) { register(input: $i) { accessToken } }",
            json!({ "i": { "email": FRESH_EMAIL, "password": PASSWORD, "displayName": "New user" } }),
            Rule::Public,
        ),
        row(
            M,
            "updateNotificationPreferences",
            "mutation { updateNotificationPreferences(input: [{ kind: KYC_STATUS, channel: PUSH, enabled: true }]) { enabled } }",
            json!({}),
            Rule::SignedIn,
        ),
        row(
            M,
            "registerPushDevice",
            "mutation($t: String!) { registerPushDevice(token: $t, platform: ANDROID) { id } }",
            json!({ "t": format!("roles-device-{}", Uuid::new_v4().simple()) }),
            Rule::SignedIn,
        ),
        row(
            M,
            "removePushDevice",
            "mutation($id: ID!) { removePushDevice(id: $id) }",
            json!({ "id": Uuid::new_v4().to_string() }),
            Rule::SignedIn,
        )
        // Nobody has this device.
        .allowing(&[NOT_FOUND]),
        row(
            M,
            "retryDelivery",
            "mutation($id: ID!) { retryDelivery(id: $id) { id } }",
            json!({ "id": Uuid::new_v4().to_string() }),
            ADMIN,
        )
        // No such dead letter: found missing once the role is checked.
        .allowing(&[NOT_FOUND]),
        row(
            M,
            "removeWebauthnCredential",
            "mutation($id: ID!) { removeWebauthnCredential(id: $id) }",
            json!({ "id": Uuid::new_v4().to_string() }),
            Rule::SignedIn,
        )
        // Nobody holds this key: found missing before a step-up is asked.
        .allowing(&[NOT_FOUND]),
        row(
            Q,
            "exportMyData",
            "query { exportMyData }",
            json!({}),
            Rule::SignedIn,
        ),
        row(
            M,
            "updateProfile",
            "mutation { updateProfile(input: { locale: \"en-GB\" }) { id } }",
            json!({}),
            Rule::SignedIn,
        ),
        // Every caller's wallet holds money: refused after the role check.
        row(
            M,
            "closeAccount",
            "mutation { closeAccount }",
            json!({}),
            Rule::SignedIn,
        )
        .allowing(&[BAD_USER_INPUT]),
        // No such user: found missing before a step-up is asked.
        row(
            M,
            "eraseUser",
            "mutation($id: ID!) { eraseUser(id: $id) }",
            json!({ "id": Uuid::new_v4().to_string() }),
            ADMIN,
        )
        .allowing(&[NOT_FOUND]),
        row(
            M,
            "kycAccessToken",
            "mutation { kycAccessToken }",
            json!({}),
            Rule::SignedIn,
        )
        .allowing(&["PROVIDER_UNAVAILABLE"]),
        // No provider is configured here: refused once the wallet is found.
        row(
            M,
            "startDeposit",
            "mutation($i: DepositInput!, $k: String!) { startDeposit(input: $i, idempotencyKey: $k) { id } }",
            json!({ "i": { "walletId": f.owner_usd, "amount": "1" }, "k": FRESH_KEY }),
            Rule::Owner,
        )
        .allowing(&["PROVIDER_UNAVAILABLE"]),
        row(
            Q,
            "depositIntent",
            "query($id: ID!) { depositIntent(id: $id) { id } }",
            json!({ "id": Uuid::new_v4().to_string() }),
            Rule::SignedIn,
        )
        .allowing(&[NOT_FOUND]),
        // Every caller holds a EUR wallet; only the owner has this USD one.
        row(
            M,
            "quoteExchange",
            "mutation($w: ID!) { quoteExchange(fromWalletId: $w, toCurrency: \"EUR\", amount: \"1\") { id } }",
            json!({ "w": f.owner_usd }),
            Rule::Owner,
        ),
        // No such quote: found missing once the caller is known.
        row(
            M,
            "exchange",
            "mutation($q: ID!, $k: String!) { exchange(quoteId: $q, idempotencyKey: $k) { replayed } }",
            json!({ "q": Uuid::new_v4().to_string(), "k": FRESH_KEY }),
            Rule::SignedIn,
        )
        .allowing(&[NOT_FOUND]),
        // No provider is configured here: refused once the caller is known.
        row(
            M,
            "submitKyc",
            "mutation($i: SubmitKycInput!) { submitKyc(input: $i) { id status } }",
            json!({ "i": {
                "firstName": "Ada", "lastName": "Lovelace", "dateOfBirth": "1990-12-10",
                "address": { "street": "1 Main St", "city": "London", "postalCode": "N1 9GU", "country": "GBR" },
                "country": "GBR", "documentType": "PASSPORT", "documentNumber": "X1234567"
            } }),
            Rule::SignedIn,
        )
        .allowing(&["PROVIDER_UNAVAILABLE"]),
        // The second officer finds the case already in review.
        row(
            M,
            "reviewKyc",
            "mutation($u: ID!) { reviewKyc(userId: $u, decision: START_REVIEW) { id kycStatus } }",
            json!({ "u": f.target.user_id }),
            COMPLIANCE,
        )
        .allowing(&[OK, BAD_USER_INPUT]),
        row(
            M,
            "revokeRole",
            "mutation($u: ID!) { revokeRole(userId: $u, role: SUPPORT) { id } }",
            json!({ "u": f.target.user_id }),
            ADMIN,
        )
        .allowing(&[STEP_UP_REQUIRED]),
        row(
            M,
            "requestPayment",
            "mutation($e: String!) { requestPayment(input: { fromEmail: $e, amount: \"0.01\", currency: \"EUR\" }) { id } }",
            json!({ "e": f.target.email }),
            Rule::SignedIn,
        ),
        row(
            M,
            "payRequest",
            "mutation($id: ID!, $k: String!) { payRequest(id: $id, idempotencyKey: $k) { transaction { id } } }",
            json!({ "id": f.request_to_pay, "k": FRESH_KEY }),
            Rule::Owner,
        ),
        row(
            M,
            "declineRequest",
            "mutation($id: ID!) { declineRequest(id: $id) { id status } }",
            json!({ "id": f.request_to_decline }),
            Rule::Owner,
        ),
        // Not held: the decision is refused after the role check.
        row(
            M,
            "releaseHold",
            "mutation($id: ID!) { releaseHold(id: $id, reason: \"checked\") { transaction { id } } }",
            json!({ "id": f.pending_withdrawal }),
            COMPLIANCE,
        )
        .allowing(&[BAD_USER_INPUT]),
        row(
            M,
            "rejectHold",
            "mutation($id: ID!) { rejectHold(id: $id, reason: \"checked\") { transaction { id } } }",
            json!({ "id": f.pending_withdrawal }),
            COMPLIANCE,
        )
        .allowing(&[BAD_USER_INPUT]),
        row(
            M,
            "reverseTransaction",
            "mutation($id: ID!, $k: String!) { reverseTransaction(id: $id, reason: \"sent in error\", idempotencyKey: $k) { transaction { id kind } } }",
            json!({ "id": f.transfer, "k": FRESH_KEY }),
            ADMIN,
        ),
        // A sandbox deposit did not come from a card.
        row(
            M,
            "refundDeposit",
            "mutation($id: ID!, $k: String!) { refundDeposit(id: $id, amount: \"1\", idempotencyKey: $k) { transaction { id } } }",
            json!({ "id": f.transfer, "k": FRESH_KEY }),
            ADMIN,
        )
        .allowing(&[BAD_USER_INPUT]),
        row(
            M,
            "settleWithdrawal",
            "mutation($id: ID!) { settleWithdrawal(id: $id, outcome: FAILED) { transaction { id status } } }",
            json!({ "id": f.pending_withdrawal }),
            ADMIN,
        ),
        row(
            M,
            "startOAuthLogin",
            "mutation($r: String!) { startOAuthLogin(provider: \"acme\", redirectUri: $r) { authorizationUrl state } }",
            json!({ "r": REDIRECT_URI }),
            Rule::Public,
        ),
        row(
            M,
            "transfer",
            "mutation($i: TransferInput!, $k: String!) { transfer(input: $i, idempotencyKey: $k) { transaction { id } } }",
            json!({ "i": { "fromWalletId": f.owner_usd, "toEmail": f.target.email, "amount": "1" }, "k": FRESH_KEY }),
            Rule::Owner,
        ),
        row(
            M,
            "unfreezeWallet",
            "mutation($id: ID!) { unfreezeWallet(id: $id) { id status } }",
            json!({ "id": f.target_eur }),
            COMPLIANCE,
        ),
        row(
            M,
            "withdraw",
            "mutation($i: WithdrawInput!, $k: String!) { withdraw(input: $i, idempotencyKey: $k) { transaction { id } } }",
            json!({ "i": { "walletId": f.owner_usd, "amount": "1", "destination": "DE89370400440532013000" }, "k": FRESH_KEY }),
            Rule::Owner,
        ),
        // Subscription (over WebSocket; `OK` = the stream opened).
        row(
            S,
            "balanceUpdated",
            "subscription { balanceUpdated { sequence } }",
            json!({}),
            Rule::SignedIn,
        ),
        row(
            S,
            "balanceUpdated",
            "subscription($w: ID) { balanceUpdated(walletId: $w) { sequence } }",
            json!({ "w": f.owner_usd }),
            Rule::Owner,
        )
        .variant("(walletId: owner's)"),
        row(
            S,
            "balanceUpdated",
            "subscription { balanceUpdated(allUsers: true) { sequence } }",
            json!({}),
            ADMIN,
        )
        .variant("(allUsers: true)"),
        row(
            S,
            "kycStatus",
            "subscription { kycStatus { status } }",
            json!({}),
            Rule::SignedIn,
        ),
        row(
            S,
            "notificationCreated",
            "subscription { notificationCreated { id } }",
            json!({}),
            Rule::SignedIn,
        ),
        row(
            S,
            "transactionReceived",
            "subscription { transactionReceived { sequence } }",
            json!({}),
            Rule::SignedIn,
        ),
        row(
            S,
            "transactionUpdated",
            "subscription { transactionUpdated { sequence } }",
            json!({}),
            Rule::SignedIn,
        ),
        row(
            S,
            "paymentRequestUpdated",
            "subscription { paymentRequestUpdated { sequence } }",
            json!({}),
            Rule::SignedIn,
        ),
        row(
            S,
            "transactionSent",
            "subscription { transactionSent { sequence } }",
            json!({}),
            Rule::SignedIn,
        ),
    ]
}

/// The name of the root type of `operation` (`query`, `mutation`,
/// `subscription`) in an SDL document: from its `schema { }` block, else
/// the default name.
fn root_type(sdl: &str, operation: &str) -> String {
    let declared = sdl
        .lines()
        .skip_while(|l| l.trim() != "schema {")
        .take_while(|l| l.trim() != "}")
        .find_map(|l| {
            let (op, name) = l.trim().split_once(':')?;
            (op.trim() == operation).then(|| name.trim().to_owned())
        });
    declared.unwrap_or_else(|| {
        let mut name = operation.to_owned();
        name[..1].make_ascii_uppercase();
        name
    })
}

/// Field names of `type <name>` in an SDL document.
fn root_fields(sdl: &str, name: &str) -> BTreeSet<String> {
    let header = format!("type {name} {{");
    let mut fields = BTreeSet::new();
    let mut lines = sdl.lines().skip_while(|l| l.trim() != header).skip(1);
    let mut in_doc = false;
    for line in lines.by_ref() {
        let t = line.trim();
        if t == "}" && !in_doc {
            return fields;
        }
        if let Some(rest) = t.strip_prefix("\"\"\"") {
            // `"""text"""` on one line leaves the state unchanged.
            if !(rest.len() >= 3 && rest.ends_with("\"\"\"")) {
                in_doc = !in_doc;
            }
            continue;
        }
        if in_doc {
            if t.ends_with("\"\"\"") {
                in_doc = false;
            }
            continue;
        }
        let field: String = t
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !field.is_empty() {
            fields.insert(field);
        }
    }
    panic!("type {name} not found or not closed in the SDL");
}

/// `OK`, or the code of the first error.
fn outcome(body: &Value) -> String {
    match body["errors"].as_array() {
        Some(errors) if !errors.is_empty() => errors[0]["extensions"]["code"]
            .as_str()
            .unwrap_or("NO_CODE")
            .to_owned(),
        _ => OK.to_owned(),
    }
}

/// `vars` with the placeholders replaced by fresh values.
async fn freshen(app: &TestApp, f: &Fixtures, vars: &Value, n: &mut u32) -> Value {
    match vars {
        Value::String(s) if s == FRESH_KEY => json!(format!("roles-{}", Uuid::new_v4())),
        Value::String(s) if s == FRESH_EMAIL => {
            *n += 1;
            json!(format!("roles-new-{n}@example.com"))
        }
        Value::String(s) if s == FRESH_REFRESH => json!(app.login(&f.public.email).await.refresh),
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                out.insert(k.clone(), Box::pin(freshen(app, f, v, n)).await);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// A staff member: a user granted `role`, signed in again so the token
/// carries it.
async fn staff(app: &TestApp, email: &str, role: Role) -> Session {
    app.register(email).await;
    entity::store::users::grant_role(
        &app.db,
        None,
        &domain::Email::parse(email).expect("email"),
        role,
    )
    .await
    .expect("grant role");
    app.login(email).await
}

/// The first message of each subscription on one socket: its error code,
/// `OK` for data, or `OK` when the stream stays open and silent.
async fn subscription_outcomes(
    ws: &mut WsClient,
    ops: &[(String, &Row)],
    caller: Caller,
) -> HashMap<String, (String, Value)> {
    for (id, r) in ops {
        ws.subscribe(id, r.op, r.vars.clone()).await;
    }
    let mut got: HashMap<String, (String, Value)> = HashMap::new();
    // Refusals answer at once: wait for every expected one (up to 10 s),
    // then give the others a quiet second to show an error.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting = ops
            .iter()
            .any(|(id, r)| !r.rule.permits(caller) && !got.contains_key(id));
        let until = if waiting {
            deadline
        } else {
            tokio::time::Instant::now() + Duration::from_secs(1)
        };
        let next = tokio::time::timeout_at(until, ws.next_message(Duration::from_secs(60))).await;
        let msg = match next {
            Err(_) => break,
            Ok(Ok(msg)) => msg,
            Ok(Err(end)) => panic!("{caller:?}'s socket ended: {end:?}"),
        };
        let Some(id) = msg["id"].as_str().map(str::to_owned) else {
            continue;
        };
        if got.contains_key(&id) {
            continue;
        }
        let code = match msg["type"].as_str() {
            Some("error") => msg["payload"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or("NO_CODE")
                .to_owned(),
            Some("next") => outcome(&msg["payload"]),
            Some("complete") => "COMPLETED_WITHOUT_RESULT".to_owned(),
            _ => continue,
        };
        got.insert(id, (code, msg));
    }
    for (id, _) in ops {
        if !got.contains_key(id) {
            got.insert(
                id.clone(),
                (OK.to_owned(), json!("stream open, no message")),
            );
            ws.send(json!({ "id": id, "type": "complete" })).await;
        }
    }
    got
}

fn verdict(r: &Row, caller: Caller, got: &str) -> Result<(), String> {
    let expected = if r.rule.permits(caller) {
        r.allowed
    } else {
        r.rule.refusal(caller)
    };
    if expected.contains(&got) {
        Ok(())
    } else {
        let what = if r.rule.permits(caller) {
            "allowed"
        } else {
            "refused"
        };
        Err(format!("expected {what} ({})", expected.join(" or ")))
    }
}

#[tokio::test]
async fn every_operation_is_allowed_or_refused_by_role() {
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.oauth_providers = vec![OauthProviderSettings {
            name: "acme".to_owned(),
            issuer: None,
            auth_url: Some("https://idp.example.com/authorize".to_owned()),
            token_url: Some("https://idp.example.com/token".to_owned()),
            userinfo_url: Some("https://idp.example.com/userinfo".to_owned()),
            client_id: "wallet-bff".to_owned(),
            client_secret: "secret".to_owned(),
            scopes: vec!["openid".to_owned(), "email".to_owned()],
            client_auth: Default::default(),
        }];
        s.oauth_redirect_uris = vec![REDIRECT_URI.to_owned()];
    })
    .await;

    // Fixtures.
    let owner = app.register("owner@example.com").await;
    let owner_usd = app.open_wallet(&owner, "USD").await;
    data(
        &app.deposit(&owner, &owner_usd, "1000", "fixture-deposit")
            .await,
        "deposit",
    );
    let pending_withdrawal = data(
        &app.withdraw(&owner, &owner_usd, "5", "fixture-withdraw")
            .await,
        "withdraw",
    )["transaction"]["id"]
        .as_str()
        .expect("withdrawal id")
        .to_owned();
    let other = app.register("other@example.com").await;
    app.open_wallet(&other, "USD").await;
    let target = app.register("target@example.com").await;
    let target_usd = app.open_wallet(&target, "USD").await;
    let target_eur = app.open_wallet(&target, "EUR").await;
    data(
        &app.deposit(&target, &target_usd, "10", "fixture-target-deposit")
            .await,
        "deposit",
    );
    let transfer = data(
        &app.transfer(
            &target,
            json!({ "fromWalletId": target_usd, "toWalletId": owner_usd, "amount": "1" }),
            "fixture-transfer",
        )
        .await,
        "transfer",
    )["transaction"]["id"]
        .as_str()
        .expect("transfer id")
        .to_owned();
    let inbox = app
        .notifications(
            &owner,
            "{ notifications(first: 1) { edges { node { id } } } }",
            1,
        )
        .await;
    let notification = inbox[0]["node"]["id"]
        .as_str()
        .expect("the owner has a notification")
        .to_owned();
    // `markNotificationsRead` answers any signed-in user (the table checks
    // that) but only ever touches the caller's own notifications.
    let marked = app
        .gql(
            Some(&other.token),
            "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) }",
            json!({ "ids": [notification] }),
        )
        .await;
    assert_eq!(data(&marked, "markNotificationsRead"), 0, "{marked}");
    let unread = app
        .gql(
            Some(&owner.token),
            "{ notifications(unreadOnly: true) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data(&unread, "notifications")["edges"][0]["node"]["id"],
        json!(notification),
        "{unread}"
    );
    let public = app.register("public@example.com").await;
    let mut sessions: HashMap<Caller, Session> = HashMap::new();
    sessions.insert(Caller::Owner, owner);
    sessions.insert(Caller::OtherUser, other);
    sessions.insert(
        Caller::Support,
        staff(&app, "support@example.com", Role::Support).await,
    );
    sessions.insert(
        Caller::Compliance,
        staff(&app, "compliance@example.com", Role::Compliance).await,
    );
    sessions.insert(
        Caller::Admin,
        staff(&app, "admin@example.com", Role::Admin).await,
    );
    // Every signed-in caller holds money, so `closeAccount` is refused after
    // the authorization check and nobody's account closes mid-table.
    for s in sessions.values() {
        let w = app.open_wallet(s, "EUR").await;
        data(&app.deposit(s, &w, "1", "keep-open").await, "deposit");
    }
    // Asked by someone whose wallet nobody freezes during the table.
    let requester = app.register("requester@example.com").await;
    app.open_wallet(&requester, "EUR").await;
    let mut requests = Vec::new();
    for _ in 0..2 {
        let made = app
            .gql(
                Some(&requester.token),
                "mutation { requestPayment(input: { fromEmail: \"owner@example.com\", amount: \"0.5\", currency: \"EUR\" }) { id } }",
                json!({}),
            )
            .await;
        requests.push(
            data(&made, "requestPayment")["id"]
                .as_str()
                .expect("request id")
                .to_owned(),
        );
    }
    let fixtures = Fixtures {
        owner_usd,
        pending_withdrawal,
        transfer,
        request_to_pay: requests[0].clone(),
        request_to_decline: requests[1].clone(),
        notification,
        target,
        target_eur,
        public,
    };
    let rows = table(&fixtures);

    // The table covers exactly the root fields of the schema.
    let sdl = api::graphql::sdl();
    for (kind, operation) in [
        (Kind::Query, "query"),
        (Kind::Mutation, "mutation"),
        (Kind::Subscription, "subscription"),
    ] {
        let name = root_type(&sdl, operation);
        let in_schema = root_fields(&sdl, &name);
        let in_table: BTreeSet<String> = rows
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.field.to_owned())
            .collect();
        assert!(
            in_schema == in_table,
            "type {name}: the authorization table must cover every root field.\n  \
             missing from the table: {:?}\n  not in the schema: {:?}",
            in_schema.difference(&in_table).collect::<Vec<_>>(),
            in_table.difference(&in_schema).collect::<Vec<_>>(),
        );
    }
    // Outcomes of permitted calls are never refusals.
    for r in &rows {
        if !matches!(r.rule, Rule::Public) {
            for code in [UNAUTHENTICATED, FORBIDDEN] {
                assert!(!r.allowed.contains(&code), "row {}", r.field);
            }
        }
        if matches!(r.rule, Rule::Owner) {
            assert!(!r.allowed.contains(&NOT_FOUND), "row {}", r.field);
        }
    }

    let mut failures: Vec<String> = Vec::new();
    let mut checked = 0;
    let mut n = 0;
    let mut seen: Vec<String> = Vec::new();
    let mut report = |r: &Row, caller: Caller, got: &str, body: &Value| {
        checked += 1;
        seen.push(format!("{} as {caller:?}: {got}", r.name()));
        if let Err(expected) = verdict(r, caller, got) {
            failures.push(format!(
                "{} as {caller:?} ({:?}): {expected}, got {got}: {body}",
                r.name(),
                r.rule
            ));
        }
    };

    // Queries and mutations over HTTP.
    for r in rows.iter().filter(|r| r.kind != Kind::Subscription) {
        for caller in CALLERS {
            let token = match sessions.get(&caller) {
                None => None,
                Some(s) if r.own_session => Some(app.login(&s.email).await.token),
                Some(s) => Some(s.token.clone()),
            };
            let vars = freshen(&app, &fixtures, &r.vars, &mut n).await;
            let body = app.gql(token.as_deref(), r.op, vars).await;
            report(r, caller, &outcome(&body), &body);
        }
    }

    // Subscriptions over WebSocket. Without a token the socket is refused
    // at `connection_init` (4403), before any operation.
    let subs: Vec<(String, &Row)> = rows
        .iter()
        .filter(|r| r.kind == Kind::Subscription)
        .enumerate()
        .map(|(i, r)| (format!("op{i}"), r))
        .collect();
    let mut anon = WsClient::connect(app.addr, "graphql-transport-ws").await;
    anon.send(json!({ "type": "connection_init", "payload": {} }))
        .await;
    let end = anon.next_message(Duration::from_secs(5)).await;
    let anon_got = if end == Err(WsEnd::Closed(4403)) {
        UNAUTHENTICATED
    } else {
        "SOCKET_ACCEPTED"
    };
    for (_, r) in &subs {
        report(
            r,
            Caller::Anonymous,
            anon_got,
            &json!(format!("connection_init without a token: {end:?}")),
        );
    }
    for caller in CALLERS.into_iter().filter(|c| *c != Caller::Anonymous) {
        let mut ws =
            WsClient::authed(app.addr, "graphql-transport-ws", &sessions[&caller].token).await;
        let got = subscription_outcomes(&mut ws, &subs, caller).await;
        for (id, r) in &subs {
            let (code, msg) = &got[id];
            report(r, caller, code, msg);
        }
    }

    // Shown with `--nocapture`.
    println!("{}", seen.join("\n"));
    assert!(
        failures.is_empty(),
        "{} of {checked} authorization checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, rows.len() * CALLERS.len());
}

/// Separation of duties, as `reviewKyc` already does for KYC cases ("nobody
/// may review their own KYC case"): a freeze is a compliance control, so the
/// officer (or admin) who owns the frozen wallet must not lift it; another
/// officer can.
#[tokio::test]
async fn staff_cannot_lift_a_freeze_on_their_own_wallet() {
    const FREEZE: &str =
        "mutation($id: ID!) { freezeWallet(id: $id, reason: \"AML hold\") { status } }";
    const UNFREEZE: &str = "mutation($id: ID!) { unfreezeWallet(id: $id) { status } }";
    let app = TestApp::spawn(Backend::Postgres).await;
    let officer = staff(&app, "officer@example.com", Role::Compliance).await;
    let colleague = staff(&app, "colleague@example.com", Role::Compliance).await;
    let admin = staff(&app, "admin@example.com", Role::Admin).await;
    for holder in [&officer, &admin] {
        let wallet = app.open_wallet(holder, "USD").await;
        let frozen = app
            .gql(Some(&colleague.token), FREEZE, json!({ "id": wallet }))
            .await;
        assert_eq!(
            data(&frozen, "freezeWallet")["status"],
            "FROZEN",
            "{frozen}"
        );
        let own = app
            .gql(Some(&holder.token), UNFREEZE, json!({ "id": wallet }))
            .await;
        assert_eq!(
            own["errors"][0]["extensions"]["code"], FORBIDDEN,
            "{} lifted the freeze on their own wallet: {own}",
            holder.email
        );
        let other = app
            .gql(Some(&colleague.token), UNFREEZE, json!({ "id": wallet }))
            .await;
        assert_eq!(
            data(&other, "unfreezeWallet")["status"],
            "ACTIVE",
            "{other}"
        );
    }
}
