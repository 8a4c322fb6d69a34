//! Risk checks on money leaving a wallet (transfers, payment of requests,
//! withdrawals), evaluated inside the money transaction from facts the store
//! reads under the wallet's lock.
//!
//! Each rule that fires adds its weight to the movement's score (0 to 100).
//! At or above the hold threshold the movement is accepted but held: its
//! funds are frozen and compliance releases or rejects it. At or above the
//! block threshold it is refused with `RISK_BLOCKED`. Both are logged as
//! alerts; every movement keeps its score and the rules that fired.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

use crate::error::{DomainError, ErrorCode};
use crate::money::{Currency, parse_exact, to_canonical};
use crate::transaction::TransactionKind;

string_enum! {
    /// A risk rule.
    RiskRule {
        /// Many movements, or a large total, within the velocity window.
        Velocity => "VELOCITY",
        /// A first transfer to this recipient, at or above the large amount.
        NewRecipient => "NEW_RECIPIENT",
        /// A withdrawal soon after money came into the wallet.
        WithdrawalAfterDeposit => "WITHDRAWAL_AFTER_DEPOSIT",
        /// Far above what the user usually moves in this currency.
        AboveHistory => "ABOVE_HISTORY",
        /// A large movement from a session signed in on a new device or address.
        NewDevice => "NEW_DEVICE",
    }
}

impl RiskRule {
    /// Every rule.
    pub const ALL: [RiskRule; 5] = [
        RiskRule::Velocity,
        RiskRule::NewRecipient,
        RiskRule::WithdrawalAfterDeposit,
        RiskRule::AboveHistory,
        RiskRule::NewDevice,
    ];

    fn key(self) -> &'static str {
        match self {
            RiskRule::Velocity => "velocity",
            RiskRule::NewRecipient => "new_recipient",
            RiskRule::WithdrawalAfterDeposit => "withdrawal_after_deposit",
            RiskRule::AboveHistory => "above_history",
            RiskRule::NewDevice => "new_device",
        }
    }
}

string_enum! {
    /// What the score decided.
    RiskDecision {
        /// Goes through.
        Allow => "ALLOW",
        /// Accepted, funds frozen until compliance decides.
        Hold => "HOLD",
        /// Refused.
        Block => "BLOCK",
    }
}

/// The configured rules: weights, thresholds and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskRules {
    /// Score from which a movement is held.
    pub hold_score: u32,
    /// Score from which a movement is refused.
    pub block_score: u32,
    /// What each rule adds to the score when it fires (0 switches it off).
    pub weights: BTreeMap<RiskRule, u32>,
    /// The velocity window.
    pub velocity_window: Duration,
    /// Movements out in the window (this one included) above which velocity fires.
    pub velocity_count: u32,
    /// Multiples of the large amount moved out in the window (this one
    /// included) above which velocity fires.
    pub velocity_large_multiple: Decimal,
    /// How soon after a deposit a withdrawal fires its rule.
    pub deposit_window: Duration,
    /// How long after signing in on a new device a large movement fires its rule.
    pub new_device_window: Duration,
    /// How many times the user's average movement fires the history rule.
    pub history_multiple: Decimal,
    /// Movements needed before the history rule applies.
    pub history_min_count: u32,
    /// What counts as a large movement, per currency.
    pub large: BTreeMap<Currency, Decimal>,
}

impl Default for RiskRules {
    /// A first transfer or a new device alone is noted; two signals hold; a
    /// pile-up blocks.
    fn default() -> Self {
        let weights = BTreeMap::from([
            (RiskRule::Velocity, 40),
            (RiskRule::NewRecipient, 30),
            (RiskRule::WithdrawalAfterDeposit, 30),
            (RiskRule::AboveHistory, 30),
            (RiskRule::NewDevice, 40),
        ]);
        let large = [
            (Currency::Usd, "1000"),
            (Currency::Eur, "1000"),
            (Currency::Usdc, "1000"),
            (Currency::Btc, "0.02"),
            (Currency::Eth, "0.5"),
        ]
        .into_iter()
        .map(|(c, a)| (c, a.parse().unwrap_or(Decimal::MAX)))
        .collect();
        Self {
            hold_score: 50,
            block_score: 90,
            weights,
            velocity_window: Duration::hours(1),
            velocity_count: 10,
            velocity_large_multiple: Decimal::from(5),
            deposit_window: Duration::hours(24),
            new_device_window: Duration::hours(24),
            history_multiple: Decimal::from(10),
            history_min_count: 3,
            large,
        }
    }
}

