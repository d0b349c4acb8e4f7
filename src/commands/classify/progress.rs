//! Progress of a `classify` run (a bar on a terminal, plain lines otherwise) and its summary.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Plain progress lines (when stderr is not a terminal) come this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A bar with the rate and ETA on a terminal; a plain line every few seconds otherwise.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    pub(super) fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} images  {per_sec}  ETA {eta}",
                )
                .expect("a valid template"),
            );
            bar
        });
        Self {
            bar,
            total,
            done: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    pub(super) fn step(&mut self) {
        self.done += 1;
        match &self.bar {
            Some(bar) => bar.inc(1),
            None if self.last_line.elapsed() >= PROGRESS_EVERY => {
                self.last_line = Instant::now();
                let rate = self.done as f64 / self.started.elapsed().as_secs_f64();
                let eta = (self.total - self.done) as f64 / rate.max(1e-9);
                eprintln!(
                    "classify: {}/{} images, {rate:.1} images/s, ETA {eta:.0} s",
                    self.done, self.total
                );
            }
            None => {}
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// The end of a run, for the closing line.
#[derive(Debug, Default)]
pub struct Summary {
    pub classified: usize,
    /// Failures by error type (the API's words, or `unreadable`).
    pub failed: BTreeMap<String, usize>,
    /// Images that already had a record (--resume).
    pub skipped: usize,
    pub seconds: f64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let failed: usize = self.failed.values().sum();
        let done = self.classified + failed;
        write!(
            f,
            "classify: {done} images in {:.2} s ({:.1} images/s): {} classified, {failed} failed",
            self.seconds,
            done as f64 / self.seconds.max(1e-9),
            self.classified
        )?;
        for (reason, n) in &self.failed {
            write!(f, " [{reason}: {n}]")?;
        }
        if self.skipped > 0 {
            write!(f, "; {} already in the output (--resume)", self.skipped)?;
        }
        Ok(())
    }
}
