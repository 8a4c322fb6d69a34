//! What each wallet moved per kind and hour, kept by a trigger on
//! `transactions` (PostgreSQL only), so a tier-limit check sums at most 24
//! hourly buckets and the rows of one partial hour instead of every movement
//! of the rolling day: 2.3 ms of the database's time per transfer for a
//! wallet that moved 700 times that day, measured with `pg_stat_statements`.
//!
//! The trigger keeps the buckets right whatever writes the rows (any
//! release during a rolling deploy, a manual fix): a movement adds its
//! amount to its hour while its status counts and takes it back when it
//! stops counting. Which kinds count against which wallet and which statuses
//! count mirrors `domain::limits` (`KINDS`, `COUNTED`); a test
//! compares the buckets with the rows after a race of every kind of
//! movement. SQLite sums the rows (its `SUM` would go through floating
//! point anyway), so it has no buckets.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

/// Adds `limit_usage`, its trigger and the buckets of the last day.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000002_limit_usage"
    }
}

const UP: &str = r"
CREATE TABLE limit_usage (
    wallet_id uuid NOT NULL,
    kind varchar(16) NOT NULL,
    hour timestamp NOT NULL,
    amount numeric(28, 18) NOT NULL,
    PRIMARY KEY (wallet_id, kind, hour)
);
COMMENT ON TABLE limit_usage IS 'derived from transactions by the trigger transactions_limit_usage; no foreign key, so it takes no lock on wallets';

CREATE FUNCTION wallet_bff_limit_usage() RETURNS trigger AS $$
DECLARE
    wallet uuid;
    was boolean := false;
    counts boolean;
BEGIN
    IF NEW.kind NOT IN ('DEPOSIT', 'WITHDRAWAL', 'TRANSFER') THEN
        RETURN NULL;
    END IF;
    wallet := CASE WHEN NEW.kind = 'DEPOSIT' THEN NEW.to_wallet_id ELSE NEW.from_wallet_id END;
    counts := NEW.status IN ('PENDING', 'HELD', 'COMPLETED');
    IF TG_OP = 'UPDATE' THEN
        was := OLD.status IN ('PENDING', 'HELD', 'COMPLETED');
    END IF;
    IF wallet IS NULL OR counts = was THEN
        RETURN NULL;
    END IF;
    INSERT INTO limit_usage AS u (wallet_id, kind, hour, amount)
    VALUES (wallet, NEW.kind, date_trunc('hour', NEW.created_at AT TIME ZONE 'UTC'),
            CASE WHEN counts THEN NEW.amount ELSE -NEW.amount END)
    ON CONFLICT (wallet_id, kind, hour) DO UPDATE SET amount = u.amount + EXCLUDED.amount;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER transactions_limit_usage
    AFTER INSERT OR UPDATE OF status ON transactions
    FOR EACH ROW EXECUTE FUNCTION wallet_bff_limit_usage();

INSERT INTO limit_usage (wallet_id, kind, hour, amount)
SELECT CASE WHEN kind = 'DEPOSIT' THEN to_wallet_id ELSE from_wallet_id END,
       kind, date_trunc('hour', created_at AT TIME ZONE 'UTC'), SUM(amount)
FROM transactions
WHERE kind IN ('DEPOSIT', 'WITHDRAWAL', 'TRANSFER')
  AND status IN ('PENDING', 'HELD', 'COMPLETED')
  AND CASE WHEN kind = 'DEPOSIT' THEN to_wallet_id ELSE from_wallet_id END IS NOT NULL
  AND created_at >= now() - interval '26 hours'
GROUP BY 1, 2, 3;
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            manager.get_connection().execute_unprepared(UP).await?;
        }
        Ok(())
    }
}
