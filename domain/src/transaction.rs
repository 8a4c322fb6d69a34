//! Kinds and states of money movements and wallets.

use crate::error::DomainError;

string_enum! {
    /// What moved the money.
    TransactionKind {
        /// Funding from the payment rail.
        Deposit => "DEPOSIT",
        /// Pay-out to the payment rail.
        Withdrawal => "WITHDRAWAL",
        /// Between two wallets of the same currency.
        Transfer => "TRANSFER",
        /// Between two wallets of one user in different currencies, at a quote.
        Exchange => "EXCHANGE",
        /// Part of a card deposit paid back to its source through the provider.
        Refund => "REFUND",
        /// The compensating posting of a reversed transfer or deposit.
        Reversal => "REVERSAL",
    }
}

string_enum! {
    /// Where a transaction is in its life.
    TransactionStatus {
        /// Waiting for the payment rail (withdrawals, refunds).
        Pending => "PENDING",
        /// Held by the risk checks: the funds are frozen until compliance
        /// releases the movement or rejects it.
        Held => "HELD",
        /// Done; the money moved.
        Completed => "COMPLETED",
        /// Refused by the rail or by compliance; holds were released.
        Failed => "FAILED",
        /// Undone by a compensating posting.
        Reversed => "REVERSED",
    }
}

string_enum! {
    /// Whether a wallet may move money.
    WalletStatus {
        /// Normal operation.
        Active => "ACTIVE",
        /// Frozen by an administrator: no money moves in or out.
        Frozen => "FROZEN",
        /// The account was closed: nothing moves, for good.
        Closed => "CLOSED",
    }
}

/// How the payment rail (or an admin) ended a pending withdrawal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithdrawalOutcome {
    /// Paid out: the held amount leaves the wallet.
    Completed,
    /// Not paid out: the held amount returns to the available balance.
    Failed,
}

impl WithdrawalOutcome {
    /// The status the withdrawal ends in.
    pub fn final_status(self) -> TransactionStatus {
        match self {
            WithdrawalOutcome::Completed => TransactionStatus::Completed,
            WithdrawalOutcome::Failed => TransactionStatus::Failed,
        }
    }
}

/// Checks that staff may reverse a transaction: a completed transfer or
/// deposit that is not reversed yet.
pub fn ensure_reversible(
    kind: TransactionKind,
    status: TransactionStatus,
) -> Result<(), DomainError> {
    if !matches!(kind, TransactionKind::Transfer | TransactionKind::Deposit) {
        return Err(DomainError::bad_input(
            "only transfers and deposits can be reversed",
        ));
    }
    match status {
        TransactionStatus::Completed => Ok(()),
        TransactionStatus::Reversed => Err(DomainError::bad_input(
            "the transaction is already reversed",
        )),
        other => Err(DomainError::bad_input(format!(
            "only completed transactions can be reversed; this one is {}",
            other.as_str()
        ))),
    }
}

/// How compliance ends a risk hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldDecision {
    /// The movement goes through as asked.
    Release,
    /// The movement is refused: its funds return to the sender.
    Reject,
}

/// Checks that a transaction can be settled: it must be a pending withdrawal.
pub fn ensure_settleable(
    kind: TransactionKind,
    status: TransactionStatus,
) -> Result<(), DomainError> {
    if kind != TransactionKind::Withdrawal {
        return Err(DomainError::bad_input("only withdrawals can be settled"));
    }
    if status == TransactionStatus::Held {
        return Err(DomainError::bad_input(
            "the withdrawal is held for risk review: release or reject the hold first",
        ));
    }
    if status != TransactionStatus::Pending {
        return Err(DomainError::bad_input(format!(
            "withdrawal is already {}",
            status.as_str()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_forms_round_trip() {
        for kind in [
            TransactionKind::Deposit,
            TransactionKind::Withdrawal,
            TransactionKind::Transfer,
            TransactionKind::Refund,
            TransactionKind::Reversal,
        ] {
            assert_eq!(TransactionKind::parse(kind.as_str()).expect("kind"), kind);
        }
        assert!(TransactionStatus::parse("DONE").is_err());
        assert_eq!(
            WalletStatus::parse("FROZEN").expect("status"),
            WalletStatus::Frozen
        );
    }

    #[test]
    fn only_completed_transfers_and_deposits_reverse() {
        use TransactionKind::*;
        use TransactionStatus::*;
        assert!(ensure_reversible(Transfer, Completed).is_ok());
        assert!(ensure_reversible(Deposit, Completed).is_ok());
        assert!(ensure_reversible(Transfer, Reversed).is_err());
        assert!(ensure_reversible(Transfer, Held).is_err());
        assert!(ensure_reversible(Withdrawal, Completed).is_err());
        assert!(ensure_reversible(Reversal, Completed).is_err());
    }

    #[test]
    fn only_pending_withdrawals_settle() {
        assert!(ensure_settleable(TransactionKind::Withdrawal, TransactionStatus::Pending).is_ok());
        assert!(
            ensure_settleable(TransactionKind::Withdrawal, TransactionStatus::Completed).is_err()
        );
        assert!(ensure_settleable(TransactionKind::Transfer, TransactionStatus::Pending).is_err());
    }
}
