//! The one shape every transforming stage has: batches in, batches out, on its own task, joined
//! to its neighbours by bounded channels. A stage is a value with a synchronous transform, so
//! its logic is tested by calling it with data built in the test; [`run`] is the only loop.
//!
//! Shutdown flows with the data: a stage stops when its input closes, after handing on what it
//! still holds ([`Stage::finish`]), so closing capture's output empties the whole pipeline.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::mpsc, task::JoinHandle};

pub trait Stage: Send + 'static {
    type Input: Send + 'static;
    type Output: Send + 'static;
    /// Names the stage in logs.
    const NAME: &'static str;

    /// One batch in, what it becomes out (possibly fewer, possibly none).
    fn process(&mut self, batch: Vec<Self::Input>) -> Vec<Self::Output>;

    /// How often [`Stage::tick`] runs; `None` for stages that hold nothing between batches.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// What is due on a timer (aggregation's interval flush).
    fn tick(&mut self) -> Vec<Self::Output> {
        Vec::new()
    }

    /// What the stage still holds when its input has closed.
    fn finish(&mut self) -> Vec<Self::Output> {
        Vec::new()
    }
}

/// Runs `stage` until its input closes and its last output is handed on (or the next stage is
/// gone).
pub async fn run<S: Stage>(
    mut stage: S,
    mut input: mpsc::Receiver<Vec<S::Input>>,
    output: mpsc::Sender<Vec<S::Output>>,
) {
    let mut ticker = stage.tick_interval().map(|every| {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    loop {
        let batch = tokio::select! {
            batch = input.recv() => match batch {
                Some(batch) => stage.process(batch),
                None => break,
            },
            () = next_tick(&mut ticker) => stage.tick(),
        };
        if !batch.is_empty() && output.send(batch).await.is_err() {
            tracing::warn!(stage = S::NAME, "next stage stopped; exiting");
            return;
        }
    }
    let rest = stage.finish();
    if !rest.is_empty() && output.send(rest).await.is_err() {
        tracing::warn!(stage = S::NAME, "next stage stopped before the final batch");
    }
}

async fn next_tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Reads how many batches wait in a channel, through a weak sender: watching never keeps a
/// channel open, so shutdown still flows with the data.
type QueuedReader = Box<dyn Fn() -> Option<usize> + Send + Sync>;

/// How full each channel between stages is, by the stage that fills it: where batches pile up
/// is where the pipeline lags.
#[derive(Clone, Default)]
pub struct Queues(Arc<Mutex<Vec<(&'static str, QueuedReader)>>>);

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues").finish_non_exhaustive()
    }
}

impl Queues {
    /// Watches the channel `sender` fills, under the name of the stage that fills it.
    pub fn watch<T: Send + 'static>(&self, from: &'static str, sender: &mpsc::Sender<T>) {
        let weak = sender.downgrade();
        let reader: QueuedReader = Box::new(move || {
            let sender = weak.upgrade()?;
            Some(sender.max_capacity() - sender.capacity())
        });
        if let Ok(mut queues) = self.0.lock() {
            queues.push((from, reader));
        }
    }

    /// Batches waiting after each stage, for the channels still open.
    pub fn queued(&self) -> Vec<(&'static str, usize)> {
        self.0.lock().map_or_else(
            |_| Vec::new(),
            |queues| {
                queues
                    .iter()
                    .filter_map(|(from, read)| Some((*from, read()?)))
                    .collect()
            },
        )
    }
}

/// Spawns stages in data-path order and joins them in the same order.
#[derive(Default)]
pub struct Pipeline {
    stages: Vec<(&'static str, JoinHandle<()>)>,
    buffer: usize,
    queues: Queues,
}

impl Pipeline {
    /// `buffer`: batches each channel between stages holds before the sender waits.
    pub fn new(buffer: usize) -> Self {
        Self {
            stages: Vec::new(),
            buffer: buffer.max(1),
            queues: Queues::default(),
        }
    }

    /// The channels' fill, for `/metrics`.
    pub fn queues(&self) -> Queues {
        self.queues.clone()
    }

    /// Starts `stage` reading `input`; returns the stage's output for the next one.
    pub fn then<S: Stage>(
        &mut self,
        stage: S,
        input: mpsc::Receiver<Vec<S::Input>>,
    ) -> mpsc::Receiver<Vec<S::Output>> {
        let (output, next) = mpsc::channel(self.buffer);
        self.queues.watch(S::NAME, &output);
        self.stages
            .push((S::NAME, tokio::spawn(run(stage, input, output))));
        next
    }

    /// Waits for every stage, first to last: each ends once its input closed and it handed on
    /// what it held.
    pub async fn join(self) -> Result<(), tokio::task::JoinError> {
        for (name, stage) in self.stages {
            stage.await?;
            tracing::debug!(stage = name, "stage finished");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums what it gets and hands the sum on at each tick and at the end.
    struct Summing {
        held: u64,
        every: Option<Duration>,
    }

    impl Stage for Summing {
        type Input = u64;
        type Output = u64;
        const NAME: &'static str = "summing";

        fn process(&mut self, batch: Vec<u64>) -> Vec<u64> {
            self.held += batch.iter().sum::<u64>();
            Vec::new()
        }

        fn tick_interval(&self) -> Option<Duration> {
            self.every
        }

        fn tick(&mut self) -> Vec<u64> {
            match std::mem::take(&mut self.held) {
                0 => Vec::new(),
                sum => vec![sum],
            }
        }

        fn finish(&mut self) -> Vec<u64> {
            self.tick()
        }
    }

    #[tokio::test]
    async fn what_a_stage_holds_is_handed_on_when_its_input_closes() {
        let mut pipeline = Pipeline::new(4);
        let (input, first) = mpsc::channel(4);
        let mut out = pipeline.then(
            Summing {
                held: 0,
                every: None,
            },
            first,
        );
        input.send(vec![1, 2]).await.unwrap();
        input.send(vec![3]).await.unwrap();
        drop(input);
        assert_eq!(out.recv().await, Some(vec![6]));
        assert_eq!(out.recv().await, None, "the stage ended");
        pipeline.join().await.unwrap();
    }

    #[tokio::test]
    async fn queues_say_what_waits_and_never_hold_a_channel_open() {
        let mut pipeline = Pipeline::new(4);
        let (input, first) = mpsc::channel(4);
        let mut out = pipeline.then(
            Summing {
                held: 0,
                every: Some(Duration::from_millis(1)),
            },
            first,
        );
        input.send(vec![1]).await.unwrap();
        // Nobody reads `out` yet: the stage's output waits in the channel.
        let queues = pipeline.queues();
        let waiting = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let queued = queues.queued();
                if queued.first().is_some_and(|(_, n)| *n > 0) {
                    break queued;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the stage's output shows as queued");
        assert_eq!(waiting[0].0, "summing");
        drop(input);
        while out.recv().await.is_some() {}
        pipeline.join().await.unwrap();
        assert!(
            queues.queued().is_empty(),
            "a closed channel is not reported"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_flush_between_batches() {
        let mut pipeline = Pipeline::new(4);
        let (input, first) = mpsc::channel(4);
        let every = Some(Duration::from_secs(10));
        let mut out = pipeline.then(Summing { held: 0, every }, first);
        input.send(vec![5]).await.unwrap();
        assert_eq!(
            out.recv().await,
            Some(vec![5]),
            "flushed by the tick, input still open"
        );
        drop(input);
        assert_eq!(out.recv().await, None);
        pipeline.join().await.unwrap();
    }

    #[tokio::test]
    async fn a_stage_whose_successor_is_gone_stops() {
        let (input, first) = mpsc::channel(4);
        let (output, next) = mpsc::channel(1);
        drop(next);
        input.send(vec![1]).await.unwrap();
        // `finish` has something to hand on and nobody to take it: the stage still returns.
        drop(input);
        run(
            Summing {
                held: 0,
                every: None,
            },
            first,
            output,
        )
        .await;
    }
}
