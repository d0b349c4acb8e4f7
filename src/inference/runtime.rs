//! Finding and loading ONNX Runtime's shared library (`ort` with `load-dynamic`), once per
//! process, and the environment every session is built in.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

use super::InferenceError;

/// The library file `scripts/setup-ort.sh` extracts from the pinned PyPI wheel.
pub const ORT_LIBRARY: &str = "libonnxruntime.so.1.31.1";
/// The command that fetches it, printed when it is missing.
pub const SETUP_COMMAND: &str = "scripts/setup-ort.sh   (or: make setup)";

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();
static LOADED: OnceLock<PathBuf> = OnceLock::new();

/// Where the library is: `explicit` (the `--ort-dylib` flag), then `ORT_DYLIB_PATH`, then
/// `.ort/` in the working directory or beside an ancestor of the executable (a cargo build).
pub fn locate_library(explicit: Option<&Path>) -> Result<PathBuf, InferenceError> {
    let mut candidates: Vec<PathBuf> = explicit.map(Path::to_path_buf).into_iter().collect();
    if let Some(env) = std::env::var_os("ORT_DYLIB_PATH") {
        candidates.push(env.into());
    }
    if explicit.is_none() {
        candidates.push(Path::new(".ort").join(ORT_LIBRARY));
        if let Ok(exe) = std::env::current_exe() {
            candidates.extend(
                exe.ancestors()
                    .skip(1)
                    .map(|dir| dir.join(".ort").join(ORT_LIBRARY)),
            );
        }
        candidates.push(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(".ort")
                .join(ORT_LIBRARY),
        );
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    // An explicit path or ORT_DYLIB_PATH that does not exist is an error, not a fallback.
    let authoritative = explicit.is_some() || std::env::var_os("ORT_DYLIB_PATH").is_some();
    let found = if authoritative {
        candidates.into_iter().next().filter(|p| p.is_file())
    } else {
        candidates.into_iter().find(|p| p.is_file())
    };
    found.ok_or_else(|| InferenceError::LibraryMissing {
        tried: tried.join(", "),
    })
}

/// Loads the library and builds the process-wide environment (first call wins).
pub fn environment(explicit: Option<&Path>) -> Result<&'static Environment, InferenceError> {
    let result = ENVIRONMENT.get_or_init(|| {
        let path = locate_library(explicit).map_err(|e| e.to_string())?;
        tracing::debug!(library = %path.display(), "loading ONNX Runtime");
        let _ = LOADED.set(path.clone());
        ort::init_from(&path)
            .map_err(|e| format!("cannot load {}: {e}", path.display()))?
            .with_name("repvgg-serve")
            .build()
            .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))
    });
    result
        .as_ref()
        .map_err(|message| InferenceError::Runtime(message.clone()))
}

/// Which runtime build is loaded: the library's file name (it carries the version, e.g.
/// `libonnxruntime.so.1.31.1`) and ONNX Runtime's build string (commit, build type). `None`
/// before [`environment`] succeeded.
pub fn loaded_build() -> Option<String> {
    ENVIRONMENT.get()?.as_ref().ok()?;
    let name = LOADED.get()?.file_name()?.to_string_lossy().into_owned();
    Some(format!("{name} | {}", ort::info()))
}
