//! The one worker pool of every tree operation (`imactl hash|sign|verify|appraise|evm -r`,
//! `measure`): a producer (the walk) pushes items with a size into a bounded queue, one worker
//! per core takes the **largest** queued item, and every result goes to one sink on the
//! calling thread (so the sink may hold `&mut` state: the engine appends there).
//!
//! Largest first: a few huge files (libLLVM, node) start early instead of finishing alone at
//! the end, while memory (and the open descriptors the items hold) stays bounded by the
//! queue, not the tree. With a window ([`Pool::ordered`]) the sink receives results in push
//! order: finished results wait in a reorder buffer, and the producer waits when it runs the
//! window ahead of the oldest result not yet sunk.

use std::collections::{BTreeMap, BinaryHeap};
use std::sync::{Condvar, Mutex, MutexGuard, mpsc};

/// Items waiting for a worker, at most, unless the descriptor limit asks for fewer.
pub const QUEUE_MAX: usize = 65536;

/// How a run is shaped.
#[derive(Clone, Copy, Debug)]
pub struct Pool {
    workers: usize,
    queue: usize,
    window: Option<u64>,
}

impl Pool {
    /// One worker per CPU, a queue of [`QUEUE_MAX`] items or half the open-file limit
    /// (each queued file holds a descriptor), results in completion order.
    pub fn new() -> Self {
        let fds = ima_sys::walk::fd_limit().map_or(1024, |n| n / 2);
        Self {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue: QUEUE_MAX
                .min(usize::try_from(fds).unwrap_or(QUEUE_MAX))
                .max(16),
            window: None,
        }
    }

    /// Results reach the sink in push order; the producer stays at most `window` items ahead
    /// of the oldest one not yet sunk.
    pub fn ordered(mut self, window: u64) -> Self {
        self.window = Some(window.max(1));
        self
    }

    /// At most `n` queued items.
    pub fn queue(mut self, n: usize) -> Self {
        self.queue = n.max(1);
        self
    }

    /// Runs `produce` on its own thread, `work` on the workers and `sink` on this thread;
    /// returns when every pushed item has been sunk.
    pub fn run<T, R, P, W, S>(&self, produce: P, work: W, mut sink: S)
    where
        T: Send,
        R: Send,
        P: FnOnce(&Feeder<'_, T>) + Send,
        W: Fn(T) -> R + Sync,
        S: FnMut(R),
    {
        let shared = Shared {
            state: Mutex::new(State {
                heap: BinaryHeap::new(),
                seq: 0,
                sunk: 0,
                done: false,
            }),
            ready: Condvar::new(),
            room: Condvar::new(),
        };
        let feeder = Feeder {
            shared: &shared,
            queue: self.queue,
            window: self.window,
        };
        let (tx, rx) = mpsc::sync_channel::<(u64, R)>(self.workers * 4);
        std::thread::scope(|s| {
            let feeder = &feeder;
            s.spawn(move || {
                // Ends the run even if `produce` panics (the panic then surfaces here).
                let _finish = Finish(feeder.shared);
                produce(feeder);
            });
            for _ in 0..self.workers.max(1) {
                let tx = tx.clone();
                let (shared, work) = (&shared, &work);
                s.spawn(move || {
                    while let Some(Queued { seq, item, .. }) = shared.pop() {
                        if tx.send((seq, work(item))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut waiting = BTreeMap::new();
            for (seq, r) in rx {
                if self.window.is_none() {
                    sink(r);
                    continue;
                }
                waiting.insert(seq, r);
                let mut sunk = shared.lock().sunk;
                let before = sunk;
                while let Some(r) = waiting.remove(&sunk) {
                    sink(r);
                    sunk += 1;
                }
                if sunk != before {
                    shared.lock().sunk = sunk;
                    shared.room.notify_all();
                }
            }
        });
    }
}

impl Default for Pool {
    fn default() -> Self {
        Self::new()
    }
}

/// The producer's handle: [`Feeder::push`] from any thread.
pub struct Feeder<'a, T> {
    shared: &'a Shared<T>,
    queue: usize,
    window: Option<u64>,
}

impl<T> std::fmt::Debug for Feeder<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feeder")
            .field("queue", &self.queue)
            .finish()
    }
}

impl<T> Feeder<'_, T> {
    /// Queues `item` (workers take the largest `size` first); blocks while the queue is full
    /// or, for an ordered pool, while this item would be a window ahead of the sink.
    pub fn push(&self, size: u64, item: T) {
        let sh = self.shared;
        let mut s = sh.lock();
        while s.heap.len() >= self.queue || self.window.is_some_and(|w| s.seq >= s.sunk + w) {
            s = sh.room.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        let seq = s.seq;
        s.seq += 1;
        s.heap.push(Queued { size, seq, item });
        sh.ready.notify_one();
    }
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// An item was pushed, or the producer finished.
    ready: Condvar,
    /// An item was taken or sunk.
    room: Condvar,
}

struct State<T> {
    heap: BinaryHeap<Queued<T>>,
    /// The next push's sequence number.
    seq: u64,
    /// Results sunk so far (ordered pools).
    sunk: u64,
    done: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Push and pop are atomic from a panicking thread's point of view: a poisoned lock
        // still guards a consistent heap.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pop(&self) -> Option<Queued<T>> {
        let mut s = self.lock();
        loop {
            if let Some(q) = s.heap.pop() {
                self.room.notify_all();
                return Some(q);
            }
            if s.done {
                return None;
            }
            s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

struct Finish<'a, T>(&'a Shared<T>);

impl<T> Drop for Finish<'_, T> {
    fn drop(&mut self) {
        self.0.lock().done = true;
        self.0.ready.notify_all();
    }
}

/// A queued item: the largest size first, then the earliest pushed.
struct Queued<T> {
    size: u64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Queued<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.size, self.seq) == (o.size, o.seq)
    }
}

impl<T> Eq for Queued<T> {}

impl<T> PartialOrd for Queued<T> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl<T> Ord for Queued<T> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.size.cmp(&o.size).then(o.seq.cmp(&self.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_results_whatever_the_completion_order() {
        for window in [1, 3, 1000] {
            let mut got = Vec::new();
            Pool::new().ordered(window).queue(4).run(
                |f| {
                    for i in 0..200u64 {
                        f.push((i * 7919) % 97, i);
                    }
                },
                |i| {
                    // Small items finish last.
                    std::thread::sleep(std::time::Duration::from_micros(100 - (i * 7919) % 97));
                    i
                },
                |i| got.push(i),
            );
            assert_eq!(got, (0..200).collect::<Vec<_>>(), "window {window}");
        }
    }

    #[test]
    fn largest_first_with_one_worker() {
        let mut p = Pool::new().queue(100);
        p.workers = 1;
        let mut got = Vec::new();
        let (taken, go) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        p.run(
            |f| {
                // The worker holds the first item until everything else is queued.
                f.push(0, 0);
                taken.wait();
                for s in [5, 1, 9, 3] {
                    f.push(s, s);
                }
                go.wait();
            },
            |i| {
                if i == 0 {
                    taken.wait();
                    go.wait();
                }
                i
            },
            |i| got.push(i),
        );
        assert_eq!(got, [0, 9, 5, 3, 1]);
    }
}
