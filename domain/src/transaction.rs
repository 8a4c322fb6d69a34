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
    }
}

string_enum! {
    /// Where a transaction is in its life.
    TransactionStatus {
        /// Waiting for the payment rail (withdrawals).
        Pending => "PENDING",
        /// Done; the money moved.
        Completed => "COMPLETED",
        /// Refused by the rail; holds were released.
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

/// Checks that a transaction can be settled: it must be a pending withdrawal.
pub fn ensure_settleable(
    kind: TransactionKind,
    status: TransactionStatus,
) -> Result<(), DomainError> {
    if kind != TransactionKind::Withdrawal {
        return Err(DomainError::bad_input("only withdrawals can be settled"));
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
    fn only_pending_withdrawals_settle() {
        assert!(ensure_settleable(TransactionKind::Withdrawal, TransactionStatus::Pending).is_ok());
        assert!(
            ensure_settleable(TransactionKind::Withdrawal, TransactionStatus::Completed).is_err()
        );
        assert!(ensure_settleable(TransactionKind::Transfer, TransactionStatus::Pending).is_err());
    }
}
