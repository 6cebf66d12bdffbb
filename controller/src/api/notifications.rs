//! `GET /v1/notifications/deliveries`: recent webhook deliveries and how
//! they ended (viewer role).

use axum::Json;
use axum::extract::State;
use baton_proto::notify::{DeliveryList, DeliveryState};
use serde::Deserialize;

use super::auth::Viewer;
use super::{ApiError, AppState, QueryParams};

/// Query of `GET /v1/notifications/deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    state: Option<DeliveryState>,
    before: Option<i64>,
    limit: Option<u32>,
}

/// `GET /v1/notifications/deliveries`: newest first.
pub async fn deliveries(
    State(s): State<AppState>,
    _viewer: Viewer,
    QueryParams(q): QueryParams<DeliveryQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    let limit = super::page_limit(q.limit)?;
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::bad_request(
            "must be a positive delivery id",
            Some("before".into()),
        ));
    }
    Ok(Json(
        s.store.list_deliveries(q.state, q.before, limit).await?,
    ))
}
