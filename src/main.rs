//! The `repvgg-serve` binary: parse flags, set up logging, run the subcommand.

use std::process::ExitCode;

use clap::Parser;
use repvgg_serve::config::ServeConfig;
use repvgg_serve::config::{ClassifyArgs, Cli, Command, LogFormat};
use repvgg_serve::inference::Precision;
use repvgg_serve::telemetry::Telemetry;
use repvgg_serve::{commands, compare, server};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

fn main() -> ExitCode {
    repvgg_serve::memory::fix_mmap_threshold();
    let cli = Cli::parse();
    match run(cli.command, cli.log_format) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, log_format: LogFormat) -> anyhow::Result<()> {
    if let Command::Serve(args) = command {
        let config = args.validate().map_err(anyhow::Error::msg)?;
        return serve(config, log_format);
    }
    init_tracing(log_format, None);
    if let Command::Classify(args) = command {
        return classify(*args);
    }
    match command {
        Command::Serve(_) | Command::Classify(_) => unreachable!("run above"),
        Command::Export {
            checkpoint,
            output,
            unfused,
        } => commands::export(&checkpoint, &output, unfused),
        Command::Inspect {
            checkpoint,
            variant,
            sessions,
            max_batch_size,
        } => {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            let inspection = commands::inspect(
                checkpoint.as_deref(),
                variant.as_deref(),
                sessions.unwrap_or(cores.min(2)),
                max_batch_size,
            )?;
            println!("{}", serde_json::to_string_pretty(&inspection)?);
            Ok(())
        }
        Command::Compare {
            checkpoint,
            images,
            precision,
            json,
            cache_dir,
            ort_dylib,
        } => {
            if precision != Precision::Bf16 {
                anyhow::bail!("compare: fp32 is the reference; compare it with --precision bf16");
            }
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            let report = compare::compare(
                &checkpoint,
                &images,
                Some(&cache_dir),
                ort_dylib.as_deref(),
                cores,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(())
        }
        Command::Probe {
            port,
            path,
            timeout_ms,
            tls_cert,
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let status = runtime.block_on(commands::probe(
                port,
                &path,
                tls_cert.as_deref(),
                std::time::Duration::from_millis(timeout_ms),
            ))?;
            println!("{path}: {status}");
            Ok(())
        }
        Command::Init {
            variant,
            output,
            seed,
            num_classes,
        } => commands::init(&variant, &output, seed, num_classes),
    }
}

/// `serve`: logging (and, when configured, the trace exporter, which lives on the runtime),
/// then the service until SIGTERM/SIGINT.
fn serve(config: ServeConfig, log_format: LogFormat) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let telemetry = {
        let _inside = runtime.enter();
        config.traces.as_ref().map(Telemetry::start).transpose()?
    };
    init_tracing(
        log_format,
        telemetry
            .as_ref()
            .map(|t| Box::new(t.layer()) as BoxedLayer),
    );
    if let Some(traces) = &config.traces {
        tracing::info!(endpoint = %traces.endpoint, service = %traces.service_name, "exporting traces (OTLP/gRPC)");
    }
    runtime.block_on(async {
        let app = server::App::start(config.clone()).await?;
        if let Some(telemetry) = &telemetry {
            app.follow_trace_export(telemetry.counts());
        }
        let bind = |addr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
        };
        let listener = bind(config.addr).await?;
        let grpc = match config.grpc_addr {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let admin = match config.admin_addr {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        if let Some(grpc) = &grpc {
            tracing::info!(addr = %grpc.local_addr()?, "gRPC listening");
        }
        if let Some(admin) = &admin {
            tracing::info!(addr = %admin.local_addr()?, "admin listening");
        }
        tracing::info!(addr = %listener.local_addr()?, "listening");
        if config.ui {
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            let page = listener.local_addr()?;
            tracing::info!("try it in a browser: {scheme}://{page}/");
            if let Some(admin) = &admin {
                tracing::info!(
                    "live dashboard: {scheme}://{}/dashboard",
                    admin.local_addr()?
                );
            }
        }
        if config.access.api_keys_file.is_none() && !config.addr.ip().is_loopback() {
            tracing::warn!(
                host = %config.addr.ip(),
                "no --api-keys-file: every client that reaches these ports may call \
                 every route (and the admin listener's metrics); set keys or listen \
                 on 127.0.0.1"
            );
        }
        let listeners = server::Listeners {
            http: listener,
            grpc,
            admin,
        };

        let served = app.run(listeners, server::shutdown_signal()).await;
        if let Some(telemetry) = telemetry {
            telemetry.finish(std::time::Duration::from_secs(5)).await;
        }
        served
    })
}

/// `classify`: the pipeline in this process (or the server at `--url`), the job, the summary
/// on stderr.
fn classify(args: ClassifyArgs) -> anyhow::Result<()> {
    use commands::classify::{run, Classifier};
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let job = &args.job;
        let summary = match &job.url {
            Some(url) => {
                let remote =
                    commands::classify::Remote::connect(url, job.api_key.as_deref()).await?;
                run(job, Classifier::Remote(Box::new(remote))).await?
            }
            None => {
                let config = args.pipeline.config().map_err(anyhow::Error::msg)?;
                let app = server::App::start(config).await?;
                let all = app.state.models.all();
                let [served] = &all[..] else {
                    anyhow::bail!(
                        "classify runs one model version; the repository serves {}: pass \
                         --checkpoint or --model instead",
                        all.len()
                    );
                };
                run(job, Classifier::Local(served, app.state.limits)).await?
            }
        };
        eprintln!("{summary}");
        Ok(())
    })
}

/// Logs to stderr: plain or JSON lines; level from `RUST_LOG` (default `info`). `traces`, the
/// OpenTelemetry layer, has its own filter (our spans only).
fn init_tracing(format: LogFormat, traces: Option<BoxedLayer>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs: BoxedLayer = match format {
        LogFormat::Plain => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_filter(filter)
            .boxed(),
    };
    let mut layers = vec![logs];
    layers.extend(traces);
    tracing_subscriber::registry().with(layers).init();
}
