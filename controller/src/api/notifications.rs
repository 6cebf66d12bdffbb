//! `GET /v1/notifications/deliveries`: recent webhook deliveries and how
//! they ended (viewer role).

use axum::Json;
use axum::extract::State;
use baton_proto::notify::{DeliveryList, DeliveryState};
use serde::Deserialize;

use super::auth::Viewer;
use super::{ApiError, AppState, QueryParams};

/// Query of `GET /v1/notifications/deliveries`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only deliveries in this state.
    state: Option<DeliveryState>,
    /// Only deliveries with a smaller id (the previous page's `next_before`).
    #[param(minimum = 1)]
    before: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// `GET /v1/notifications/deliveries`: newest first.
#[utoipa::path(
    get,
    operation_id = "list_notification_deliveries",
    path = "/v1/notifications/deliveries",
    tag = "notifications",
    params(DeliveryQuery),
    responses((status = 200, description = "Webhook deliveries, newest first", body = DeliveryList)),
    security(("operator_token" = ["viewer"]))
)]
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
