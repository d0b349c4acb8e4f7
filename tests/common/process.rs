//! The real binary as a child process: started on 127.0.0.1:0 with JSON logs, its address read
//! from its "listening" line, its log lines collected, and killed when dropped (a failed
//! assertion never leaves a server running).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct ServerProcess {
    pub child: Child,
    pub addr: String,
    /// The gRPC address, when the arguments turned gRPC on (`--grpc-port`).
    pub grpc_addr: Option<String>,
    /// The admin listener's address, when the arguments turned it on (`--admin-port`).
    pub admin_addr: Option<String>,
    logs: Option<JoinHandle<Vec<String>>>,
}

impl ServerProcess {
    /// `repvgg-serve --log-format json serve --host 127.0.0.1 --port 0 --no-cache <args>`,
    /// with `--grpc-port 0` (gRPC off) and `--admin-port 0` (admin listener off) unless `args`
    /// give those ports.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// [`Self::start`] with environment variables added to the process's.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let grpc_off: &[&str] = if args.contains(&"--grpc-port") {
            &[]
        } else {
            &["--grpc-port", "0"]
        };
        let admin_off: &[&str] = if args.contains(&"--admin-port") {
            &[]
        } else {
            &["--admin-port", "0"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_repvgg-serve"))
            .args(["--log-format", "json", "serve"])
            .args(super::LOCAL_SERVE)
            .args(grpc_off)
            .args(admin_off)
            .args(args)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn repvgg-serve");
        let stderr = child.stderr.take().expect("stderr");
        // The server logs "gRPC listening" and "admin listening" before "listening".
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let logs = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let message = v["fields"]["message"].as_str().unwrap_or_default();
                    if message.ends_with("listening") {
                        let addr = v["fields"]["addr"].as_str().unwrap_or_default();
                        let _ = addr_tx.send((message.to_owned(), addr.to_owned()));
                    }
                }
                lines.push(line);
            }
            lines
        });
        let (mut grpc_addr, mut admin_addr) = (None, None);
        let addr = loop {
            let (message, addr) = addr_rx
                .recv_timeout(Duration::from_secs(60))
                .expect("server listening");
            match message.as_str() {
                "gRPC listening" => grpc_addr = Some(addr),
                "admin listening" => admin_addr = Some(addr),
                _ => break addr,
            }
        };
        Self {
            child,
            addr,
            grpc_addr,
            admin_addr,
            logs: Some(logs),
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
    }

    /// Waits for the process to exit; its status and every log line it wrote.
    pub fn wait(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.child.wait().expect("exit status");
        let logs = self.logs.take().expect("logs").join().expect("log reader");
        (status, logs)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A memory figure of `/proc/<pid>/status` (`pid` may be `self`), e.g. `VmRSS`, `VmHWM`, in bytes.
pub fn proc_status_bytes(pid: &str, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"));
    kb * 1024
}
