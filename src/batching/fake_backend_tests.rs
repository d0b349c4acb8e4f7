//! The batcher and its inference threads end to end, on a fake backend
//! ([`crate::inference::fake`]): the driver task cuts batches, the real [`Workers`] build each
//! batch tensor, run it and answer every job. No model, so what is checked is the batching
//! layer alone: each answer reaches the request whose image it is, every image runs once, a
//! failed run fails only its own batch, and an image whose client left is not run.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::queue::QueueConfig;
use super::{Batcher, Job, KeepWarm, Lanes, Prediction, Watchdog, Workers};
use crate::admission::Admissions;
use crate::cores::Cores;
use crate::inference::fake::FakeBackend;
use crate::inference::{Backend, InferenceError, InputShape, ModelInput};
use crate::preprocess::normalize::Normalization;
use crate::supervise::Supervisor;

/// One-pixel images: the fake reads only each image's first value.
const SHAPE: InputShape = InputShape {
    size: 1,
    normalization: Normalization::IMAGENET,
};

type Answer = oneshot::Receiver<Result<Prediction, InferenceError>>;

/// A batcher over `sessions` narrow sessions, each a clone of `backend`, cutting batches of
/// at most `max_batch` at once.
struct Served {
    batcher: Batcher,
    workers: Workers,
}

impl Served {
    fn start(sessions: usize, max_batch: usize, backend: &FakeBackend) -> Self {
        Self::keeping_warm(sessions, max_batch, backend, None)
    }

    fn keeping_warm(
        sessions: usize,
        max_batch: usize,
        backend: &FakeBackend,
        keep_warm: Option<KeepWarm>,
    ) -> Self {
        let (narrow, batches) = crossbeam_channel::unbounded();
        let config = QueueConfig {
            max_batch,
            max_delay: Duration::ZERO,
            capacity: 64,
            keep_warm,
        };
        let supervisor = Supervisor::default();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let admissions = Admissions::new(config.capacity, metrics.clone());
        let metrics = metrics.for_model("fake", 1);
        let engines = (0..sessions)
            .map(|_| {
                (
                    Box::new(backend.clone()) as Box<dyn Backend>,
                    batches.clone(),
                )
            })
            .collect();
        let watchdog = Arc::new(Watchdog::new(sessions, Duration::from_millis(1), max_batch));
        let workers = Workers::spawn(engines, SHAPE, metrics.clone(), &supervisor, &watchdog);
        let (batcher, _driver) = Batcher::start(
            config,
            sessions,
            Lanes { narrow, wide: None },
            (Cores::unlimited(), 1),
            admissions,
            metrics,
            supervisor,
        );
        Self { batcher, workers }
    }

    /// Queues an image whose every value is `value`.
    fn submit(&self, value: f32) -> Answer {
        let (job, answer) = Job::for_test(ModelInput::Tensor(vec![value; SHAPE.slot_len()]));
        self.batcher.submit(job);
        answer
    }

    /// Closes the queue and waits for the inference threads to end.
    async fn stop(self) {
        self.batcher.close();
        let workers = self.workers;
        tokio::task::spawn_blocking(move || workers.join())
            .await
            .expect("joined");
    }
}

