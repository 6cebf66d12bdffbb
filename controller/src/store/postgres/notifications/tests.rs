//! Notifications with two replicas on one database: each event is fanned
//! out once and each delivery claimed by one replica.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::Store;
use crate::store::notifications::{NewNotification, Route};
use crate::store::postgres::testutil::two_replicas;

#[tokio::test]
async fn two_replicas_fan_out_each_event_once_and_never_claim_a_delivery_twice() {
    let Some((a, b, _guard)) = two_replicas().await else {
        return;
    };
    let (sa, sb) = (Store::new(a), Store::new(b));
    let n = 200;
    for i in 0..n {
        let e = NewNotification {
            event: "agent_offline".into(),
            dedup: format!("agent_offline:a{i}:0"),
            subject: format!("a{i}"),
            groups: vec!["g".into()],
            labels: BTreeMap::new(),
            detail: serde_json::json!({}),
            at: 0,
        };
        sa.notify(&e).await.expect("notify");
    }
    let routes = vec![Route {
        name: "all".into(),
        events: vec![],
        groups: vec![],
        labels: BTreeMap::new(),
    }];
    let fan = |s: Store, routes: Vec<Route>| async move {
        let mut total = 0;
        loop {
            let k = s.fan_out(&routes, 10, 7).await.expect("fan out");
            if k == 0 {
                return total;
            }
            total += k;
        }
    };
    let (fa, fb) = tokio::join!(fan(sa.clone(), routes.clone()), fan(sb.clone(), routes));
    assert_eq!(fa + fb, n, "each event fanned out once ({fa} + {fb})");
    let claim = |s: Store| async move {
        let mut ids = Vec::new();
        loop {
            let c = s.claim_deliveries(100, 60_000, 5).await.expect("claim");
            if c.is_empty() {
                return ids;
            }
            ids.extend(c.into_iter().map(|c| c.id));
        }
    };
    let (ca, cb) = tokio::join!(claim(sa.clone()), claim(sb.clone()));
    let all: BTreeSet<i64> = ca.iter().chain(cb.iter()).copied().collect();
    assert_eq!(ca.len() + cb.len(), n as usize, "no delivery claimed twice");
    assert_eq!(all.len(), n as usize, "every delivery claimed");
}
