//! Request measurements: each answer of a router reported to the service's metrics sink, by front door and
//! status, with its latency (to the response head; the bodies are small JSON).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use dps_core::metrics::{FrontDoor, Metrics};

/// `router` reporting each request to `metrics`. `front_door` names the API it serves; `None` for the router
/// of both APIs ([`crate::app`]), where the path decides as the dispatch does. Wrap the deadline layer too, so
/// that its 503s are counted.
pub fn with_request_metrics(router: Router, front_door: Option<FrontDoor>, metrics: Arc<dyn Metrics>) -> Router {
    router.layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let metrics = metrics.clone();
        async move {
            let door = front_door.unwrap_or_else(|| {
                if crate::is_service_path(req.uri().path()) { FrontDoor::Service } else { FrontDoor::Device }
            });
            let started = Instant::now();
            let response = next.run(req).await;
            metrics.request(door, response.status().as_u16(), started.elapsed());
            response
        }
    }))
}
