// Hot path: every request's operation, key and value size are drawn here.

//! What each request does: the operation mix, the key it touches and the value it writes.
//!
//! Keys are `key:<n>` with `n` zero-padded to 12 digits (`key:%012d`), so every key has the
//! same length (16 bytes) and a run's bytes per request depend only on the value sizes. The
//! key index comes from a uniform or a Zipf distribution over `0..keys`; under Zipf, index 0
//! is the most popular key (rank 1), index 1 the next, and so on. Values are slices of one
//! shared buffer of deterministic filler bytes, so no request allocates.
//!
//! Each connection has its own generator seeded from the run's seed and its index, so a run
//! with the same flags sends the same requests on each connection.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde::Serialize;

/// Length of every key: `key:` and 12 digits.
pub const KEY_LEN: usize = 16;
/// Number of keys the 12-digit format can name.
pub const MAX_KEYS: u64 = 1_000_000_000_000;
/// Largest value size accepted.
pub const MAX_VALUE_SIZE: usize = 64 << 20;

/// Returns the key with index `index`: `key:` followed by `index` zero-padded to 12 digits.
/// Indexes of 10^12 and above keep their last 12 digits (the configuration never allows them).
pub fn format_key(index: u64) -> [u8; KEY_LEN] {
    let mut key = *b"key:000000000000";
    let mut n = index;
    for slot in key[4..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    key
}

/// A request's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Read a key.
    Get,
    /// Write a value under a key.
    Set,
}

/// One request to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// GET or SET.
    pub kind: OpKind,
    /// Index of the key (see [`format_key`]).
    pub key: u64,
    /// Length of the value, for a SET.
    pub value_len: usize,
}

/// How key indexes are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDistribution {
    /// Every key equally likely.
    Uniform,
    /// Key of rank `k` (index `k - 1`) drawn with probability proportional to `1 / k^s`.
    Zipf {
        /// The exponent; 0.99 is the usual "realistic cache" skew.
        s: f64,
    },
}

/// Name of a key distribution, as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DistributionName {
    /// Every key equally likely.
    Uniform,
    /// Skewed: a few keys take most requests (see `--zipf-s`).
    Zipf,
}

/// Draws key indexes in `0..keys`.
#[derive(Debug, Clone)]
pub struct KeyGen {
    keys: u64,
    zipf: Option<Zipf<f64>>,
}

impl KeyGen {
    /// Returns a generator over `0..keys`, or `None` if `keys` is 0 or the Zipf exponent is
    /// negative or not finite.
    pub fn new(keys: u64, distribution: KeyDistribution) -> Option<KeyGen> {
        if keys == 0 {
            return None;
        }
        let zipf = match distribution {
            KeyDistribution::Uniform => None,
            KeyDistribution::Zipf { s } if s.is_finite() => Some(Zipf::new(keys, s).ok()?),
            KeyDistribution::Zipf { .. } => return None,
        };
        Some(KeyGen { keys, zipf })
    }

    /// Returns the next key index.
    pub fn next(&self, rng: &mut SmallRng) -> u64 {
        match &self.zipf {
            None => rng.gen_range(0..self.keys),
            // Zipf draws ranks 1..=n as floats; rounding for huge n can touch the edge.
            Some(zipf) => (zipf.sample(rng) as u64).clamp(1, self.keys) - 1,
        }
    }
}

/// Value sizes: one size (`100`) or a range drawn uniformly (`64-1024`, both ends included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueSize {
    /// Smallest size in bytes.
    pub min: usize,
    /// Largest size in bytes.
    pub max: usize,
}

impl ValueSize {
    /// Returns the next value size.
    pub fn sample(&self, rng: &mut SmallRng) -> usize {
        if self.min == self.max {
            self.min
        } else {
            rng.gen_range(self.min..=self.max)
        }
    }
}

impl FromStr for ValueSize {
    type Err = String;

    fn from_str(text: &str) -> Result<ValueSize, String> {
        let number = |part: &str| {
            part.trim()
                .parse::<usize>()
                .map_err(|_| format!("invalid value size {text:?} (use e.g. 100 or 64-1024)"))
        };
        let (min, max) = match text.split_once('-') {
            Some((low, high)) => (number(low)?, number(high)?),
            None => (number(text)?, number(text)?),
        };
        if min > max {
            return Err(format!("value size range {text:?} is reversed"));
        }
        if max > MAX_VALUE_SIZE {
            return Err(format!(
                "value size {max} exceeds the limit of {MAX_VALUE_SIZE} bytes"
            ));
        }
        Ok(ValueSize { min, max })
    }
}

