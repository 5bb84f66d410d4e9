//! Retention: delivered and dead-lettered rows are deleted once their last
//! attempt is older than `webhooks.retention`; pending ones never are.

use chrono::{Duration as Days, Utc};
use keygate::webhooks::events::EventType;
use keygate::webhooks::model::{DeliveryQuery, DeliveryStatus, NewEvent, Settle};

use crate::harness::{StoreKind, TestConfig, both_stores};

fn event(id: &str, at: chrono::DateTime<Utc>) -> NewEvent {
    NewEvent {
        id: id.into(),
        event: EventType::KeyCreated,
        at,
        payload: format!("{{\"type\":\"key.created\",\"id\":\"{id}\"}}"),
    }
}

async fn count(store: &dyn keygate::store::WebhookStore, status: DeliveryStatus) -> usize {
    let q = DeliveryQuery {
        status: Some(status),
        event_type: None,
        endpoint: None,
        before: None,
        limit: 100,
    };
    store.deliveries(&q).await.expect("deliveries").len()
}

async fn finished_rows_are_pruned_after_the_retention(kind: StoreKind) {
    let cfg = TestConfig::new(kind).await;
    let stores = keygate::store::open(&cfg.build().store)
        .await
        .expect("open");
    stores.db.migrate().await.expect("migrate");
    let w = stores.webhooks.as_ref();
    let old = Utc::now() - Days::days(40);
    for id in ["evt_a", "evt_b", "evt_c"] {
        assert_eq!(
            w.enqueue(&event(id, old), &["ops"]).await.expect("enqueue"),
            1
        );
    }
    // Attempted 40 days ago: one delivered, one dead-lettered, one still pending.
    let claimed = w
        .claim(old, old + Days::seconds(30), 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3);
    let by_event = |e: &str| {
        claimed
            .iter()
            .find(|c| c.event_id == e)
            .expect("claimed")
            .id
    };
    w.settle(by_event("evt_a"), &Settle::Delivered { status: 200 }, old)
        .await
        .expect("settle");
    let dead = Settle::Dead {
        status: Some(500),
        error: "HTTP 500".into(),
    };
    w.settle(by_event("evt_b"), &dead, old)
        .await
        .expect("settle");

    // A cutoff before the attempts deletes nothing.
    assert_eq!(w.prune(old - Days::seconds(1)).await.expect("prune"), 0);
    // 30 days after them: the delivered and the dead row go, the pending one stays.
    assert_eq!(
        w.prune(Utc::now() - Days::days(30)).await.expect("prune"),
        2
    );
    assert_eq!(count(w, DeliveryStatus::Delivered).await, 0);
    assert_eq!(count(w, DeliveryStatus::Dead).await, 0);
    assert_eq!(count(w, DeliveryStatus::Pending).await, 1);
    assert_eq!(w.backlog().await.expect("backlog"), 1);
}

both_stores!(finished_rows_are_pruned_after_the_retention);