/// Waits (at most 5 s) until the fake has recorded `count` runs.
async fn runs_reach(backend: &FakeBackend, count: usize) {
    for _ in 0..5000 {
        if backend.runs().len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{count} runs expected, saw {:?}", backend.runs());
}

async fn logits(answer: Answer) -> Result<Vec<f32>, InferenceError> {
    answer.await.expect("answered").map(|p| p.logits)
}

/// Two sessions held busy, six images queued behind them: once the runs may finish, every
/// image has run exactly once, queued images left together in batches, and each answer holds
/// the logits of its own image, not of a neighbour in its batch.
#[tokio::test]
async fn every_answer_holds_the_logits_of_its_own_image_and_every_image_runs_once() {
    let (backend, open) = FakeBackend::new(3).gated();
    let served = Served::start(2, 8, &backend);
    let mut answers: Vec<Answer> = (1..=2).map(|v| served.submit(v as f32)).collect();
    runs_reach(&backend, 2).await;
    answers.extend((3..=8).map(|v| served.submit(v as f32)));
    drop(open);
    for (value, answer) in (1..=8).zip(answers) {
        let got = logits(answer).await.expect("ran");
        assert_eq!(got, backend.logits_of(value as f32), "image {value}");
    }
    let runs = backend.runs();
    let mut images: Vec<f32> = runs.iter().flatten().copied().collect();
    images.sort_by(f32::total_cmp);
    assert_eq!(
        images,
        (1..=8).map(|v| v as f32).collect::<Vec<_>>(),
        "{runs:?}"
    );
    assert!(
        runs[2..].iter().any(|run| run.len() > 1),
        "the queued six left in batches, not one by one: {runs:?}"
    );
    served.stop().await;
}

/// A run that fails answers each of its images with the error; the session lives on and the
/// next image, alone in its own batch, is classified.
#[tokio::test]
async fn a_failed_run_fails_only_its_own_batch_and_the_session_serves_on() {
    let backend = FakeBackend::new(2);
    let served = Served::start(1, 1, &backend);
    let (bad, good) = (served.submit(-1.0), served.submit(4.0));
    let error = logits(bad).await.expect_err("the run failed");
    assert!(
        matches!(&error, InferenceError::Runtime(m) if m.contains("fake backend failed")),
        "{error}"
    );
    assert_eq!(logits(good).await.expect("ran"), backend.logits_of(4.0));
    assert_eq!(backend.runs(), vec![vec![-1.0], vec![4.0]]);
    served.stop().await;
}

/// The session is busy while three images queue; the client of one of them leaves. The batch
/// cut when the session frees up runs only the two still wanted.
#[tokio::test]
async fn an_image_whose_client_left_is_not_run() {
    let (backend, open) = FakeBackend::new(2).gated();
    let served = Served::start(1, 8, &backend);
    let first = served.submit(1.0);
    runs_reach(&backend, 1).await;
    let (second, gone, third) = (served.submit(2.0), served.submit(3.0), served.submit(4.0));
    drop(gone);
    drop(open);
    assert_eq!(logits(first).await.expect("ran"), backend.logits_of(1.0));
    assert_eq!(logits(second).await.expect("ran"), backend.logits_of(2.0));
    assert_eq!(logits(third).await.expect("ran"), backend.logits_of(4.0));
    assert_eq!(backend.runs(), vec![vec![1.0], vec![2.0, 4.0]]);
    served.stop().await;
}

/// With `--keep-warm-ms`: no warm run before the first image, none while a session is busy,
/// blank single-image runs once the model is idle, and none past the horizon. Not timed: the
/// bounds leave several periods of slack either way.
#[tokio::test]
async fn an_idle_model_is_kept_warm_after_traffic_until_the_horizon_and_never_while_busy() {
    let (backend, open) = FakeBackend::new(2).gated();
    let keep_warm = KeepWarm {
        period: Duration::from_millis(20),
        horizon: Duration::from_millis(300),
    };
    let served = Served::keeping_warm(2, 8, &backend, Some(keep_warm));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(backend.runs().is_empty(), "warm before any traffic");
    let answer = served.submit(1.0);
    runs_reach(&backend, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        backend.runs(),
        vec![vec![1.0]],
        "a warm run beside a busy session"
    );
    drop(open);
    assert_eq!(logits(answer).await.expect("ran"), backend.logits_of(1.0));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let runs = backend.runs();
    let warm = &runs[1..];
    assert!(
        !warm.is_empty() && warm.len() <= 300 / 20,
        "between 1 and one per period up to the horizon: {runs:?}"
    );
    assert!(
        warm.iter().all(|run| run == &vec![0.0]),
        "warm runs are one blank image: {runs:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        backend.runs().len(),
        runs.len(),
        "warm runs past the horizon"
    );
    served.stop().await;
}