impl fmt::Display for ValueSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// The GET:SET mix, e.g. `9:1`; `1:0` is read-only, `0:1` write-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    /// GET weight.
    pub get: u32,
    /// SET weight.
    pub set: u32,
}

impl Ratio {
    /// Returns the next operation.
    pub fn sample(&self, rng: &mut SmallRng) -> OpKind {
        if self.set == 0 {
            OpKind::Get
        } else if self.get == 0 {
            OpKind::Set
        } else if rng.gen_range(0..self.get + self.set) < self.get {
            OpKind::Get
        } else {
            OpKind::Set
        }
    }
}

impl FromStr for Ratio {
    type Err = String;

    fn from_str(text: &str) -> Result<Ratio, String> {
        let invalid = || format!("invalid ratio {text:?} (use GET:SET, e.g. 9:1, 1:0, 0:1)");
        let (get, set) = text.split_once(':').ok_or_else(invalid)?;
        let get: u32 = get.trim().parse().map_err(|_| invalid())?;
        let set: u32 = set.trim().parse().map_err(|_| invalid())?;
        if get == 0 && set == 0 {
            return Err(format!("ratio {text:?} sends nothing"));
        }
        if u64::from(get) + u64::from(set) > u64::from(u32::MAX) {
            return Err(invalid());
        }
        Ok(Ratio { get, set })
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.get, self.set)
    }
}

/// Returns `len` deterministic filler bytes: the printable ASCII alphabet, repeated.
pub fn filler(len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    ALPHABET.iter().copied().cycle().take(len).collect()
}

/// One connection's request generator.
#[derive(Debug, Clone)]
pub struct Workload {
    keys: KeyGen,
    values: ValueSize,
    ratio: Ratio,
    filler: Arc<[u8]>,
    rng: SmallRng,
}

