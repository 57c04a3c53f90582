//! The history of a workload, and the checks run over it afterwards.
//!
//! Every operation is recorded with its start and end (microseconds from the run's start),
//! the client, the key and the value written or read. Every written value is unique in a run
//! (the client's number in the high bits, a counter below), so a value read back names the
//! write that produced it. Keys are registers: no deletes, no TTLs, no eviction in these runs.
//!
//! Write `a` *precedes* write `b` when `a` ended before `b` started. With that order:
//! - an **acknowledged write is lost** when the key's final value comes from a write that
//!   precedes it (or the key is missing);
//! - a **read is stale** when it returns a value whose write precedes a write that was
//!   acknowledged before the read started;
//! - a **phantom** is a value from a write that was refused with an error (it must not exist).
//!
//! A write that ran out of its retry budget (a timeout, a connection reset) may or may not have
//! happened: it never ends, so it precedes nothing and any value of it is acceptable.

use std::collections::HashMap;
use std::net::SocketAddr;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Acknowledged (a write) or answered (a read).
    Ok,
    /// Refused with an error reply: a write that did not happen.
    Refused,
    /// No answer within the budget: a write that may or may not have happened.
    Unknown,
}

/// One operation.
#[derive(Debug, Clone)]
pub struct Op {
    /// The client that issued it.
    pub client: u32,
    /// The key, as an index into the run's key list.
    pub key: u32,
    /// Whether it was a write.
    pub write: bool,
    /// The value written, or read (`None`: the key was missing).
    pub value: Option<u64>,
    /// Microseconds from the run's start.
    pub start_us: u64,
    /// Microseconds from the run's start.
    pub end_us: u64,
    /// How it ended.
    pub status: Status,
    /// The node that answered.
    pub node: Option<SocketAddr>,
}

/// A value unique to one write: the client in the high bits, its counter below.
pub fn value_of(client: u32, seq: u64) -> u64 {
    (u64::from(client) << 40) | (seq & ((1 << 40) - 1))
}

/// One acknowledged write that the final state does not hold.
#[derive(Debug, Clone)]
pub struct Lost {
    /// The key.
    pub key: u32,
    /// When the lost write was acknowledged (µs from the run's start).
    pub acked_us: u64,
    /// The node that acknowledged it.
    pub node: Option<SocketAddr>,
}

/// What the checker found.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Acknowledged writes lost.
    pub lost: Vec<Lost>,
    /// Keys holding a value that no write of this run produced, or that a refused write
    /// produced.
    pub phantoms: Vec<u32>,
    /// Reads that returned an overwritten value.
    pub stale_reads: u64,
    /// Acknowledged writes in all.
    pub acked_writes: u64,
}

/// Checks a history against the final value of every key (`None`: missing).
pub fn check(ops: &[Op], finals: &HashMap<u32, Option<u64>>) -> Verdict {
    let mut verdict = Verdict::default();
    let mut by_key: HashMap<u32, Vec<&Op>> = HashMap::new();
    for op in ops {
        by_key.entry(op.key).or_default().push(op);
    }
    for (key, ops) in &by_key {
        let writes: HashMap<u64, &Op> = ops
            .iter()
            .filter(|o| o.write)
            .filter_map(|o| o.value.map(|v| (v, *o)))
            .collect();
        let acked: Vec<&&Op> = ops
            .iter()
            .filter(|o| o.write && o.status == Status::Ok)
            .collect();
        verdict.acked_writes += acked.len() as u64;
        // When the write behind a value ended: never, for one that may still land.
        // A missing key "ended" before everything (-1).
        let ended = |value: Option<u64>| -> Option<i64> {
            let Some(value) = value else {
                return Some(-1);
            };
            let w = writes.get(&value)?;
            (w.status != Status::Unknown).then_some(w.end_us as i64)
        };
        // Reads.
        for r in ops.iter().filter(|o| !o.write && o.status == Status::Ok) {
            let known = r.value.is_none_or(|v| writes.contains_key(&v));
            if !known {
                continue;
            }
            let Some(source_end) = ended(r.value) else {
                continue;
            };
            if acked
                .iter()
                .any(|w| w.end_us < r.start_us && source_end < w.start_us as i64)
            {
                verdict.stale_reads += 1;
            }
        }
        // The final value.
        let Some(&last) = finals.get(key) else {
            continue;
        };
        if let Some(v) = last {
            match writes.get(&v) {
                None => {
                    verdict.phantoms.push(*key);
                    continue;
                }
                Some(w) if w.status == Status::Refused => {
                    verdict.phantoms.push(*key);
                    continue;
                }
                _ => {}
            }
        }
        if let Some(source_end) = ended(last) {
            for w in acked.iter().filter(|w| source_end < w.start_us as i64) {
                verdict.lost.push(Lost {
                    key: *key,
                    acked_us: w.end_us,
                    node: w.node,
                });
            }
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(key: u32, write: bool, value: Option<u64>, span: (u64, u64), status: Status) -> Op {
        Op {
            client: 0,
            key,
            write,
            value,
            start_us: span.0,
            end_us: span.1,
            status,
            node: None,
        }
    }

    #[test]
    fn a_final_value_older_than_an_acknowledged_write_counts_it_lost() {
        let ops = vec![
            op(1, true, Some(1), (0, 10), Status::Ok),
            op(1, true, Some(2), (20, 30), Status::Ok),
        ];
        let v = check(&ops, &HashMap::from([(1, Some(1))]));
        assert_eq!(v.lost.len(), 1);
        assert_eq!(v.lost[0].acked_us, 30);
        assert!(check(&ops, &HashMap::from([(1, Some(2))])).lost.is_empty());
        assert_eq!(check(&ops, &HashMap::from([(1, None)])).lost.len(), 2);
    }

    #[test]
    fn concurrent_and_unknown_writes_may_win() {
        let ops = vec![
            op(1, true, Some(1), (0, 25), Status::Ok),
            op(1, true, Some(2), (20, 30), Status::Ok),
            op(1, true, Some(3), (40, 50), Status::Unknown),
        ];
        assert!(check(&ops, &HashMap::from([(1, Some(1))])).lost.is_empty());
        assert!(check(&ops, &HashMap::from([(1, Some(3))])).lost.is_empty());
    }

    #[test]
    fn a_refused_or_unknown_value_is_a_phantom() {
        let ops = vec![op(1, true, Some(1), (0, 10), Status::Refused)];
        assert_eq!(
            check(&ops, &HashMap::from([(1, Some(1))])).phantoms,
            vec![1]
        );
        assert_eq!(
            check(&ops, &HashMap::from([(1, Some(9))])).phantoms,
            vec![1]
        );
    }

    #[test]
    fn a_read_of_an_overwritten_value_is_stale() {
        let ops = vec![
            op(1, true, Some(1), (0, 10), Status::Ok),
            op(1, true, Some(2), (20, 30), Status::Ok),
            op(1, false, Some(1), (40, 45), Status::Ok),
            op(1, false, Some(1), (25, 45), Status::Ok),
            op(1, false, Some(2), (40, 45), Status::Ok),
        ];
        assert_eq!(check(&ops, &HashMap::new()).stale_reads, 1);
    }
}
