//! A team of threads that run one program (SPMD), ordered by a spinning barrier or by step
//! counters one member publishes and others wait for ([`Signal`]), sharing buffers whose parts
//! each phase assigns to one member.
//!
//! Why not `std::sync::Barrier` or a condition variable alone: they sleep on a futex, and
//! waking costs microseconds; a training step of the book's net takes about 70 µs on two
//! threads, so the waits within a step must cost well under a microsecond. Waiters spin first
//! (about [`SPIN_LIMIT`] pauses, some tens of microseconds), then park: on a loaded machine the
//! member waited for may be descheduled, and a waiter that kept spinning would take the core it
//! needs. Parking is a timed wait on a condition variable, woken by the barrier's last arrival
//! and by every publish while someone sleeps; the timeout bounds a missed wake-up.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Pauses a waiter spins before it parks (a multiple of 32: a waiter with work to help with
/// still looks for it, see [`Signal::wait_for`]).
pub const SPIN_LIMIT: u32 = 512;
/// The longest a parked waiter sleeps before it looks again.
const PARK_TIMEOUT: Duration = Duration::from_micros(200);

/// Where parked waiters sleep (one for every team: teams seldom run side by side).
struct Parking {
    lock: Mutex<()>,
    cv: Condvar,
    sleepers: AtomicUsize,
}

/// Parks so far, by every team (a waiter that slept rather than spun): many of them in a team's
/// steps mean a member was kept waiting for one the machine did not run.
static PARKS: AtomicU64 = AtomicU64::new(0);

/// The number of parks so far, by every team: a measure of how much members wait for
/// descheduled ones (see `train_threads`'s solo segments).
pub fn parks() -> u64 {
    PARKS.load(Ordering::Relaxed)
}

static PARKING: Parking = Parking {
    lock: Mutex::new(()),
    cv: Condvar::new(),
    sleepers: AtomicUsize::new(0),
};

/// Wakes the parked waiters, if any (cheap when none: one atomic load).
fn wake() {
    if PARKING.sleepers.load(Ordering::SeqCst) > 0 {
        let _g = PARKING.lock.lock().unwrap_or_else(|p| p.into_inner());
        PARKING.cv.notify_all();
    }
}

/// A reusable barrier for `n` threads that spins instead of sleeping.
pub struct SpinBarrier {
    n: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    poisoned: AtomicBool,
}

impl SpinBarrier {
    /// A barrier for `n ≥ 1` threads.
    pub fn new(n: usize) -> Self {
        SpinBarrier {
            n: n.max(1),
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Marks the team as broken (a member panicked): every waiter panics instead of waiting
    /// forever for it.
    pub fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }

    /// Panics if the team is broken (see [`SpinBarrier::poison`]).
    pub fn check(&self) {
        if self.poisoned.load(Ordering::Acquire) {
            panic!("another thread of the team panicked");
        }
    }

    /// Waits until all `n` threads have called `wait` for this generation. Everything a thread
    /// wrote before its `wait` is visible to every thread after theirs.
    pub fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation
                .store(generation.wrapping_add(1), Ordering::SeqCst);
            wake();
            return;
        }
        let mut spins = 0u32;
        let passed = || self.generation.load(Ordering::Acquire) != generation;
        while !passed() {
            self.check();
            idle(&mut spins, passed);
        }
    }
}

/// One wait of a waiting loop for `done`: a pause, or past [`SPIN_LIMIT`] of them a park
/// until woken (or [`PARK_TIMEOUT`]), so that a loaded machine runs the member waited for.
fn idle(spins: &mut u32, done: impl Fn() -> bool) {
    if *spins < SPIN_LIMIT {
        std::hint::spin_loop();
        *spins += 1;
        return;
    }
    // Counted before `done` is looked at: a waker either sees the count, or its change is seen
    // here (both sequentially consistent), so no wake-up is lost.
    PARKING.sleepers.fetch_add(1, Ordering::SeqCst);
    let g = PARKING.lock.lock().unwrap_or_else(|p| p.into_inner());
    if !done() {
        PARKS.fetch_add(1, Ordering::Relaxed);
        let _ = PARKING.cv.wait_timeout(g, PARK_TIMEOUT);
    }
    PARKING.sleepers.fetch_sub(1, Ordering::SeqCst);
}

