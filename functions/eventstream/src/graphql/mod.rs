//! The analytics API: an async-graphql schema over the stores, with no transport code.
//!
//! [`Services::schema`] builds the schema once per cold start; [`Services::request`] gives each request its
//! caller and its own DataLoaders. `schema.graphql` at the repository root is [`sdl`], checked by a test.

mod error;
mod guard;
mod limits;
mod loaders;
mod query;
mod types;

use async_graphql::{EmptySubscription, Schema};
pub use error::{GqlError, code};
pub use limits::{
    MAX_ALIASES, MAX_COMPLEXITY, MAX_DEPTH, MAX_EVENTS_PAGES, MAX_EXPANDED_SELECTIONS, MAX_FRAGMENTS, MAX_LIMIT,
    MAX_OPERATIONS, MAX_PAGE_SIZE, MAX_QUERY_BYTES, MAX_TOKENS,
};
pub use query::{DEFAULT_PAGE_SIZE, MAX_STATS_BUCKETS, MutationRoot, QueryRoot};

use crate::{
    auth::Claims,
    pipeline::Intake,
    store::{PgAnalyticsStore, PgEventStore},
};

/// The schema type.
pub type EventStreamSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// What the resolvers use, shared by every request.
#[derive(Clone)]
pub struct Services {
    pub events: PgEventStore,
    pub analytics: PgAnalyticsStore,
    pub intake: Intake,
}

impl Services {
    /// The schema over these services, with its limits.
    pub fn schema(self) -> EventStreamSchema {
        builder().data(self).finish()
    }

    /// `request` on behalf of `caller`, with DataLoaders of its own.
    pub fn request(&self, request: async_graphql::Request, caller: Claims) -> async_graphql::Request {
        request.data(caller).data(loaders::Loaders::new(&self.analytics))
    }
}

fn builder() -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, EmptySubscription> {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription).extension(limits::Limits)
}

/// The schema in GraphQL SDL.
pub fn sdl() -> String {
    builder().finish().sdl()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const SCHEMA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schema.graphql");

    /// `schema.graphql` is what clients and reviewers read; it must be the schema the code serves.
    /// `UPDATE_SCHEMA=1 cargo test -p eventstream schema_graphql` rewrites it after a deliberate change.
    #[test]
    fn schema_graphql_matches_the_code() {
        let sdl = super::sdl();
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(SCHEMA_FILE, &sdl).unwrap();
        }
        let committed = std::fs::read_to_string(Path::new(SCHEMA_FILE)).unwrap_or_default();
        assert!(
            committed == sdl,
            "schema.graphql differs from the schema the code builds; after a deliberate change run \
             `UPDATE_SCHEMA=1 cargo test -p eventstream schema_graphql` and commit the file"
        );
    }

    #[test]
    fn every_type_and_field_of_the_schema_is_described() {
        let sdl = super::sdl();
        let mut undocumented = Vec::new();
        let mut previous = "";
        for line in sdl.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with(')')
                || trimmed.starts_with("schema ")
                || trimmed.starts_with("query:")
                || trimmed.starts_with("mutation:")
            {
                previous = line;
                continue;
            }
            let is_definition = trimmed.starts_with("type ")
                || trimmed.starts_with("input ")
                || trimmed.starts_with("enum ")
                || (line.starts_with('\t') && !trimmed.starts_with('"') && !trimmed.is_empty() && trimmed != "}");
            if is_definition && !previous.trim().ends_with('"') {
                undocumented.push(trimmed.to_string());
            }
            previous = line;
        }
        assert!(undocumented.is_empty(), "without a description: {undocumented:#?}");
    }
}
