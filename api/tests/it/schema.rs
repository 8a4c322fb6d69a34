//! `schema.graphql` is generated from the code and must not go stale.

#[test]
fn checked_in_schema_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema.graphql");
    let generated = api::graphql::sdl();
    if std::env::var("UPDATE_SCHEMA").is_ok() {
        std::fs::write(&path, &generated).expect("write schema.graphql");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "schema.graphql is stale: run `cargo run -q -- export-schema > schema.graphql` (or UPDATE_SCHEMA=1 cargo test)"
    );
}

#[test]
fn the_frontend_contracts_error_codes_match_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../frontend-contract/src/error-codes.ts");
    let generated = api::graphql::error_codes_ts();
    if std::env::var("UPDATE_SCHEMA").is_ok() {
        std::fs::write(&path, &generated).expect("write error-codes.ts");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "frontend-contract/src/error-codes.ts is stale: run `cargo run -q -- export-error-codes > frontend-contract/src/error-codes.ts`"
    );
    assert!(generated.contains("\"REPLAY_UNAVAILABLE\","));
}

#[test]
fn schema_has_the_contract_names() {
    let sdl = api::graphql::sdl();
    for name in [
        "scalar Decimal",
        "type TransactionConnection",
        "union LoginResult = AuthPayload | MfaChallenge",
        "input RegisterInput",
        "input LoginInput",
        "input DepositInput",
        "input WithdrawInput",
        "input TransferInput",
        "refreshSession(refreshToken: String!): AuthPayload!",
        "openWallet(currency: String!): Wallet!",
        "settleWithdrawal(",
        "availableBalance: Decimal!",
        "frozenBalance: Decimal!",
    ] {
        assert!(sdl.contains(name), "schema lacks `{name}`");
    }
}
