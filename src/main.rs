//! The `repvgg-serve` binary: parse flags, set up logging, run the subcommand.

use std::process::ExitCode;

use clap::Parser;
use repvgg_serve::config::{Cli, Command, LogFormat};
use repvgg_serve::inference::Precision;
use repvgg_serve::{commands, compare, server};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            let config = args.validate().map_err(anyhow::Error::msg)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let app = server::App::start(config.clone()).await?;
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
                app.run(listeners, server::shutdown_signal()).await
            })
        }
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

/// Logs to stderr: plain or JSON lines; level from `RUST_LOG` (default `info`).
fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}
