//! The admin HTTP listener: `/metrics` (OpenMetrics text) and `/healthz` (readiness).

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

/// Whether a node is ready to serve, for `/healthz`.
#[derive(Debug, Default)]
pub struct Health {
    /// The cluster glue, once a cluster node's control plane runs.
    pub cluster: OnceLock<Arc<crate::cluster::Glue>>,
    /// Whether the node runs in cluster mode.
    pub cluster_mode: bool,
}

impl Health {
    /// `Ok(what the node is)` when it can serve its part, `Err(why not)` otherwise.
    pub fn check(&self) -> Result<String, String> {
        if !self.cluster_mode {
            return Ok("ok".into());
        }
        match self.cluster.get() {
            Some(glue) => glue.readiness(),
            None => Err("the cluster control plane is starting".into()),
        }
    }
}

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    health: Arc<Health>,
    node: Arc<command::Node>,
}

/// Builds the admin router: `/metrics`, `/healthz`, and the dashboard (`/`, `/api/cluster`,
/// `/api/node`).
pub fn router(registry: Arc<Registry>, health: Arc<Health>, node: Arc<command::Node>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/", get(page))
        .route("/api/cluster", get(api_cluster))
        .route("/api/node", get(api_node))
        .with_state(AdminState {
            registry,
            health,
            node,
        })
}

async fn page() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        crate::dashboard::PAGE,
    )
}

/// JSON the dashboard page may fetch from another node's admin port.
fn api(value: serde_json::Value) -> axum::response::Response {
    (
        [
            (CONTENT_TYPE, "application/json"),
            (axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        value.to_string(),
    )
        .into_response()
}

async fn api_cluster(State(state): State<AdminState>) -> axum::response::Response {
    api(match state.health.cluster.get() {
        Some(glue) => glue.dashboard_cluster(),
        None => serde_json::json!({ "cluster": false }),
    })
}

async fn api_node(State(state): State<AdminState>) -> axum::response::Response {
    let cluster = state.health.cluster.get().map(|g| g.dashboard_node());
    api(crate::dashboard::node_json(&state.node, cluster))
}

/// `200 ok` when the node can serve its part: any node outside cluster mode; in a cluster, a
/// primary holding its write lease, a replica in sync with its primary, or a spare. `503`
/// with the reason otherwise (a node in no cluster yet, a primary cut off from the leader, a
/// replica still syncing), so an orchestrator sends no traffic to it and waits for it in a
/// rolling update.
async fn healthz(State(state): State<AdminState>) -> impl IntoResponse {
    match state.health.check() {
        Ok(what) if what == "ok" => (axum::http::StatusCode::OK, "ok\n".to_string()),
        Ok(what) => (axum::http::StatusCode::OK, format!("ok: {what}\n")),
        Err(why) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let registry = state.registry;
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "encoding failed\n",
        )
            .into_response(),
    }
}
