//! When an open-loop run sends its requests: as a Poisson process (independent arrivals,
//! exponentially distributed gaps; the default, because real clients arrive in bursts) or
//! evenly spaced (every `1/rate` seconds; the best case for the server). Poisson schedules are
//! drawn from a seeded generator, so a run can be repeated arrival for arrival.

use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};

/// How arrivals are spaced.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Arrivals {
    /// Exponential gaps with mean `1/rate`, from this seed.
    Poisson { seed: u64 },
    /// One every `1/rate` seconds.
    Even,
}

/// The intended send times of a run, as offsets from its start.
#[derive(Debug)]
pub struct Schedule {
    rate: f64,
    gaps: Option<(Exp<f64>, ChaCha8Rng)>,
    sent: u64,
    at: f64,
}

impl Schedule {
    /// `rate` must be positive (checked by the caller).
    pub fn new(rate: f64, arrivals: Arrivals) -> Self {
        let gaps = match arrivals {
            Arrivals::Poisson { seed } => Some((
                Exp::new(rate).expect("a positive rate"),
                ChaCha8Rng::seed_from_u64(seed),
            )),
            Arrivals::Even => None,
        };
        Self {
            rate,
            gaps,
            sent: 0,
            at: 0.0,
        }
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let offset = match &mut self.gaps {
            Some((exp, rng)) => {
                let at = self.at;
                self.at += exp.sample(rng);
                at
            }
            // From the count, not a running sum: no drift over long runs.
            None => self.sent as f64 / self.rate,
        };
        self.sent += 1;
        Some(Duration::from_secs_f64(offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean and coefficient of variation of the gaps between `n` arrivals.
    fn gap_stats(rate: f64, arrivals: Arrivals, n: usize) -> (f64, f64) {
        let times: Vec<f64> = Schedule::new(rate, arrivals)
            .take(n)
            .map(|d| d.as_secs_f64())
            .collect();
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn poisson_gaps_have_the_rates_mean_and_a_coefficient_of_variation_of_one() {
        let (mean, cv) = gap_stats(40.0, Arrivals::Poisson { seed: 7 }, 50_000);
        assert!((mean - 1.0 / 40.0).abs() < 0.02 / 40.0, "mean gap {mean}");
        // An exponential distribution's standard deviation equals its mean.
        assert!((cv - 1.0).abs() < 0.03, "coefficient of variation {cv}");
    }

    #[test]
    fn even_arrivals_are_evenly_spaced() {
        let (mean, cv) = gap_stats(40.0, Arrivals::Even, 1_000);
        assert!((mean - 0.025).abs() < 1e-9, "mean gap {mean}");
        assert!(cv < 1e-6, "coefficient of variation {cv}");
    }

    #[test]
    fn a_seed_repeats_its_schedule_and_another_seed_does_not() {
        let take = |seed| -> Vec<Duration> {
            Schedule::new(10.0, Arrivals::Poisson { seed })
                .take(100)
                .collect()
        };
        assert_eq!(take(1), take(1));
        assert_ne!(take(1), take(2));
    }
}