/// What the store knows about the movement and its author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskFacts {
    /// Transfer or withdrawal.
    pub kind: TransactionKind,
    /// The amount.
    pub amount: Decimal,
    /// Its currency.
    pub currency: Currency,
    /// Now.
    pub at: DateTime<Utc>,
    /// The user's earlier movements out in this currency, newest first (a
    /// bounded number): amount and time.
    pub recent: Vec<(Decimal, DateTime<Utc>)>,
    /// For transfers: whether the user paid this recipient before.
    pub paid_recipient_before: Option<bool>,
    /// When money last came into the wallet.
    pub last_deposit_at: Option<DateTime<Utc>>,
    /// When the session making the request signed in, if on a new device.
    pub new_device_since: Option<DateTime<Utc>>,
}

/// One rule that fired, with what it saw.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleHit {
    /// The rule.
    pub rule: RiskRule,
    /// Its weight.
    pub weight: u32,
    /// What it saw, for the reviewer.
    pub detail: String,
}

/// The score, the rules that fired and the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// 0 to 100.
    pub score: u32,
    /// The rules that fired.
    pub hits: Vec<RuleHit>,
    /// What the score decides.
    pub decision: RiskDecision,
}

impl Assessment {
    /// The refusal of a blocked movement: `RISK_BLOCKED` with the score and
    /// the rules, never the thresholds.
    pub fn refusal(&self) -> DomainError {
        let rules: Vec<&str> = self.hits.iter().map(|h| h.rule.as_str()).collect();
        DomainError::new(
            ErrorCode::RiskBlocked,
            "this movement was refused by our risk checks; contact support if you think this is wrong",
        )
        .with_detail("riskScore", self.score.to_string())
        .with_detail("riskRules", rules.join(","))
    }
}

impl RiskRules {
    /// The large amount in a currency.
    pub fn large(&self, currency: Currency) -> Decimal {
        self.large.get(&currency).copied().unwrap_or(Decimal::MAX)
    }

    /// Whether a rule is on (its facts need not be read otherwise).
    pub fn uses(&self, rule: RiskRule) -> bool {
        self.weight(rule) > 0
    }

    fn weight(&self, rule: RiskRule) -> u32 {
        self.weights.get(&rule).copied().unwrap_or(0)
    }

    /// Scores a movement.
    pub fn assess(&self, facts: &RiskFacts) -> Assessment {
        let mut hits = Vec::new();
        let large = self.large(facts.currency);
        let shown = |d: Decimal| format!("{} {}", to_canonical(d), facts.currency);
        let mut fire = |rule: RiskRule, detail: String| {
            let weight = self.weight(rule);
            if weight > 0 {
                hits.push(RuleHit {
                    rule,
                    weight,
                    detail,
                });
            }
        };

        let since = facts.at - self.velocity_window;
        let window: Vec<Decimal> = facts
            .recent
            .iter()
            .filter(|(_, at)| *at >= since)
            .map(|(a, _)| *a)
            .collect();
        let count = u32::try_from(window.len()).unwrap_or(u32::MAX) + 1;
        let total: Decimal = window.iter().copied().sum::<Decimal>() + facts.amount;
        let total_cap = large * self.velocity_large_multiple;
        if count > self.velocity_count || (large != Decimal::MAX && total > total_cap) {
            fire(
                RiskRule::Velocity,
                format!(
                    "{count} movements, {} in {} minutes",
                    shown(total),
                    self.velocity_window.num_minutes()
                ),
            );
        }

        if facts.paid_recipient_before == Some(false) && facts.amount >= large {
            fire(
                RiskRule::NewRecipient,
                format!("first transfer to this recipient: {}", shown(facts.amount)),
            );
        }

        if facts.kind == TransactionKind::Withdrawal
            && let Some(at) = facts.last_deposit_at
            && facts.at - at < self.deposit_window
        {
            fire(
                RiskRule::WithdrawalAfterDeposit,
                format!(
                    "withdrawal {} minutes after money came in",
                    (facts.at - at).num_minutes()
                ),
            );
        }

        let history = u32::try_from(facts.recent.len()).unwrap_or(u32::MAX);
        if history >= self.history_min_count {
            let average =
                facts.recent.iter().map(|(a, _)| *a).sum::<Decimal>() / Decimal::from(history);
            if facts.amount > average * self.history_multiple {
                fire(
                    RiskRule::AboveHistory,
                    format!(
                        "{} against an average of {}",
                        shown(facts.amount),
                        shown(average.round_dp(facts.currency.scale()))
                    ),
                );
            }
        }

        if let Some(since) = facts.new_device_since
            && facts.at - since < self.new_device_window
            && facts.amount >= large
        {
            fire(
                RiskRule::NewDevice,
                format!(
                    "{} from a device first seen {} minutes ago",
                    shown(facts.amount),
                    (facts.at - since).num_minutes()
                ),
            );
        }

        let score = hits.iter().map(|h| h.weight).sum::<u32>().min(100);
        let decision = if score >= self.block_score {
            RiskDecision::Block
        } else if score >= self.hold_score {
            RiskDecision::Hold
        } else {
            RiskDecision::Allow
        };
        Assessment {
            score,
            hits,
            decision,
        }
    }

