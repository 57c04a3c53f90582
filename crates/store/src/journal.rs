//! The write journal: every change to a shard, reported as it happens, for replication.
//!
//! A store with a [`Journal`] reports each change to it under the lock of the shard that
//! changed, so the journal sees one shard's changes in the order they were made. Every kind
//! of change is reported:
//! - writes;
//! - TTL and meta-bit changes;
//! - deletes, including those done by expiry (active or on access) and by eviction;
//! - a flush.
//!
//! A replica applying the records in order therefore converges on the primary's keyspace,
//! evictions and expirations included. TTLs travel as absolute Unix milliseconds, so a
//! record applied late still expires at the right moment.

use bytes::Bytes;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The key now holds this item (a write, or a TTL or meta change re-sent whole).
    Put {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
        /// Client flags.
        flags: u32,
        /// Absolute expiry in Unix milliseconds; 0 for none.
        expires_at_ms: u64,
        /// Protocol-defined bits.
        meta: u8,
    },
    /// The key is gone (deleted, expired or evicted).
    Del {
        /// The key.
        key: Bytes,
    },
    /// Every key of the shard is gone.
    Clear,
}

impl Record {
    /// The bytes this record holds, for bounding a backlog.
    pub fn weight(&self) -> usize {
        32 + match self {
            Record::Put { key, value, .. } => key.len() + value.len(),
            Record::Del { key } => key.len(),
            Record::Clear => 0,
        }
    }
}

/// Receives a store's changes. Called with the shard's lock held: keep it short, and never
/// call back into the store.
pub trait Journal: Send + Sync + std::fmt::Debug {
    /// Shard number `shard` made the change `record`.
    fn record(&self, shard: usize, record: Record);
}