impl Workload {
    /// Returns a generator drawing from `keys`, `values` and `ratio` with its own random
    /// stream `seed`; `filler` must hold at least `values.max` bytes.
    pub fn new(
        keys: KeyGen,
        values: ValueSize,
        ratio: Ratio,
        filler: Arc<[u8]>,
        seed: u64,
    ) -> Workload {
        debug_assert!(filler.len() >= values.max);
        Workload {
            keys,
            values,
            ratio,
            filler,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// Returns the next request.
    pub fn next_op(&mut self) -> Op {
        let kind = self.ratio.sample(&mut self.rng);
        let key = self.keys.next(&mut self.rng);
        let value_len = match kind {
            OpKind::Get => 0,
            OpKind::Set => self.values.sample(&mut self.rng),
        };
        Op {
            kind,
            key,
            value_len,
        }
    }

    /// Returns a SET of key `key` with a size drawn from the value sizes (for the prefill).
    pub fn set_op(&mut self, key: u64) -> Op {
        Op {
            kind: OpKind::Set,
            key,
            value_len: self.values.sample(&mut self.rng),
        }
    }

    /// Returns the value bytes for a SET of `len` bytes.
    ///
    /// # Panics
    ///
    /// If `len` exceeds the filler, i.e. the largest value size given to [`Workload::new`].
    pub fn value(&self, len: usize) -> &[u8] {
        &self.filler[..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> SmallRng {
        SmallRng::seed_from_u64(7)
    }

    #[test]
    fn keys_are_zero_padded_to_a_fixed_width() {
        assert_eq!(&format_key(0), b"key:000000000000");
        assert_eq!(&format_key(42), b"key:000000000042");
        assert_eq!(&format_key(MAX_KEYS - 1), b"key:999999999999");
    }

    #[test]
    fn uniform_keys_stay_in_range_and_cover_it() {
        let keys = KeyGen::new(10, KeyDistribution::Uniform).expect("valid");
        let mut rng = rng();
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let k = keys.next(&mut rng);
            assert!(k < 10);
            seen[k as usize] += 1;
        }
        // Each key expects 1000 draws; a fair generator stays well inside 800..1200.
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn zipf_keys_stay_in_range_and_favour_low_indexes() {
        let keys = KeyGen::new(1000, KeyDistribution::Zipf { s: 0.99 }).expect("valid");
        let mut rng = rng();
        let mut seen = vec![0u32; 1000];
        let draws = 100_000;
        for _ in 0..draws {
            let k = keys.next(&mut rng);
            assert!(k < 1000);
            seen[k as usize] += 1;
        }
        // With s = 0.99 over 1000 keys, rank 1 takes ~13% of draws and the top 10 keys ~39%;
        // the bottom half of the keys takes under 10%.
        let top = seen[0] as f64 / draws as f64;
        assert!((0.10..0.17).contains(&top), "rank 1 share {top}");
        let top10: u32 = seen[..10].iter().sum();
        assert!(top10 as f64 / draws as f64 > 0.3, "top 10 share {top10}");
        let bottom_half: u32 = seen[500..].iter().sum();
        assert!((bottom_half as f64 / draws as f64) < 0.1);
        assert!(seen[0] > seen[1] && seen[1] > seen[9] && seen[9] > seen[999]);
    }

    #[test]
    fn zipf_over_one_key_always_picks_it() {
        let keys = KeyGen::new(1, KeyDistribution::Zipf { s: 1.2 }).expect("valid");
        let mut rng = rng();
        assert!((0..100).all(|_| keys.next(&mut rng) == 0));
    }

    #[test]
    fn bad_key_spaces_are_refused() {
        assert!(KeyGen::new(0, KeyDistribution::Uniform).is_none());
        assert!(KeyGen::new(10, KeyDistribution::Zipf { s: -1.0 }).is_none());
        assert!(KeyGen::new(10, KeyDistribution::Zipf { s: f64::NAN }).is_none());
    }

    #[test]
    fn value_sizes_parse_as_one_size_or_a_range() {
        assert_eq!("100".parse(), Ok(ValueSize { min: 100, max: 100 }));
        assert_eq!("64-1024".parse(), Ok(ValueSize { min: 64, max: 1024 }));
        assert_eq!("0".parse(), Ok(ValueSize { min: 0, max: 0 }));
        assert!("1024-64".parse::<ValueSize>().is_err());
        assert!("abc".parse::<ValueSize>().is_err());
        assert!("-5".parse::<ValueSize>().is_err());
        assert!("1-2-3".parse::<ValueSize>().is_err());
        assert!("1000000000".parse::<ValueSize>().is_err());
        assert_eq!(ValueSize { min: 64, max: 1024 }.to_string(), "64-1024");
    }

    #[test]
    fn value_sizes_are_drawn_within_the_range_including_both_ends() {
        let sizes = ValueSize { min: 64, max: 67 };
        let mut rng = rng();
        let mut seen = [false; 4];
        for _ in 0..1000 {
            let n = sizes.sample(&mut rng);
            assert!((64..=67).contains(&n));
            seen[n - 64] = true;
        }
        assert_eq!(seen, [true; 4]);
        assert_eq!(ValueSize { min: 9, max: 9 }.sample(&mut rng), 9);
    }

    #[test]
    fn ratios_parse_as_get_colon_set() {
        assert_eq!("9:1".parse(), Ok(Ratio { get: 9, set: 1 }));
        assert_eq!("1:0".parse(), Ok(Ratio { get: 1, set: 0 }));
        assert_eq!("0:1".parse(), Ok(Ratio { get: 0, set: 1 }));
        for bad in [
            "0:0",
            "9",
            "9:",
            ":1",
            "a:b",
            "-1:2",
            "1:2:3",
            "4294967295:1",
        ] {
            assert!(bad.parse::<Ratio>().is_err(), "{bad}");
        }
        assert_eq!(Ratio { get: 9, set: 1 }.to_string(), "9:1");
    }

    #[test]
    fn ratios_give_the_asked_mix() {
        let mut rng = rng();
        let mix: Ratio = "9:1".parse().expect("valid");
        let gets = (0..10_000)
            .filter(|_| mix.sample(&mut rng) == OpKind::Get)
            .count();
        assert!((8_700..9_300).contains(&gets), "{gets}");
        let reads: Ratio = "1:0".parse().expect("valid");
        assert!((0..100).all(|_| reads.sample(&mut rng) == OpKind::Get));
        let writes: Ratio = "0:1".parse().expect("valid");
        assert!((0..100).all(|_| writes.sample(&mut rng) == OpKind::Set));
    }

    #[test]
    fn workloads_are_deterministic_per_seed() {
        let make = |seed| {
            let sizes = ValueSize { min: 1, max: 8 };
            let keys = KeyGen::new(100, KeyDistribution::Uniform).expect("valid");
            Workload::new(
                keys,
                sizes,
                Ratio { get: 1, set: 1 },
                filler(8).into(),
                seed,
            )
        };
        let (mut a, mut b, mut c) = (make(1), make(1), make(2));
        let ops_a: Vec<Op> = (0..50).map(|_| a.next_op()).collect();
        let ops_b: Vec<Op> = (0..50).map(|_| b.next_op()).collect();
        let ops_c: Vec<Op> = (0..50).map(|_| c.next_op()).collect();
        assert_eq!(ops_a, ops_b);
        assert_ne!(ops_a, ops_c);
        assert!(ops_a
            .iter()
            .all(|op| op.kind == OpKind::Get || (1..=8).contains(&op.value_len)));
        assert_eq!(a.value(5), b"abcde");
    }
}
