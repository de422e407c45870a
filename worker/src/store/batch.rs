//! Coalescing one kind of write from many concurrent jobs into one statement.
//!
//! At saturation PostgreSQL spends most of its time on what every statement costs whatever it writes:
//! the round trip, executor start-up, the commit and its WAL flush. A [`Batcher`] lets each job keep
//! calling "store this" as if it were alone, while one task turns whatever calls are waiting into a
//! single multi-row statement. Nothing waits for a batch to fill: a call arriving while no batch is
//! being written runs at once (alone, at low load), and calls arriving while one is form the next.

use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Rows in one statement at most (a bound on its size, not a target).
const MAX_ROWS: usize = 64;

/// Batches in flight at once. One: a call arriving mid-batch waits for that batch (a few milliseconds
/// at saturation, nothing at low load), and in exchange batches are about twice as large, with half
/// the statements. Measured alternated against two slots at 1,500 DMs/s offered: 934 / 963 against
/// 591 / 704 replies/s (BENCHMARKS.md).
const IN_FLIGHT: usize = 1;

type Call<I, O> = (I, oneshot::Sender<sqlx::Result<O>>);

/// A handle to a running batcher: [`Batcher::call`] writes one row and returns its own result. Cheap to
/// clone; the batching task ends when the last handle is dropped.
pub struct Batcher<I, O> {
    calls: mpsc::Sender<Call<I, O>>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            calls: self.calls.clone(),
        }
    }
}

/// Counts batches and the rows they carried, so their mean size shows whether batching happens.
pub trait BatchMetrics: Send + Sync + 'static {
    /// One statement ran with `rows` rows.
    fn batch(&self, rows: usize);
}

impl<I, O> Batcher<I, O>
where
    I: Clone + Send + 'static,
    O: Send + 'static,
{
    /// Starts the batching task. `write` stores the rows it is given in one statement and returns one
    /// result per row, in their order.
    pub fn start<W, F>(write: W, metrics: impl BatchMetrics) -> Self
    where
        W: Fn(Vec<I>) -> F + Send + Sync + 'static,
        F: Future<Output = sqlx::Result<Vec<O>>> + Send + 'static,
    {
        let (calls, receiver) = mpsc::channel(MAX_ROWS * 16);
        tokio::spawn(collect(receiver, Arc::new(write), Arc::new(metrics)));
        Self { calls }
    }

    /// Writes one row, batched with whatever other calls are waiting.
    pub async fn call(&self, item: I) -> sqlx::Result<O> {
        let (reply, result) = oneshot::channel();
        self.calls
            .send((item, reply))
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        result.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

/// The one result of a write given one row (the batched statements' single-row forms use it too).
pub fn only<O>(results: Vec<O>) -> sqlx::Result<O> {
    let mut results = results.into_iter();
    match (results.next(), results.next()) {
        (Some(result), None) => Ok(result),
        _ => Err(sqlx::Error::Protocol(
            "a write of one row did not return one result".into(),
        )),
    }
}

async fn collect<I, O, W, F>(
    mut calls: mpsc::Receiver<Call<I, O>>,
    write: Arc<W>,
    metrics: Arc<impl BatchMetrics>,
) where
    I: Clone + Send + 'static,
    O: Send + 'static,
    W: Fn(Vec<I>) -> F + Send + Sync + 'static,
    F: Future<Output = sqlx::Result<Vec<O>>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // Waiting for a slot first is what forms batches: calls queue up meanwhile.
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let Some(first) = calls.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_ROWS {
            match calls.try_recv() {
                Ok(call) => batch.push(call),
                Err(_) => break,
            }
        }
        let (write, metrics) = (write.clone(), metrics.clone());
        tokio::spawn(async move {
            run(batch, &*write, &*metrics).await;
            drop(slot);
        });
    }
}