/// How far one member has got: a step count it publishes and others wait for. Unlike a
/// barrier it orders only the publisher before the waiter, so the publisher never waits, and
/// the waiter can do other work meanwhile (see [`Signal::wait_for`]).
// Its own cache lines: a member publishing must not disturb the line others spin on.
#[repr(align(128))]
pub struct Signal {
    done: AtomicUsize,
}

impl Signal {
    /// Nothing done yet (count 0).
    pub fn new() -> Self {
        Signal {
            done: AtomicUsize::new(0),
        }
    }

    /// Publishes that `count` steps are done. Everything this thread wrote before is visible to
    /// a thread whose [`Signal::wait_for`] of a count `≤ count` has returned. Counts only grow:
    /// several threads may publish to one signal only if each publish is ordered after the
    /// previous one (as when each publisher has waited for the last count).
    pub fn publish(&self, count: usize) {
        self.done.store(count, Ordering::SeqCst);
        wake();
    }

    /// Waits until `count` steps are published, calling `work` while it waits; `work` returns
    /// `false` when it has nothing to do (then this spins, and asks again every 32 spins).
    /// Panics instead of waiting forever if `team` is poisoned.
    pub fn wait_for(&self, count: usize, team: &SpinBarrier, mut work: impl FnMut() -> bool) {
        let mut spins = 0u32;
        let mut busy = true;
        let ready = || self.done.load(Ordering::Acquire) >= count;
        while !ready() {
            team.check();
            if busy {
                busy = work();
            } else {
                idle(&mut spins, ready);
                // Work may have come up since (another member's, to help with).
                busy = spins.is_multiple_of(32) && work();
            }
        }
    }
}

impl Signal {
    /// [`Signal::wait_for`] with nothing else to do, after spinning for up to [`LONG_SPIN`]:
    /// for a crew's waits, which last longer than a team's (a phase of a step), and whose
    /// thread, once parked, took 1–1.5 ms to run again on this machine (its idle virtual CPU
    /// put to sleep by the host).
    fn wait_long(&self, count: usize, team: &SpinBarrier) {
        let start = std::time::Instant::now();
        let ready = || self.done.load(Ordering::Acquire) >= count;
        let mut spins = 0u32;
        while !ready() {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && start.elapsed() > LONG_SPIN {
                break;
            }
        }
        self.wait_for(count, team, || false);
    }
}

/// How long a crew's waiter spins before it waits as a team's does (and then parks).
const LONG_SPIN: Duration = Duration::from_millis(2);

impl Default for Signal {
    fn default() -> Self {
        Self::new()
    }
}

/// A buffer shared by a team, accessed in phases: within a phase, members only read it, or
/// each writes a part no other member touches; a [`SpinBarrier`] separates the phases, or a
/// [`Signal`] from the member that wrote a part to the members that read it next.
pub struct Shared<T> {
    /// The buffer; only touched again by `into_inner`, after the team is done.
    data: Vec<T>,
    ptr: *mut T,
    len: usize,
}

