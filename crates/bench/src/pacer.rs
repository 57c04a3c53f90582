//! The open-loop schedule and the pacer thread that wakes each connection when its next
//! request is due.
//!
//! Schedule: with a total rate of R requests per second over C connections, request j of the
//! run is due at `origin + j / R` and belongs to connection `j mod C`; so connection i's k-th
//! request is request `k * C + i`. The connections interleave evenly, and both the pacer and
//! the connections compute due times with the one function [`Schedule::due`], so they agree
//! to the nanosecond on when a request is due.
//!
//! Why a thread: tokio's timers tick in whole milliseconds. A connection sleeping on one until
//! its next request was due woke up 0-1 ms late, and since open-loop latency counts from the
//! due time, that lag (about 0.8 ms at the median) swamped a cache's 30-50 us round trips. A
//! plain thread sleeping in `thread::sleep` wakes within the kernel's timer slack (~50 us),
//! and wakes the connection through a [`Notify`] permit (so a wake is never lost, and
//! several due requests cost one wake). The thread only sleeps and notifies; it sends
//! nothing.
//!
//! Aiming early: the pacer wakes [`EARLY`] before each due time, and a connection sends
//! every request due within [`EARLY`] of now, so the usual wake-up lateness (timer slack,
//! waking the runtime's worker) is absorbed instead of added to every latency. On a busy
//! 2-core VM, median open-loop latency at a light 5,000 requests/s went from ~850 us (tokio
//! timers) to ~150 us (pacer) to ~60-90 us (pacer aiming early), against ~35-50 us for
//! the same requests closed-loop. A request sent before it was due is timed from when it
//! was actually sent, one sent late from when it was due: latency always starts at
//! `min(due, sent)`, never later than the user would have started waiting.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How far ahead of its due time a request may be sent: the usual lateness of a wake-up
/// (the kernel's 50 us default timer slack on `thread::sleep`, plus waking the runtime's
/// worker thread). Sending this much early does not change the offered rate.
pub const EARLY: Duration = Duration::from_micros(100);
/// Longest single sleep of the pacer, so it notices [`Pacer`]'s drop promptly at low rates.
const MAX_SLEEP: Duration = Duration::from_millis(5);

/// When each request of an open-loop run is due.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    origin: Instant,
    interval_ns: f64,
    connections: u64,
}

impl Schedule {
    /// Returns the schedule of `rate` requests per second (all connections together, at
    /// least 1) from `origin`, spread over `connections` connections (at least 1).
    pub fn new(origin: Instant, rate: u64, connections: usize) -> Schedule {
        Schedule {
            origin,
            interval_ns: 1e9 / rate.max(1) as f64,
            connections: connections.max(1) as u64,
        }
    }

    /// Returns true if a request due `at` should be sent `now` (see [`EARLY`]).
    pub fn is_due(at: Instant, now: Instant) -> bool {
        at <= now + EARLY
    }

    /// Returns when request `k` of connection `conn` is due.
    pub fn due(&self, conn: usize, k: u64) -> Instant {
        self.due_global(k * self.connections + conn as u64)
    }

    /// Returns when request `j` of the run (all connections) is due. Computed from `j` each
    /// time, not by adding intervals, so rounding never drifts.
    fn due_global(&self, j: u64) -> Instant {
        self.origin + Duration::from_nanos((j as f64 * self.interval_ns) as u64)
    }
}

/// The pacer thread; stops when dropped.
#[derive(Debug)]
pub struct Pacer {
    wakers: Vec<Arc<Notify>>,
    stop: Arc<AtomicBool>,
}

impl Pacer {
    /// Starts the pacer thread for `schedule`.
    pub fn start(schedule: Schedule) -> std::io::Result<Pacer> {
        let wakers: Vec<Arc<Notify>> = (0..schedule.connections)
            .map(|_| Arc::new(Notify::new()))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_wakers, thread_stop) = (wakers.clone(), stop.clone());
        thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || pace(schedule, &thread_wakers, &thread_stop))?;
        Ok(Pacer { wakers, stop })
    }

    /// Returns what connection `conn` waits on for its next due request.
    ///
    /// # Panics
    ///
    /// If `conn` is not below the schedule's connection count.
    pub fn waker(&self, conn: usize) -> Arc<Notify> {
        self.wakers[conn].clone()
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        // The thread sees this within MAX_SLEEP and exits; nothing waits for it.
        self.stop.store(true, Relaxed);
    }
}

/// The pacer loop: sleep until [`EARLY`] before the next request is due, then wake the
/// connections of every request due within [`EARLY`] (each connection once per pass).
///
/// Passes are at least [`EARLY`] apart: at high rates one pass serves every request due in
/// the next [`EARLY`], so the thread wakes at most 10,000 times a second whatever the rate,
/// and a request is still never notified after its due time (the pass before it came no
/// more than [`EARLY`] earlier).
fn pace(schedule: Schedule, wakers: &[Arc<Notify>], stop: &AtomicBool) {
    let count = wakers.len() as u64;
    let mut next = 0u64;
    let mut last_pass: Option<Instant> = None;
    while !stop.load(Relaxed) {
        let now = Instant::now();
        let due = schedule.due_global(next);
        let mut pass_at = due.checked_sub(EARLY).unwrap_or(due);
        if let Some(last) = last_pass {
            pass_at = pass_at.max(last + EARLY);
        }
        if pass_at > now {
            thread::sleep((pass_at - now).min(MAX_SLEEP));
            continue;
        }
        last_pass = Some(now);
        let mut woken = 0;
        while Schedule::is_due(schedule.due_global(next), now) {
            if woken < count {
                wakers[(next % count) as usize].notify_one();
                woken += 1;
            }
            next += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_interleave_evenly() {
        let origin = Instant::now();
        let schedule = Schedule::new(origin, 1000, 4);
        let ms = |n: u64| origin + Duration::from_millis(n);
        assert_eq!(schedule.due(0, 0), ms(0));
        assert_eq!(schedule.due(1, 0), ms(1));
        assert_eq!(schedule.due(3, 0), ms(3));
        assert_eq!(schedule.due(0, 1), ms(4));
        assert_eq!(schedule.due(2, 250), ms(1002));
    }

    #[test]
    fn the_pacer_wakes_each_connection_when_due() {
        let schedule = Schedule::new(Instant::now(), 2000, 2);
        let pacer = Pacer::start(schedule).expect("thread starts");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            for conn in 0..2 {
                let waker = pacer.waker(conn);
                for _ in 0..5 {
                    tokio::time::timeout(Duration::from_secs(1), waker.notified())
                        .await
                        .expect("woken");
                }
            }
        });
    }
}
