//! `loadtest`: closed- or open-loop load against repvgg-serve (or any image endpoint).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use loadtest::report::Answer;
use loadtest::{run, sweep, Arrivals, Bodies, ClientOptions, Encoding, Mode, Report, RunConfig};

#[derive(Parser)]
#[command(about = "Honest HTTP load generator: open loop without coordinated omission")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One bounded run.
    Run {
        #[command(flatten)]
        common: Common,
        /// Closed loop with this many concurrent clients.
        #[arg(long, conflicts_with = "rate", required_unless_present = "rate")]
        concurrency: Option<usize>,
        /// Open loop at this many requests per second (on average; see --arrivals).
        #[arg(long)]
        rate: Option<f64>,
        #[command(flatten)]
        arrivals: ArrivalArgs,
        /// Write every answer here as CSV (intended send time and latency in ms, status, the
        /// model version that answered), after a `# started_unix_ms=N` line.
        #[arg(long)]
        timeline: Option<PathBuf>,
    },
    /// Open-loop steps at rising rates; writes the curve as JSON and SVG.
    Sweep {
        #[command(flatten)]
        common: Common,
        /// Comma-separated arrival rates (requests/s).
        #[arg(long, value_delimiter = ',', required = true)]
        rates: Vec<f64>,
        /// SVG chart of throughput vs p50/p99 latency.
        #[arg(long)]
        svg: Option<PathBuf>,
        #[command(flatten)]
        arrivals: ArrivalArgs,
    },
    /// One SVG chart of several sweeps side by side (from their JSON files).
    Chart {
        /// `NAME=SWEEP.json`, one per curve.
        #[arg(long = "series", required = true, value_parser = parse_series)]
        series: Vec<(String, PathBuf)>,
        #[arg(long, default_value = "throughput vs latency")]
        title: String,
        #[arg(long)]
        output: PathBuf,
    },
}

/// How open-loop arrivals are spaced.
#[derive(Args)]
struct ArrivalArgs {
    /// `poisson`: independent arrivals (exponential gaps), bursty like real clients; `even`:
    /// one every 1/rate seconds.
    #[arg(long, value_enum, default_value_t = Spacing::Poisson)]
    arrivals: Spacing,
    /// Seed of the Poisson schedule (the same seed repeats a run arrival for arrival).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Spacing {
    Poisson,
    Even,
}

impl ArrivalArgs {
    fn arrivals(&self) -> Arrivals {
        match self.arrivals {
            Spacing::Poisson => Arrivals::Poisson { seed: self.seed },
            Spacing::Even => Arrivals::Even,
        }
    }
}

fn parse_series(arg: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=FILE.json, got {arg:?}"))?;
    Ok((name.to_owned(), PathBuf::from(path)))
}

#[derive(Args)]
struct Common {
    #[arg(long, default_value = "http://127.0.0.1:8080/classify")]
    url: String,
    /// An image file or a folder of images (cycled).
    #[arg(long)]
    images: PathBuf,
    #[arg(long, value_enum, default_value_t = Encoding::Raw)]
    encoding: Encoding,
    /// Seconds to send for (per step for a sweep).
    #[arg(long)]
    duration: Option<f64>,
    /// Requests to send at most.
    #[arg(long)]
    requests: Option<u64>,
    /// Per-request timeout (s).
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Write the results as JSON here.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Allow a non-loopback target.
    #[arg(long)]
    allow_remote: bool,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
    /// A header for every request, `NAME: VALUE` (repeatable), e.g.
    /// `--header "Authorization: Bearer $KEY"`.
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Trust this CA (PEM) for an `https://` URL.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

fn parse_header(arg: &str) -> Result<(String, String), String> {
    let (name, value) = arg
        .split_once(':')
        .ok_or_else(|| format!("expected `NAME: VALUE`, got {arg:?}"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

impl Common {
    fn config(&self, mode: Mode) -> anyhow::Result<RunConfig> {
        let ca_cert = self
            .ca_cert
            .as_ref()
            .map(|path| std::fs::read(path).with_context(|| format!("reading {}", path.display())))
            .transpose()?;
        Ok(RunConfig {
            url: self.url.clone(),
            mode,
            encoding: self.encoding,
            duration: self.duration.map(Duration::from_secs_f64),
            requests: self.requests,
            timeout: Duration::from_secs_f64(self.timeout),
            progress: !self.quiet,
            allow_remote: self.allow_remote,
            client: ClientOptions {
                headers: self.headers.clone(),
                ca_cert,
            },
            timeline: false,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run {
            common,
            concurrency,
            rate,
            arrivals,
            timeline,
        } => {
            let mode = match (concurrency, rate) {
                (Some(concurrency), _) => Mode::Closed { concurrency },
                (None, Some(rate)) => Mode::Open {
                    rate,
                    arrivals: arrivals.arrivals(),
                },
                (None, None) => unreachable!("clap requires one"),
            };
            let bodies = Arc::new(Bodies::load(&common.images)?);
            let config = RunConfig {
                timeline: timeline.is_some(),
                ..common.config(mode)?
            };
            let report = run(&config, bodies).await?;
            println!("{}", report.summary());
            if let Some(path) = &common.output {
                std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
            }
            if let Some(path) = &timeline {
                let csv = Answer::csv(report.started_unix_ms, &report.timeline);
                std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::Sweep {
            common,
            rates,
            svg,
            arrivals,
        } => {
            let bodies = Arc::new(Bodies::load(&common.images)?);
            let base = RunConfig {
                progress: false,
                ..common.config(Mode::Open {
                    rate: 1.0,
                    arrivals: arrivals.arrivals(),
                })?
            };
            let reports = sweep::sweep(&base, &rates, bodies).await?;
            if let Some(path) = &common.output {
                std::fs::write(path, serde_json::to_string_pretty(&reports)?)?;
            }
            if let Some(path) = &svg {
                std::fs::write(path, sweep::svg(&common.url, &[("target", &reports)]))?;
            }
        }
        Command::Chart {
            series,
            title,
            output,
        } => {
            let mut loaded = Vec::new();
            for (name, path) in &series {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let reports: Vec<Report> = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a sweep's JSON", path.display()))?;
                loaded.push((name.as_str(), reports));
            }
            let refs: Vec<(&str, &[Report])> =
                loaded.iter().map(|(n, r)| (*n, r.as_slice())).collect();
            std::fs::write(&output, sweep::svg(&title, &refs))?;
        }
    }
    Ok(())
}
