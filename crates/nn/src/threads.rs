//! Running work on thread pools of a chosen size.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `f` inside a rayon pool of its own with `threads` threads (`None`: where it is). CPU
/// ranks of one process each take their share of the cores this way: burn's kernels split
/// every op over the pool they run in, and ranks sharing one pool would split each op over
/// cores the other rank is using.
pub fn on_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> R {
    match threads.and_then(|n| rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build().ok()) {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// How many workers [`map_on_workers`] runs here: the threads of the calling pool.
pub fn workers() -> usize {
    rayon::current_num_threads().max(1)
}

/// `f` of every item, in order, computed by as many workers as the calling pool has threads,
/// each taking the next item and running it on one thread of its own. For independent pieces
/// of inference (clips, batches of frames) whose ops are too small to keep two threads busy:
/// two at once, one thread each, keep both cores working. burn's CPU kernels split an op's
/// work over threads but never a sum, so each result has the bits the sequential loop gives.
pub fn map_on_workers<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = workers().min(items.len());
    if workers <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (f, next) = (&f, &next);
                scope.spawn(move || {
                    on_threads(Some(1), || {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(item) = items.get(i) else { break };
                            mine.push((i, f(item)));
                        }
                        mine
                    })
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(mine) => mine.into_iter().for_each(|(i, r)| out[i] = Some(r)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    out.into_iter().map(|r| r.expect("every item is taken by exactly one worker")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_return_every_result_in_order_each_on_one_thread() {
        let items: Vec<u64> = (0..37).collect();
        let (threads, out) = on_threads(Some(3), || (workers(), map_on_workers(&items, |&x| (x * x, rayon::current_num_threads()))));
        assert_eq!(threads, 3);
        assert_eq!(out.iter().map(|r| r.0).collect::<Vec<_>>(), items.iter().map(|x| x * x).collect::<Vec<_>>());
        assert!(out.iter().all(|r| r.1 == 1), "every item runs on a one-thread pool");
        let one = on_threads(Some(1), || map_on_workers(&items, |&x| (x, rayon::current_num_threads())));
        assert!(one.iter().enumerate().all(|(i, r)| r.0 == i as u64 && r.1 == 1));
        assert!(map_on_workers(&[] as &[u8], |_| 0).is_empty());
    }
}