// SAFETY: access goes through `read`/`part`/`part_mut`, whose callers keep to the phase
// discipline (no part written in a phase is read or written by another member in that phase),
// and a barrier or a signal between phases orders the accesses (release/acquire). Several
// members read at once, so `T: Sync` too.
unsafe impl<T: Send + Sync> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// Wraps a buffer.
    pub fn new(mut data: Vec<T>) -> Self {
        let (ptr, len) = (data.as_mut_ptr(), data.len());
        Shared { data, ptr, len }
    }

    /// The whole buffer, read-only.
    ///
    /// # Safety
    /// No member writes any part of the buffer while the reference lives (until the next
    /// barrier, or until a signal tells the writer that this member is done).
    pub unsafe fn read(&self) -> &[T] {
        // SAFETY: `ptr..ptr+len` is the live buffer (owned by `data`, never reallocated), and
        // per the contract nothing writes it while this reference lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Elements `start..end`, read-only.
    ///
    /// # Safety
    /// No member writes any element of `start..end` while the reference lives.
    pub unsafe fn part(&self, start: usize, end: usize) -> &[T] {
        assert!(
            start <= end && end <= self.len,
            "part {start}..{end} of {}",
            self.len
        );
        // SAFETY: the range is inside the live buffer (asserted), and per the contract
        // nothing writes it while this reference lives.
        unsafe { std::slice::from_raw_parts(self.ptr.add(start), end - start) }
    }

    /// Elements `start..end`, mutably.
    ///
    /// # Safety
    /// While the reference lives, no other member reads or writes any element of
    /// `start..end`, and this member creates no other reference to them.
    // The mutable slice comes from the raw pointer, not from `&self`: that is the point of
    // this type, and the contract above keeps the parts disjoint.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn part_mut(&self, start: usize, end: usize) -> &mut [T] {
        assert!(
            start <= end && end <= self.len,
            "part {start}..{end} of {}",
            self.len
        );
        // SAFETY: the range is inside the live buffer (asserted), exclusive to this member for
        // this phase (contract); built from the raw pointer, so no reference to the whole
        // buffer is made.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), end - start) }
    }

    /// Gives the buffer back once the team is done.
    pub fn into_inner(self) -> Vec<T> {
        self.data
    }
}

/// Poisons a barrier if the thread holding it unwinds (see [`SpinBarrier::poison`]).
pub struct PoisonOnPanic<'a>(pub &'a SpinBarrier);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poison();
        }
    }
}

/// Threads that stay up for a whole run and take jobs borrowing the caller's data, one job
/// each per [`Crew::run`], which returns when all are done: a step's phases handed out
/// without spawning threads for each (a spawn and join cost 0.3–0.7 ms here, a tenth of a
/// SimpleConvNet step). The helpers wait between jobs as a team's members do (spin, then
/// park). Made by [`Crew::start`] inside a `std::thread::scope`; dropping it stops them.
pub struct Crew<'a> {
    slots: &'a [Slot],
    /// Jobs handed to every helper so far.
    runs: usize,
}

/// One helper's mailbox: the job it is to run next, and the counts of jobs handed to it
/// (`go`) and finished by it (`done`). Made by [`Crew::slots`].
pub struct Slot {
    /// The job of the current run (a pointer whose lifetime was erased: see [`Crew::run`]).
    job: std::cell::UnsafeCell<Option<*mut (dyn FnMut() + Send + 'static)>>,
    go: Signal,
    done: Signal,
    stop: AtomicBool,
    panicked: AtomicBool,
    /// Never poisoned: `Signal::wait_for` asks for a team.
    team: SpinBarrier,
}

// SAFETY: `job` is written by the crew's owner before `go` is published and read by the
// helper after it has waited for that count (release/acquire through the signal); the job it
// points to is `Send`, and the owner does not touch it again until the helper's `done`.
unsafe impl Sync for Slot {}

impl<'a> Crew<'a> {
    /// The mailboxes for `helpers` helpers (to outlive the scope the crew runs in).
    pub fn slots(helpers: usize) -> Vec<Slot> {
        (0..helpers)
            .map(|_| Slot {
                job: std::cell::UnsafeCell::new(None),
                go: Signal::new(),
                done: Signal::new(),
                stop: AtomicBool::new(false),
                panicked: AtomicBool::new(false),
                team: SpinBarrier::new(1),
            })
            .collect()
    }

