//! The gRPC door's message limit under model control: it follows the models served now, so a
//! model loaded with a larger input raises it and unloading the model lowers it again
//! (`src/grpc/message_limit.rs`). Model control itself: tests/model_control.rs.

mod common;

use common::grpc::{call, tensor_request, Answer, MODEL_INFER};
use common::repository::{control, explicit_with, put_version};
use common::*;
use serde_json::json;

/// The gRPC message limit follows the models served: 64 tensors of the largest input served (or
/// `--max-body-bytes`). A model loaded later with a larger crop takes a full batch of its
/// tensors; once it is unloaded, the same message is refused again at its length prefix with
/// RESOURCE_EXHAUSTED naming both sizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_message_limit_follows_the_models_loaded_and_unloaded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let train = std::fs::read(fixture("checkpoints/tiny_official_train.pth")).expect("fixture");
    let with_crop = |model: &str, crop: u32| {
        put_version(dir.path(), model, 1, &train);
        let config = json!({"resize": crop, "crop": crop}).to_string();
        std::fs::write(dir.path().join(model).join("config.json"), config).expect("config");
    };
    with_crop("small", 32);
    let server = explicit_with(dir.path(), &["--max-body-bytes", "65536"]).await;
    let grpc = server.grpc_addr.to_string();
    // 64 tensors of 3x32x32 floats, plus 64 KiB of headroom.
    let small_limit = 64 * 3 * 32 * 32 * 4 + 65536;
    let small_batch = tensor_request("small-tensor", &[64, 3, 32, 32]);
    assert_eq!(call(&grpc, MODEL_INFER, &small_batch, &[]).await.status, 0);
    let wide_batch = tensor_request("wide-tensor", &[64, 3, 96, 96]);
    let refused = |answer: Answer| {
        assert_eq!(answer.status, 8, "RESOURCE_EXHAUSTED: {answer:?}");
        let found = format!("found {} bytes", wide_batch.len());
        let limit = format!("the limit is: {small_limit} bytes");
        assert!(
            answer.message.contains(&found) && answer.message.contains(&limit),
            "{}",
            answer.message
        );
    };
    refused(call(&grpc, MODEL_INFER, &wide_batch, &[]).await);

    with_crop("wide", 96);
    let (status, answer) = control(&server, "/v2/repository/models/wide/load", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    let answered = call(&grpc, MODEL_INFER, &wide_batch, &[]).await;
    assert_eq!(answered.status, 0, "{answered:?}");
    assert_eq!(call(&grpc, MODEL_INFER, &small_batch, &[]).await.status, 0);

    let (status, answer) = control(&server, "/v2/repository/models/wide/unload", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    refused(call(&grpc, MODEL_INFER, &wide_batch, &[]).await);
    server.stop().await;
}
