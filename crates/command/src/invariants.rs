//! Properties every command must keep whatever its arguments, shared by the fuzz target
//! (`fuzz/`, `execute`) and the property test below, so both check the same thing:
//!
//! - dispatch never panics and answers exactly one reply, which encodes in RESP2 and RESP3;
//! - a refused command (an error reply) leaves the store exactly as it was: every key, value,
//!   expiry and flag;
//! - the forwarding port's plan is sound: a command that passes [`check_args`] and is split per
//!   key ([`split_per_key`]) becomes single-key commands that pass it too and name exactly the
//!   command's keys, in order; a command refused by [`check_args`] is never split.

use std::sync::atomic::AtomicUsize;

use bytes::{Bytes, BytesMut};
use resp::Protocol;
use store::{Store, StoreConfig};

use crate::cluster::{key_positions, split_per_key};
use crate::node::{ClientInfo, Node, NodeIdentity, NodeSettings, Session};
use crate::table::{check_args, execute, lookup, COMMANDS};

/// Keys the node starts with: `k0`..`k3` (one-byte arguments 0..3 name them, 4..7 name keys
/// that are missing), so commands meet both present and missing keys.
const PRESENT: [(&[u8], &[u8]); 4] = [
    (b"k0", b"hello"),
    (b"k1", b"42"),
    (b"k2", b""),
    (b"k3", b"3.5"),
];

/// A node with a small store holding the keys `k0`..`k3`.
pub fn node() -> Node {
    let store = Store::new(StoreConfig {
        shards: 2,
        ..StoreConfig::default()
    });
    let settings = NodeSettings {
        max_clients: AtomicUsize::new(100),
        idle_timeout_secs: Default::default(),
        proto_max_bulk_len: AtomicUsize::new(1 << 20),
        max_request_bytes: AtomicUsize::new(1 << 20),
        client_output_limit_bytes: AtomicUsize::new(1 << 20),
        max_client_memory_bytes: AtomicUsize::new(0),
    };
    let node = Node::new(store, settings, NodeIdentity::default());
    for (key, value) in PRESENT {
        let now = node.clock.unix_ms();
        let item = store::NewItem::new(Bytes::from_static(value));
        node.store
            .set(key, item, now)
            .expect("a small store takes four keys");
    }
    node
}

/// Decodes fuzz input into a command: the first byte picks the command from the table, the
/// rest splits at zero bytes into at most 12 arguments; a one-byte argument below 8 names a
/// key (`k0`..`k7`).
pub fn args_from(data: &[u8]) -> Vec<Bytes> {
    let Some((&pick, rest)) = data.split_first() else {
        return vec![Bytes::from_static(b"PING")];
    };
    let name = COMMANDS[usize::from(pick) % COMMANDS.len()].name;
    let mut args = vec![Bytes::from(name.to_ascii_uppercase())];
    if !rest.is_empty() {
        args.extend(rest.split(|&b| b == 0).take(12).map(|a| match a {
            [b] if *b < 8 => Bytes::from(format!("k{b}")),
            _ => Bytes::copy_from_slice(a),
        }));
    }
    args
}

/// Every key of the store with its value, expiry and flags, in key order.
fn contents(node: &Node) -> Vec<(Bytes, store::Item)> {
    let now = node.clock.unix_ms();
    let mut keys = Vec::new();
    let mut cursor = 0;
    loop {
        cursor = node.store.scan(cursor, now, |k| {
            keys.push(Bytes::copy_from_slice(k));
            true
        });
        if cursor == 0 {
            break;
        }
    }
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let mut item = node.store.peek(&k, now)?;
            // The CAS version is internal bookkeeping, not content.
            item.cas = 0;
            Some((k, item))
        })
        .collect()
}

/// Checks the properties above for the command `data` decodes to, on a fresh [`node`].
///
/// # Panics
///
/// When a property does not hold (that is the point).
pub fn check(data: &[u8]) {
    let args = args_from(data);
    check_plan(&args);
    let node = node();
    let before = contents(&node);
    let info = std::sync::Arc::new(ClientInfo::new(
        1,
        ([127, 0, 0, 1], 1).into(),
        ([127, 0, 0, 1], 2).into(),
    ));
    let mut session = Session::new(info);
    let reply = execute(&node, &mut session, &args);
    for protocol in [Protocol::Resp2, Protocol::Resp3] {
        let mut out = BytesMut::new();
        reply.encode(protocol, &mut out);
        assert!(out.ends_with(b"\r\n"), "{args:?}: a reply ends with CRLF");
    }
    if reply.is_error() {
        assert_eq!(
            contents(&node),
            before,
            "{args:?} was refused ({reply:?}) but changed the store"
        );
    }
}

/// The forwarding port's validation and split of `args`.
fn check_plan(args: &[Bytes]) {
    let Some(spec) = lookup(&args[0]).map(|i| &COMMANDS[i]) else {
        return;
    };
    if check_args(spec, args.len()).is_err() {
        return;
    }
    let Some(parts) = split_per_key(spec, args) else {
        return;
    };
    let keys: Vec<&Bytes> = key_positions(spec, args.len()).map(|p| &args[p]).collect();
    assert_eq!(parts.len(), keys.len(), "{args:?}: one part per key");
    for (part, key) in parts.iter().zip(keys) {
        let part_spec = lookup(&part[0])
            .map(|i| &COMMANDS[i])
            .expect("a known command");
        assert!(
            check_args(part_spec, part.len()).is_ok(),
            "{args:?}: part {part:?} is malformed"
        );
        assert_eq!(&part[1], key, "{args:?}: part {part:?} names another key");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn every_command_with_a_few_argument_shapes_keeps_the_invariants() {
        let shapes: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x01",
            b"\x05",
            b"\x00\x00x",
            b"\x01\x00\x02\x00\x05",
            b"\x00\x001\x00\x05\x002\x00\x06",
            b"\x02\x00EX\x00notanumber",
        ];
        for pick in 0..COMMANDS.len() as u8 {
            for shape in shapes {
                let mut data = vec![pick];
                data.extend_from_slice(shape);
                check(&data);
            }
        }
    }

    #[test]
    fn a_malformed_mset_is_never_split_issue_13() {
        let mset = &COMMANDS[lookup(b"mset").expect("mset")];
        let args: Vec<Bytes> = ["MSET", "a", "1", "b"].map(Bytes::from).to_vec();
        assert!(check_args(mset, args.len()).is_err());
        let args: Vec<Bytes> = ["MSET", "a", "1", "b", "2"].map(Bytes::from).to_vec();
        let parts = split_per_key(mset, &args).expect("MSET splits");
        assert_eq!(parts.len(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn any_command_keeps_the_invariants(
            pick in any::<u8>(),
            args in prop::collection::vec(
                prop_oneof![
                    (0u8..8).prop_map(|b| vec![b]),
                    prop::sample::select(vec![
                        b"EX".to_vec(), b"PX".to_vec(), b"NX".to_vec(), b"XX".to_vec(),
                        b"GET".to_vec(), b"KEEPTTL".to_vec(), b"-1".to_vec(), b"100".to_vec(),
                    ]),
                    prop::collection::vec(1u8..=255, 0..6),
                ],
                0..8,
            ),
        ) {
            let mut data = vec![pick];
            data.extend(args.join(&0u8));
            check(&data);
        }
    }
}
