//! The v2 repository extension on the admin listener, as Triton serves it and `tritonclient`
//! calls it (`get_model_repository_index`, `load_model`, `unload_model`): thin adapters to
//! [`crate::models::Control`]. Loading never takes files or a configuration from the request
//! (Triton's `parameters.config` and `file:` uploads): only what is in the repository loads.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::models::IndexEntry;
use crate::service::AppState;
use crate::service::ServiceError;

/// Largest body of a repository call (`{"ready": true}`, `{"parameters": {...}}`).
pub const MAX_BODY: usize = 64 << 10;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexRequest {
    /// Only the versions that are ready.
    #[serde(default)]
    ready: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlRequest {
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// An empty body is `{}`; anything else must be the JSON the route takes.
fn parse<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ServiceError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ServiceError::BadRequest(format!("request body: {e}")))
}

/// `POST /v2/repository/index`: every version in the repository and every served one, with
/// its state (`READY`, `UNAVAILABLE`) and the reason it is not served.
pub async fn index(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Vec<IndexEntry>>, ServiceError> {
    let request: IndexRequest = parse(&body)?;
    Ok(Json(state.control.index(request.ready)))
}

/// `POST /v2/repository/models/{model}/load`: loads or reloads the model from the repository
/// and answers once its versions serve (or why not, with the old ones still serving).
pub async fn load(
    State(state): State<AppState>,
    Path(model): Path<String>,
    body: Bytes,
) -> Result<Json<Map<String, Value>>, ServiceError> {
    let request: ControlRequest = parse(&body)?;
    let parameters = request.parameters.keys().map(String::as_str);
    state.control.load(&model, parameters).await?;
    Ok(Json(Map::new()))
}

/// `POST /v2/repository/models/{model}/unload`: stops serving every version of the model;
/// requests already on them are answered first.
pub async fn unload(
    State(state): State<AppState>,
    Path(model): Path<String>,
    body: Bytes,
) -> Result<Json<Map<String, Value>>, ServiceError> {
    let request: ControlRequest = parse(&body)?;
    let parameters = request.parameters.keys().map(String::as_str);
    state.control.unload(&model, parameters).await?;
    Ok(Json(Map::new()))
}