    /// One helper thread per slot, in `scope`. The slots are borrowed exclusively (no other
    /// crew can drive them while this one lives) and start afresh (a crew before may have
    /// used them). The crew must be dropped inside the scope: the scope's end waits for the
    /// helpers, which stop when the crew is dropped.
    pub fn start<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        slots: &'a mut [Slot],
    ) -> Self
    where
        'a: 'scope,
    {
        for slot in slots.iter_mut() {
            *slot.job.get_mut() = None;
            *slot.go.done.get_mut() = 0;
            *slot.done.done.get_mut() = 0;
            *slot.stop.get_mut() = false;
            *slot.panicked.get_mut() = false;
        }
        let slots: &'a [Slot] = slots;
        for slot in slots {
            scope.spawn(move || {
                let mut n = 0;
                loop {
                    n += 1;
                    slot.go.wait_long(n, &slot.team);
                    if slot.stop.load(Ordering::Acquire) {
                        return;
                    }
                    // SAFETY: the owner wrote the job before publishing `go` = n (seen
                    // above) and waits for `done` = n before it writes the slot again or
                    // lets the job's borrows end.
                    if let Some(job) = unsafe { (*slot.job.get()).take() } {
                        // SAFETY: as above: the job is alive and this thread alone calls it.
                        let run = std::panic::AssertUnwindSafe(|| unsafe { (*job)() });
                        if std::panic::catch_unwind(run).is_err() {
                            slot.panicked.store(true, Ordering::Release);
                        }
                    }
                    slot.done.publish(n);
                }
            });
        }
        Crew { slots, runs: 0 }
    }

    /// Runs `jobs[0]` on this thread and `jobs[k]` on helper `k − 1`, and returns when all are
    /// done (also if one panics: then this panics after they are). At most one job more than
    /// there are helpers.
    pub fn run(&mut self, jobs: &mut [&mut (dyn FnMut() + Send)]) {
        let Some((first, rest)) = jobs.split_first_mut() else {
            return;
        };
        assert!(
            rest.len() <= self.slots.len(),
            "more jobs than the crew has threads"
        );
        self.runs += 1;
        let n = self.runs;
        for (slot, job) in self.slots.iter().zip(rest.iter_mut()) {
            let job: *mut (dyn FnMut() + Send + '_) = &mut **job;
            // SAFETY: only the lifetime changes (the same fat pointer); the helper calls the
            // job only before it publishes `done` = n, and `Finish` below waits for that
            // before this function returns or unwinds, so the job outlives every use.
            let job: *mut (dyn FnMut() + Send + 'static) = unsafe { std::mem::transmute(job) };
            // SAFETY: the helper has published `done` = n − 1 (the last run waited for it),
            // so it does not read the slot until `go` = n below.
            unsafe { *slot.job.get() = Some(job) };
        }
        // Helpers without a job this time run nothing but still count the run.
        for slot in self.slots {
            slot.go.publish(n);
        }
        /// Waits for every helper's `done` = n, even while unwinding from `first`.
        struct Finish<'s>(&'s [Slot], usize);
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                for slot in self.0 {
                    slot.done.wait_long(self.1, &slot.team);
                }
            }
        }
        let finish = Finish(self.slots, n);
        first();
        drop(finish);
        if self
            .slots
            .iter()
            .any(|s| s.panicked.load(Ordering::Acquire))
        {
            panic!("a helper thread of the crew panicked");
        }
    }
}

impl Crew<'_> {
    /// [`Crew::run`] for jobs of one type (closures made in one loop).
    pub fn run_all<F: FnMut() + Send>(&mut self, jobs: &mut [F]) {
        let mut refs: Vec<&mut (dyn FnMut() + Send)> = jobs
            .iter_mut()
            .map(|j| j as &mut (dyn FnMut() + Send))
            .collect();
        self.run(&mut refs);
    }
}

impl Drop for Crew<'_> {
    /// Stops the helpers (the scope then joins them).
    fn drop(&mut self) {
        self.runs += 1;
        for slot in self.slots {
            slot.stop.store(true, Ordering::Release);
            slot.go.publish(self.runs);
        }
    }
}