    /// Applies `RISK_RULES` overrides: comma-separated `key=value`, with
    /// keys `hold`, `block` (scores 1 to 100), `<rule>.weight` (0 to 100),
    /// `velocity.window`, `deposit.window`, `new_device.window` (minutes),
    /// `velocity.count`, `velocity.large_multiple`, `history.multiple`,
    /// `history.min_count` and `large.<CURRENCY>` (an exact amount).
    pub fn with_overrides(mut self, raw: &str) -> Result<Self, DomainError> {
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = |why: &str| DomainError::bad_input(format!("RISK_RULES {entry:?}: {why}"));
            let (key, value) = entry.split_once('=').ok_or_else(|| bad("no `=`"))?;
            let (key, value) = (key.trim(), value.trim());
            let number = || {
                value
                    .parse::<u32>()
                    .map_err(|_| bad("expected a whole number"))
            };
            let score = || {
                number().and_then(|n| {
                    (1..=100)
                        .contains(&n)
                        .then_some(n)
                        .ok_or_else(|| bad("a score is 1 to 100"))
                })
            };
            let minutes = || number().map(|n| Duration::minutes(i64::from(n)));
            let amount = || {
                parse_exact(value)
                    .ok()
                    .filter(|d| d.is_sign_positive() && !d.is_zero())
                    .ok_or_else(|| bad("expected a positive exact decimal"))
            };
            match key {
                "hold" => self.hold_score = score()?,
                "block" => self.block_score = score()?,
                "velocity.window" => self.velocity_window = minutes()?,
                "deposit.window" => self.deposit_window = minutes()?,
                "new_device.window" => self.new_device_window = minutes()?,
                "velocity.count" => self.velocity_count = number()?,
                "velocity.large_multiple" => self.velocity_large_multiple = amount()?,
                "history.multiple" => self.history_multiple = amount()?,
                "history.min_count" => self.history_min_count = number()?.max(1),
                other => {
                    if let Some(code) = other.strip_prefix("large.") {
                        let currency =
                            Currency::parse(code).map_err(|_| bad("unknown currency"))?;
                        self.large.insert(currency, amount()?);
                    } else if let Some(name) = other.strip_suffix(".weight") {
                        let rule = RiskRule::ALL
                            .into_iter()
                            .find(|r| r.key() == name)
                            .ok_or_else(|| bad("unknown rule"))?;
                        let weight = number()?;
                        if weight > 100 {
                            return Err(bad("a weight is 0 to 100"));
                        }
                        self.weights.insert(rule, weight);
                    } else {
                        return Err(bad("unknown key"));
                    }
                }
            }
        }
        if self.hold_score > self.block_score {
            return Err(DomainError::bad_input(
                "RISK_RULES: the hold score must not exceed the block score",
            ));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(kind: TransactionKind, amount: &str) -> RiskFacts {
        RiskFacts {
            kind,
            amount: amount.parse().expect("amount"),
            currency: Currency::Usd,
            at: Utc::now(),
            recent: Vec::new(),
            paid_recipient_before: Some(true),
            last_deposit_at: None,
            new_device_since: None,
        }
    }

    fn fired(a: &Assessment) -> Vec<RiskRule> {
        a.hits.iter().map(|h| h.rule).collect()
    }

    #[test]
    fn a_quiet_movement_scores_zero() {
        let a = RiskRules::default().assess(&facts(TransactionKind::Transfer, "50"));
        assert_eq!((a.score, a.decision), (0, RiskDecision::Allow));
        assert!(a.hits.is_empty());
    }

    #[test]
    fn each_rule_fires_on_its_own_signal() {
        let rules = RiskRules::default();
        let now = Utc::now();

        let mut f = facts(TransactionKind::Transfer, "10");
        f.recent = (0..10)
            .map(|i| ("5".parse().expect("d"), now - Duration::minutes(i)))
            .collect();
        assert_eq!(fired(&rules.assess(&f)), [RiskRule::Velocity]);
        // Ten earlier ones outside the window do not count.
        f.recent = (0..10)
            .map(|i| ("5".parse().expect("d"), now - Duration::hours(2 + i)))
            .collect();
        assert!(!fired(&rules.assess(&f)).contains(&RiskRule::Velocity));

        let mut f = facts(TransactionKind::Transfer, "1000");
        f.paid_recipient_before = Some(false);
        assert_eq!(fired(&rules.assess(&f)), [RiskRule::NewRecipient]);
        f.amount = "999.99".parse().expect("d");
        assert!(rules.assess(&f).hits.is_empty(), "below the large amount");

        let mut f = facts(TransactionKind::Withdrawal, "10");
        f.paid_recipient_before = None;
        f.last_deposit_at = Some(now - Duration::hours(1));
        assert_eq!(fired(&rules.assess(&f)), [RiskRule::WithdrawalAfterDeposit]);
        f.last_deposit_at = Some(now - Duration::hours(25));
        assert!(rules.assess(&f).hits.is_empty());

        let mut f = facts(TransactionKind::Transfer, "101");
        f.recent = (0..3)
            .map(|i| ("10".parse().expect("d"), now - Duration::days(i + 1)))
            .collect();
        assert_eq!(fired(&rules.assess(&f)), [RiskRule::AboveHistory]);
        f.amount = "100".parse().expect("d");
        assert!(
            rules.assess(&f).hits.is_empty(),
            "ten times is not above ten times"
        );

        let mut f = facts(TransactionKind::Transfer, "1000");
        f.new_device_since = Some(now - Duration::minutes(5));
        let a = rules.assess(&f);
        assert_eq!(fired(&a), [RiskRule::NewDevice]);
        assert_eq!(
            a.decision,
            RiskDecision::Allow,
            "40 is below the hold score"
        );
    }

    #[test]
    fn scores_add_up_to_hold_and_block() {
        let rules = RiskRules::default();
        let now = Utc::now();
        let mut f = facts(TransactionKind::Transfer, "1000");
        f.paid_recipient_before = Some(false);
        f.new_device_since = Some(now);
        let a = rules.assess(&f);
        assert_eq!((a.score, a.decision), (70, RiskDecision::Hold));
        f.recent = (0..10)
            .map(|i| ("1".parse().expect("d"), now - Duration::minutes(i)))
            .collect();
        let a = rules.assess(&f);
        assert_eq!((a.score, a.decision), (100, RiskDecision::Block));
        let refusal = a.refusal();
        assert_eq!(refusal.code, ErrorCode::RiskBlocked);
        assert!(
            refusal
                .details
                .iter()
                .any(|(k, v)| *k == "riskRules" && v.contains("NEW_DEVICE"))
        );
    }

    #[test]
    fn overrides_change_weights_thresholds_and_amounts() {
        let rules = RiskRules::default()
            .with_overrides(
                "hold=20, block=60, new_recipient.weight=25, large.USD=100, velocity.window=5",
            )
            .expect("valid");
        assert_eq!((rules.hold_score, rules.block_score), (20, 60));
        assert_eq!(rules.large(Currency::Usd), Decimal::from(100));
        assert_eq!(rules.velocity_window, Duration::minutes(5));
        let mut f = facts(TransactionKind::Transfer, "100");
        f.paid_recipient_before = Some(false);
        let a = rules.assess(&f);
        assert_eq!((a.score, a.decision), (25, RiskDecision::Hold));
        for bad in [
            "hold",
            "hold=0",
            "bogus=1",
            "large.XYZ=1",
            "x.weight=1",
            "hold=95",
            "velocity.weight=101",
        ] {
            assert!(RiskRules::default().with_overrides(bad).is_err(), "{bad}");
        }
    }
}
