//! DataLoaders for what each event of a page links to, so a page of events costs one query per
//! kind of link, not one per event.

use std::{collections::HashMap, sync::Arc};

use async_graphql::dataloader::{DataLoader, Loader};
use uuid::Uuid;

use crate::store::{NotificationRecord, PgAnalyticsStore, ProcessingRecord, RoutingRecord, StoreError};

/// Loads an event's routing by event id.
pub struct RoutingLoader(pub PgAnalyticsStore);
/// Loads the handler's record of an event by event id.
pub struct ProcessingLoader(pub PgAnalyticsStore);
/// Loads an event's notifications by event id.
pub struct NotificationLoader(pub PgAnalyticsStore);
/// Loads a username by user id.
pub struct UsernameLoader(pub PgAnalyticsStore);

impl Loader<Uuid> for RoutingLoader {
    type Value = RoutingRecord;
    type Error = Arc<StoreError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, RoutingRecord>, Self::Error> {
        let records = self.0.routings(keys).await?;
        Ok(records.into_iter().map(|record| (record.event_id, record)).collect())
    }
}

impl Loader<Uuid> for ProcessingLoader {
    type Value = ProcessingRecord;
    type Error = Arc<StoreError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, ProcessingRecord>, Self::Error> {
        let records = self.0.processings(keys).await?;
        Ok(records.into_iter().map(|record| (record.event_id, record)).collect())
    }
}

impl Loader<Uuid> for NotificationLoader {
    type Value = Vec<NotificationRecord>;
    type Error = Arc<StoreError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<NotificationRecord>>, Self::Error> {
        let mut by_event: HashMap<Uuid, Vec<NotificationRecord>> = HashMap::new();
        for record in self.0.notifications(keys).await? {
            by_event.entry(record.event_id).or_default().push(record);
        }
        Ok(by_event)
    }
}

impl Loader<Uuid> for UsernameLoader {
    type Value = String;
    type Error = Arc<StoreError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, String>, Self::Error> {
        Ok(self.0.usernames(keys).await?)
    }
}

/// One request's loaders: made per request, so nothing loaded outlives the request that loaded it.
pub struct Loaders {
    pub routing: DataLoader<RoutingLoader>,
    pub processing: DataLoader<ProcessingLoader>,
    pub notifications: DataLoader<NotificationLoader>,
    pub usernames: DataLoader<UsernameLoader>,
}

impl Loaders {
    pub fn new(store: &PgAnalyticsStore) -> Self {
        Self {
            routing: DataLoader::new(RoutingLoader(store.clone()), tokio::spawn),
            processing: DataLoader::new(ProcessingLoader(store.clone()), tokio::spawn),
            notifications: DataLoader::new(NotificationLoader(store.clone()), tokio::spawn),
            usernames: DataLoader::new(UsernameLoader(store.clone()), tokio::spawn),
        }
    }
}
