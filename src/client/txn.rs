//! Transaction administration calls: ListTransactions, DescribeTransactions and
//! DescribeProducers (what `strata txn` shows).

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{protocol, Client, ClientError};

/// One transactional id as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnListing {
    /// Transactional id.
    pub transactional_id: String,
    /// Its producer id.
    pub producer_id: i64,
    /// Its state (`Ongoing`, `CompleteCommit`, ...).
    pub state: String,
}

/// One transactional id as DescribeTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    /// Transactional id.
    pub transactional_id: String,
    /// State.
    pub state: String,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Transaction timeout.
    pub timeout_ms: i32,
    /// Start of the open transaction (ms since the epoch), or -1.
    pub start_time_ms: i64,
    /// Partitions in the open transaction.
    pub partitions: Vec<(String, i32)>,
}

impl Client {
    /// ListTransactions, every state.
    pub fn list_transactions(&mut self) -> Result<Vec<TxnListing>, ClientError> {
        let req = ListTransactionsRequest::default().with_duration_filter(-1);
        let (_, ResponseKind::ListTransactions(r)) =
            self.call(ApiKey::ListTransactions, 1, RequestKind::ListTransactions(req))?
        else {
            return Err(protocol("ListTransactions answered with another message"));
        };
        ClientError::check(r.error_code, "ListTransactions")?;
        Ok(r.transaction_states
            .iter()
            .map(|t| TxnListing {
                transactional_id: t.transactional_id.0.to_string(),
                producer_id: t.producer_id.0,
                state: t.transaction_state.to_string(),
            })
            .collect())
    }

    /// DescribeTransactions of one transactional id.
    pub fn describe_transaction(&mut self, id: &str) -> Result<TxnDescription, ClientError> {
        let txn = TransactionalId(StrBytes::from_string(id.to_owned()));
        let req = DescribeTransactionsRequest::default().with_transactional_ids(vec![txn]);
        let (_, ResponseKind::DescribeTransactions(r)) =
            self.call(ApiKey::DescribeTransactions, 0, RequestKind::DescribeTransactions(req))?
        else {
            return Err(protocol("DescribeTransactions answered with another message"));
        };
        let t = r.transaction_states.into_iter().next();
        let t = t.ok_or_else(|| protocol("no transaction in the answer"))?;
        ClientError::check(t.error_code, format!("describing transactional id {id}"))?;
        let partitions = t
            .topics
            .iter()
            .flat_map(|topic| topic.partitions.iter().map(|p| (topic.topic.0.to_string(), *p)))
            .collect();
        Ok(TxnDescription {
            transactional_id: t.transactional_id.0.to_string(),
            state: t.transaction_state.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.transaction_timeout_ms,
            start_time_ms: t.transaction_start_time_ms,
            partitions,
        })
    }
}
