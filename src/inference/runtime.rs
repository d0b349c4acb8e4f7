//! Finding and loading ONNX Runtime's shared library (`ort` with `load-dynamic`), once per
//! process, and the environment every session is built in.
//!
//! Two builds are used: the `onnxruntime` wheel's library for fp32 (CPU execution provider),
//! and the `onnxruntime-openvino` wheel's for bf16 (OpenVINO execution provider; its CPU
//! provider also computes the fp32 reference bf16 is checked against). A process loads one.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

use super::InferenceError;

/// Which ONNX Runtime build a process runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `onnxruntime==1.31.1`: CPU execution provider (MLAS), fp32.
    Cpu,
    /// `onnxruntime-openvino==1.24.1`: OpenVINO execution provider, bf16.
    OpenVino,
}

impl Runtime {
    /// The library file its setup script extracts from the pinned PyPI wheel.
    pub fn library(self) -> &'static str {
        match self {
            Self::Cpu => "libonnxruntime.so.1.31.1",
            Self::OpenVino => "libonnxruntime.so.1.24.1",
        }
    }

    /// The folder (in the checkout) its setup script fills.
    fn folder(self) -> &'static str {
        match self {
            Self::Cpu => ".ort",
            Self::OpenVino => ".ort-openvino",
        }
    }

    /// The environment variable that names its library file (the container image sets both).
    fn env_var(self) -> &'static str {
        match self {
            Self::Cpu => "ORT_DYLIB_PATH",
            Self::OpenVino => "ORT_OPENVINO_DYLIB_PATH",
        }
    }

    /// The command that fetches it, printed when it is missing.
    pub fn setup_command(self) -> &'static str {
        match self {
            Self::Cpu => "scripts/setup-ort.sh   (or: make setup)",
            Self::OpenVino => "scripts/setup-ort-openvino.sh",
        }
    }
}

static ENVIRONMENT: OnceLock<(Runtime, Result<Environment, String>)> = OnceLock::new();
static LOADED: OnceLock<PathBuf> = OnceLock::new();

/// Where the library is: `explicit` (the `--ort-dylib` flag), then `ORT_DYLIB_PATH`
/// (`ORT_OPENVINO_DYLIB_PATH` for OpenVINO), then `.ort/` (`.ort-openvino/`) in the working
/// directory or beside an ancestor of the executable (a cargo build).
pub fn locate_library(
    explicit: Option<&Path>,
    runtime: Runtime,
) -> Result<PathBuf, InferenceError> {
    let (folder, library) = (runtime.folder(), runtime.library());
    let mut candidates: Vec<PathBuf> = explicit.map(Path::to_path_buf).into_iter().collect();
    if let Some(env) = std::env::var_os(runtime.env_var()) {
        candidates.push(env.into());
    }
    if explicit.is_none() {
        candidates.push(Path::new(folder).join(library));
        if let Ok(exe) = std::env::current_exe() {
            candidates.extend(
                exe.ancestors()
                    .skip(1)
                    .map(|dir| dir.join(folder).join(library)),
            );
        }
        candidates.push(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(folder)
                .join(library),
        );
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    // An explicit path or ORT_DYLIB_PATH that does not exist is an error, not a fallback.
    let authoritative = explicit.is_some() || std::env::var_os(runtime.env_var()).is_some();
    let found = if authoritative {
        candidates.into_iter().next().filter(|p| p.is_file())
    } else {
        candidates.into_iter().find(|p| p.is_file())
    };
    found.ok_or_else(|| InferenceError::LibraryMissing {
        library,
        tried: tried.join(", "),
        command: runtime.setup_command(),
    })
}

/// Loads the library and builds the process-wide environment (the first call loads it; a later
/// call asking for the other build is an error: one runtime per process).
pub fn environment(
    explicit: Option<&Path>,
    runtime: Runtime,
) -> Result<&'static Environment, InferenceError> {
    let (loaded, result) = ENVIRONMENT.get_or_init(|| {
        let build = || {
            let path = locate_library(explicit, runtime).map_err(|e| e.to_string())?;
            tracing::debug!(library = %path.display(), "loading ONNX Runtime");
            let _ = LOADED.set(path.clone());
            ort::init_from(&path)
                .map_err(|e| format!("cannot load {}: {e}", path.display()))?
                .with_name("repvgg-serve")
                .build()
                .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))
        };
        (runtime, build())
    });
    if *loaded != runtime {
        return Err(InferenceError::Runtime(format!(
            "this process already runs {} ({:?}); {} ({runtime:?}) cannot be loaded beside it",
            loaded.library(),
            loaded,
            runtime.library()
        )));
    }
    result
        .as_ref()
        .map_err(|message| InferenceError::Runtime(message.clone()))
}

/// Which runtime build is loaded: the library's file name (it carries the version, e.g.
/// `libonnxruntime.so.1.31.1`) and ONNX Runtime's build string (commit, build type). `None`
/// before [`environment`] succeeded.
pub fn loaded_build() -> Option<String> {
    ENVIRONMENT.get()?.1.as_ref().ok()?;
    let name = LOADED.get()?.file_name()?.to_string_lossy().into_owned();
    Some(format!("{name} | {}", ort::info()))
}