/// `f(scratch, i)` for every `i` in `0..count`, on `threads` threads (the calling one among
/// them), in index order. The items go to whichever thread is free next, so a thread slowed
/// by the machine takes fewer; each thread has its own `scratch`.
pub fn map_shared<S: Default, T: Send>(
    count: usize,
    threads: usize,
    f: impl Fn(&mut S, usize) -> T + Sync,
) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut scratch = S::default();
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= count {
                return done;
            }
            done.push((i, f(&mut scratch, i)));
        }
    };
    let mut all: Vec<(usize, T)> = if threads.clamp(1, count.max(1)) == 1 {
        work()
    } else {
        std::thread::scope(|s| {
            let others: Vec<_> = (1..threads.min(count)).map(|_| s.spawn(work)).collect();
            let mut all = work();
            for h in others {
                all.extend(h.join().expect("a thread of map_shared panicked"));
            }
            all
        })
    };
    all.sort_unstable_by_key(|&(i, _)| i);
    all.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crew_runs_borrowing_jobs_on_its_threads_and_waits_for_them() {
        let mut slots = Crew::slots(2);
        let mut parts = vec![vec![0usize; 1000]; 3];
        std::thread::scope(|s| {
            let mut crew = Crew::start(s, &mut slots);
            for step in 1..=200 {
                let threads: Vec<_> = {
                    let [a, b, c] = &mut parts[..] else {
                        unreachable!()
                    };
                    let ids = std::sync::Mutex::new(Vec::new());
                    let job = |p: &mut Vec<usize>| {
                        ids.lock().unwrap().push(std::thread::current().id());
                        for v in p.iter_mut() {
                            *v += step;
                        }
                    };
                    let (mut j0, mut j1, mut j2) = (|| job(a), || job(b), || job(c));
                    // Two jobs now and then: the idle helper still counts the run.
                    if step % 7 == 0 {
                        crew.run(&mut [&mut j0, &mut j1]);
                        job(c);
                    } else {
                        crew.run(&mut [&mut j0, &mut j1, &mut j2]);
                    }
                    ids.into_inner().unwrap()
                };
                // Every job done when `run` returns, on as many threads as jobs.
                let want = step * (step + 1) / 2;
                assert!(
                    parts.iter().all(|p| p.iter().all(|&v| v == want)),
                    "step {step}"
                );
                let mut distinct = threads.clone();
                distinct.sort_by_key(|t| format!("{t:?}"));
                distinct.dedup();
                assert_eq!(
                    distinct.len(),
                    if step % 7 == 0 { 2 } else { 3 },
                    "step {step}"
                );
                assert!(threads.contains(&std::thread::current().id()));
            }
        });
        // The same slots again, for a second crew: its jobs run.
        std::thread::scope(|s| {
            let mut crew = Crew::start(s, &mut slots);
            let [a, b, c] = &mut parts[..] else {
                unreachable!()
            };
            crew.run(&mut [&mut || a[0] = 1, &mut || b[0] = 2, &mut || c[0] = 3]);
        });
        assert_eq!([parts[0][0], parts[1][0], parts[2][0]], [1, 2, 3]);
        // A helper's panic reaches the caller after every job is done.
        let mut slots = Crew::slots(1);
        let done = AtomicBool::new(false);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|s| {
                let mut crew = Crew::start(s, &mut slots);
                crew.run(&mut [
                    &mut || {
                        std::thread::sleep(Duration::from_millis(20));
                        done.store(true, Ordering::SeqCst);
                    },
                    &mut || panic!("a job's panic"),
                ]);
            })
        }));
        assert!(caught.is_err() && done.load(Ordering::SeqCst));
    }

    #[test]
    fn a_signal_orders_the_publisher_before_the_waiter_and_asks_for_work_again_in_long_waits() {
        let team = SpinBarrier::new(2);
        let (written, read) = (Signal::new(), Signal::new());
        let buf = Shared::new(vec![0usize; 64]);
        let (mut waited_with_work, mut asked_again) = (0, 0);
        // How often the waiter has asked for work in its current wait.
        let asked = AtomicUsize::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                for step in 1..500 {
                    read.wait_for(step - 1, &team, || false);
                    if step % 50 == 0 {
                        // Now and then the waiter surely waits: this step is held back until
                        // it has asked for work a fourth time, after its work said it was
                        // done (or for 10 s, if it never asks again: the count below fails).
                        let start = std::time::Instant::now();
                        while asked.load(Ordering::Relaxed) < 4
                            && start.elapsed() < std::time::Duration::from_secs(10)
                        {
                            std::hint::spin_loop();
                        }
                    }
                    // SAFETY: the reader has published that it is done with the last step,
                    // and reads this one only after it is published below.
                    unsafe { buf.part_mut(0, 64) }.fill(step);
                    written.publish(step);
                }
            });
            for step in 1..500 {
                let mut calls = 0;
                written.wait_for(step, &team, || {
                    calls += 1;
                    asked.store(calls, Ordering::Relaxed);
                    calls < 3
                });
                asked.store(0, Ordering::Relaxed);
                waited_with_work += usize::from(calls >= 3);
                asked_again += usize::from(calls > 3);
                // SAFETY: the writer published this step after writing it, and writes again
                // only after this thread publishes below.
                assert!(unsafe { buf.read() }.iter().all(|&v| v == step));
                read.publish(step);
            }
        });
        assert!(
            waited_with_work >= 9,
            "a long wait did no work: {waited_with_work}"
        );
        // Work that said it was done is asked again.
        assert!(asked_again >= 9, "work not asked for again: {asked_again}");
    }

    #[test]
    fn map_shared_gives_every_item_once_in_order() {
        for threads in [1, 2, 3, 8] {
            for count in [0, 1, 2, 7, 100] {
                let got = map_shared(count, threads, |calls: &mut usize, i| {
                    *calls += 1;
                    (i * i, *calls)
                });
                let squares: Vec<usize> = got.iter().map(|&(q, _)| q).collect();
                assert_eq!(squares, (0..count).map(|i| i * i).collect::<Vec<_>>());
                // Each thread's scratch is its own: its calls count up from 1.
                let firsts = got.iter().filter(|&&(_, c)| c == 1).count();
                assert!(
                    firsts <= threads.max(1),
                    "{firsts} scratches for {threads} threads"
                );
            }
        }
    }

    #[test]
    fn a_poisoned_team_stops_a_signal_wait() {
        let team = SpinBarrier::new(2);
        team.poison();
        let sig = Signal::new();
        let mut calls = 0u64;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sig.wait_for(1, &team, || {
                calls += 1;
                // Without the poison check this would spin forever: fail instead.
                assert!(calls < 10_000_000, "the wait ignored the poisoned team");
                true
            })
        }));
        let payload = r.expect_err("the wait returned");
        let message = payload.downcast_ref::<&str>().copied();
        assert_eq!(message, Some("another thread of the team panicked"));
    }

    #[test]
    fn barrier_orders_phases() {
        let n = 3;
        let barrier = SpinBarrier::new(n);
        let buf = Shared::new(vec![0usize; n]);
        std::thread::scope(|s| {
            for me in 0..n {
                let (barrier, buf) = (&barrier, &buf);
                s.spawn(move || {
                    for round in 1..50 {
                        // SAFETY: each member writes only its own element in this phase.
                        unsafe { buf.part_mut(me, me + 1)[0] = round * 10 + me };
                        barrier.wait();
                        // SAFETY: nobody writes in this phase.
                        let all = unsafe { buf.read() }.to_vec();
                        assert_eq!(all, (0..n).map(|i| round * 10 + i).collect::<Vec<_>>());
                        barrier.wait();
                    }
                });
            }
        });
    }
}