/// Runs one batch. If the statement fails and it carried more than one row, each row is retried on its
/// own, concurrently: one row PostgreSQL rejects (or a deadlock between two batches) must fail only its
/// own job, and during an outage each call still gets its own error in about the time one would take.
async fn run<I, O, W, F>(batch: Vec<Call<I, O>>, write: &W, metrics: &impl BatchMetrics)
where
    I: Clone,
    W: Fn(Vec<I>) -> F,
    F: Future<Output = sqlx::Result<Vec<O>>>,
{
    let items: Vec<I> = batch.iter().map(|(item, _)| item.clone()).collect();
    let rows = items.len();
    metrics.batch(rows);
    let error = match write(items).await {
        Ok(results) if results.len() == rows => {
            for ((_, reply), result) in batch.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
            return;
        }
        Ok(results) => sqlx::Error::Protocol(format!(
            "a batch of {rows} rows returned {} results",
            results.len()
        )),
        Err(error) => error,
    };
    if rows == 1 {
        let (_, reply) = batch.into_iter().next().expect("one call");
        let _ = reply.send(Err(error));
        return;
    }
    tracing::debug!(%error, rows, "batched write failed; writing its rows one by one");
    let singles = batch.into_iter().map(|(item, reply)| async move {
        metrics.batch(1);
        let result = write(vec![item]).await.and_then(only);
        let _ = reply.send(result);
    });
    futures_util::future::join_all(singles).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::sync::Notify;

    #[derive(Clone, Default)]
    struct Sizes(Arc<Mutex<Vec<usize>>>);

    impl BatchMetrics for Sizes {
        fn batch(&self, rows: usize) {
            self.0.lock().unwrap().push(rows);
        }
    }

    /// A batcher whose writes double each number, fail a whole batch holding a negative one, and wait
    /// for `gate` while `hold` is set (so that calls queue up behind busy slots).
    fn doubling(
        gate: Arc<Notify>,
        hold: Arc<std::sync::atomic::AtomicBool>,
        sizes: Sizes,
    ) -> Batcher<i64, i64> {
        Batcher::start(
            move |rows: Vec<i64>| {
                let (gate, hold) = (gate.clone(), hold.clone());
                async move {
                    if hold.load(std::sync::atomic::Ordering::SeqCst) {
                        gate.notified().await;
                    }
                    if rows.iter().any(|n| *n < 0) {
                        return Err(sqlx::Error::Protocol("negative".into()));
                    }
                    Ok(rows.iter().map(|n| n * 2).collect())
                }
            },
            sizes,
        )
    }

    async fn queue_behind_busy_slots(numbers: Vec<i64>) -> (Vec<sqlx::Result<i64>>, Vec<usize>) {
        let (gate, hold, sizes) = (
            Arc::new(Notify::new()),
            Arc::new(std::sync::atomic::AtomicBool::new(true)),
            Sizes::default(),
        );
        let batcher = doubling(gate.clone(), hold.clone(), sizes.clone());
        // One call at a time takes each slot and blocks there; everything after them queues.
        let mut blockers = Vec::new();
        for n in 0..IN_FLIGHT {
            blockers.push(tokio::spawn({
                let batcher = batcher.clone();
                async move { batcher.call(1000 + n as i64).await }
            }));
            tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while sizes.0.lock().unwrap().len() <= n {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            })
            .await
            .expect("the call takes a slot");
        }
        let calls: Vec<_> = numbers
            .into_iter()
            .map(|n| {
                tokio::spawn({
                    let batcher = batcher.clone();
                    async move { batcher.call(n).await }
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        hold.store(false, std::sync::atomic::Ordering::SeqCst);
        gate.notify_waiters();
        for blocker in blockers {
            assert!(blocker.await.unwrap().is_ok());
        }
        let mut results = Vec::new();
        for call in calls {
            results.push(call.await.unwrap());
        }
        let sizes = sizes.0.lock().unwrap().clone();
        (results, sizes)
    }

    #[tokio::test]
    async fn calls_waiting_for_a_slot_share_one_write_and_each_gets_its_own_result() {
        let (results, sizes) = queue_behind_busy_slots((1..=10).collect()).await;
        let doubled: Vec<i64> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(doubled, (1..=10).map(|n| n * 2).collect::<Vec<_>>());
        let mut expected = vec![1; IN_FLIGHT];
        expected.push(10);
        assert_eq!(
            sizes, expected,
            "a lone call per slot, then the ten that queued behind them"
        );
    }

    #[tokio::test]
    async fn a_row_that_fails_its_batch_fails_alone() {
        let (results, sizes) = queue_behind_busy_slots(vec![1, -1, 3]).await;
        assert_eq!(results[0].as_ref().ok(), Some(&2));
        assert!(results[1].is_err());
        assert_eq!(results[2].as_ref().ok(), Some(&6));
        let mut expected = vec![1; IN_FLIGHT];
        expected.extend([3, 1, 1, 1]);
        assert_eq!(
            sizes, expected,
            "a lone call per slot, the failed batch, then each row alone"
        );
    }
}
