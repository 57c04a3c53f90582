// Hot path: every request of a cluster node passes the gate (one uncontended read lock).

//! A primary's write pause, for a graceful manual failover (see `cluster::manual`).
//!
//! The failover needs the offset `O` of the primary's stream such that every write the
//! primary acknowledged is before `O` and no write is acknowledged after it until the pause
//! ends. Setting a flag is not enough: a write that read the flag just before it was set is
//! still running and would be journaled after `O`, acknowledged, and lost with the old
//! primary. So every request runs while holding the gate's read lock, and [`WritePause::pause`]
//! takes the write lock: it returns only once every request that started before it has
//! finished, and reads `O` while no request can run.
//!
//! A write that finds the node paused is held: its connection waits on [`WritePause::wait`]
//! and runs it again when the pause ends. By then the node has usually been demoted, and the
//! write gets `-MOVED` to the new primary.

use std::future::Future;
use std::sync::{RwLock, RwLockReadGuard};

/// The pause state of one node.
#[derive(Debug)]
pub struct WritePause {
    /// The generation of the pause in force, or `None`. Read-locked by every request while
    /// it runs.
    gate: RwLock<Option<u64>>,
    /// Whether a pause is in force, for those waiting for its end.
    paused: tokio::sync::watch::Sender<bool>,
    /// The last generation handed out.
    generations: std::sync::atomic::AtomicU64,
}

impl Default for WritePause {
    fn default() -> Self {
        WritePause {
            gate: RwLock::new(None),
            paused: tokio::sync::watch::Sender::new(false),
            generations: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// A request's pass through the gate: no pause can start while it is held.
#[derive(Debug)]
pub struct Pass<'a>(RwLockReadGuard<'a, Option<u64>>);

impl Pass<'_> {
    /// Whether writes are paused.
    pub fn paused(&self) -> bool {
        self.0.is_some()
    }
}

impl WritePause {
    /// Enters the gate: hold the pass while the request runs.
    pub fn enter(&self) -> Pass<'_> {
        Pass(self.gate.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Pauses writes once no request is running, and returns the pause's generation with what
    /// `at_pause` read at that moment (the stream offset). A pause already in force is
    /// replaced (a new generation).
    pub fn pause<T>(&self, at_pause: impl FnOnce() -> T) -> (u64, T) {
        let mut gate = self.gate.write().unwrap_or_else(|e| e.into_inner());
        let generation = 1 + self
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *gate = Some(generation);
        self.paused.send_replace(true);
        let read = at_pause();
        (generation, read)
    }

    /// Ends the pause (only the pause of generation `generation`, when given); returns
    /// whether one ended.
    pub fn resume(&self, generation: Option<u64>) -> bool {
        let mut gate = self.gate.write().unwrap_or_else(|e| e.into_inner());
        match (*gate, generation) {
            (None, _) => false,
            (Some(current), Some(g)) if current != g => false,
            _ => {
                *gate = None;
                self.paused.send_replace(false);
                true
            }
        }
    }

    /// The generation of the pause in force.
    pub fn current(&self) -> Option<u64> {
        *self.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves once no pause is in force.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.paused.subscribe();
        async move {
            let _ = rx.wait_for(|paused| !paused).await;
        }
    }
}

/// Whether the RESP command `name` changes data (held during a pause).
pub fn resp_writes(name: &[u8]) -> bool {
    command::lookup(name).is_some_and(|i| command::COMMANDS[i].flags.contains(&"write"))
}

/// Whether a memcached request may change data (held during a pause): everything but a
/// plain `get`/`gets` and the requests that touch no key. `mg` is counted as a write, since
/// its flags can touch or mark the item.
pub fn memcache_writes(request: &memcache::Request) -> bool {
    use memcache::Request as R;
    match request {
        R::Get { touch_exptime, .. } => touch_exptime.is_some(),
        R::Version | R::Verbosity { .. } | R::Stats { .. } | R::Quit | R::MetaNoop => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_pause_waits_for_the_request_in_flight_and_reads_the_offset_after_it() {
        let pause = Arc::new(WritePause::default());
        let offset = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let pass = pause.enter();
        assert!(!pass.paused());
        let pauser = {
            let (pause, offset) = (pause.clone(), offset.clone());
            std::thread::spawn(move || {
                pause.pause(|| offset.load(std::sync::atomic::Ordering::SeqCst))
            })
        };
        // The write in flight finishes (journals offset 1) after the pause was asked for.
        std::thread::sleep(Duration::from_millis(50));
        offset.store(1, std::sync::atomic::Ordering::SeqCst);
        drop(pass);
        let (generation, read) = pauser.join().expect("pauser");
        assert_eq!(
            read, 1,
            "the pause's offset covers the write that was running"
        );
        assert!(pause.enter().paused());
        assert_eq!(pause.current(), Some(generation));
    }

    #[test]
    fn resume_ends_only_the_pause_it_names_and_wakes_the_held() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let pause = WritePause::default();
            let (old, ()) = pause.pause(|| ());
            let (new, ()) = pause.pause(|| ());
            let held = tokio::spawn(pause.wait());
            assert!(
                !pause.resume(Some(old)),
                "a stale timer can't end a newer pause"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(!held.is_finished());
            assert!(pause.resume(Some(new)));
            tokio::time::timeout(Duration::from_secs(1), held)
                .await
                .expect("woken")
                .expect("task");
            assert!(!pause.enter().paused());
            assert!(!pause.resume(None));
            // Waiting when nothing is paused returns at once.
            pause.wait().await;
        });
    }

    #[test]
    fn writes_are_told_from_reads() {
        assert!(resp_writes(b"SET"));
        assert!(resp_writes(b"flushall"));
        assert!(resp_writes(b"del"));
        assert!(!resp_writes(b"GET"));
        assert!(!resp_writes(b"CLUSTER"));
        assert!(!resp_writes(b"NOSUCH"));
        let get = |touch_exptime| memcache::Request::Get {
            keys: vec![Bytes::from_static(b"k")],
            with_cas: false,
            touch_exptime,
        };
        assert!(!memcache_writes(&get(None)));
        assert!(memcache_writes(&get(Some(10))));
        assert!(!memcache_writes(&memcache::Request::Version));
    }
}
