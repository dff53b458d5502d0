//! Limits every request is held to before any resolver runs, and an extension `code` on every error.
//!
//! The document is checked in the `parse_query` hook, before async-graphql's own walks and validators,
//! which expand a fragment again at every spread: a few hundred bytes of nested spreads would keep
//! them busy for seconds. First the cheap counts (text size and tokens before parsing; operations,
//! fragments and aliases after), then one
//! walk per operation that costs each fragment once, memoised, so a fragment spread a million times
//! over is costed in microseconds: selections after expansion, depth, page sizes, and how often the
//! expensive root fields are asked for. Introspection fields are not counted in the depth: GraphiQL's
//! own introspection query nests type references a dozen levels deep.

use std::{collections::HashMap, sync::Arc};

use async_graphql::{
    Name, Pos, Positioned, Response, ServerError, ServerResult, ValidationResult, Value, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextValidation},
    parser::types::{ExecutableDocument, Field, OperationDefinition, Selection, SelectionSet},
};

use super::error::code;

/// The longest query text accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// The most lexical tokens (names, numbers, strings, punctuation) a query may hold: parsing costs a few
/// microseconds per token, so 16 KiB of one-letter fields would take tens of milliseconds to parse.
pub const MAX_TOKENS: usize = 2_000;
/// The most operations one document may hold (GraphiQL sends every operation in its editor).
pub const MAX_OPERATIONS: usize = 10;
/// The most fragment definitions one document may hold.
pub const MAX_FRAGMENTS: usize = 20;
/// The most aliased fields one document may hold, counted as written.
pub const MAX_ALIASES: usize = 30;
/// The most selections (fields, fragment spreads, inline fragments) of all operations together once
/// every fragment is expanded where it is spread.
pub const MAX_EXPANDED_SELECTIONS: u64 = 2_000;
/// The deepest selection accepted, counting the top-level fields as depth 1.
pub const MAX_DEPTH: usize = 8;
/// The highest complexity accepted: one per field, and each page's fields once per event it may hold.
pub const MAX_COMPLEXITY: usize = 25_000;
/// The most events one page may ask for (`first`).
pub const MAX_PAGE_SIZE: i64 = 500;
/// The most rows a `limit` argument may ask for.
pub const MAX_LIMIT: i64 = 100;
/// The most `events` pages one request may ask for.
pub const MAX_EVENTS_PAGES: u64 = 3;

/// A field that costs far more than one field, so one operation may ask for it only so often, each
/// alias and each spread of a fragment holding it counted.
struct Rationed {
    name: &'static str,
    most: u64,
    /// Root fields count only where the operation selects them; others wherever they appear.
    root_only: bool,
    why: &'static str,
}

const RATIONED: [Rationed; 7] = [
    Rationed { name: "stats", most: 1, root_only: true, why: "it aggregates every event of its range" },
    Rationed { name: "statusCounts", most: 1, root_only: true, why: "it counts every event of its range" },
    Rationed { name: "topSources", most: 1, root_only: true, why: "it counts every event of its range" },
    Rationed { name: "pipeline", most: 1, root_only: true, why: "it counts every event" },
    Rationed { name: "totalCount", most: 1, root_only: false, why: "it counts every matching event" },
    Rationed {
        name: "events",
        most: MAX_EVENTS_PAGES,
        root_only: true,
        why: "each page reads up to 500 events and their history",
    },
    Rationed {
        name: "createEvent",
        most: 1,
        root_only: true,
        why: "to store several events, send them in one POST /api/events/batch",
    },
];

/// The schema extension that enforces the limits and codes the errors.
pub struct Limits;

impl ExtensionFactory for Limits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Limits)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Limits {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        // Errors async-graphql raises itself (variables of the wrong type, ...) come without a code.
        for error in &mut response.errors {
            let has_code = error.extensions.as_ref().is_some_and(|extensions| extensions.get("code").is_some());
            if !has_code {
                error.extensions.get_or_insert_with(Default::default).set("code", code::BAD_REQUEST);
            }
        }
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        check_document(query, variables)?;
        // async-graphql parses the text again (tens of microseconds for the largest document accepted)
        // before its own walks, which the checks above have just bounded.
        next.run(ctx, query, variables).await.map_err(|error| with_code(error, code::GRAPHQL_PARSE_FAILED))
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await.map_err(|errors| {
            errors.into_iter().map(|error| with_code(error, code::GRAPHQL_VALIDATION_FAILED)).collect::<Vec<_>>()
        })?;
        if result.complexity > MAX_COMPLEXITY {
            return Err(vec![coded(
                code::QUERY_TOO_COMPLEX,
                format!(
                    "the query's complexity is {}, more than the limit of {MAX_COMPLEXITY}; ask for fewer fields or smaller pages",
                    result.complexity
                ),
                None,
            )]);
        }
        Ok(result)
    }
}

fn coded(code: &'static str, message: String, pos: Option<Pos>) -> ServerError {
    with_code(ServerError::new(message, pos), code)
}

fn with_code(error: ServerError, code: &'static str) -> ServerError {
    let mut error = error;
    error.extensions.get_or_insert_with(Default::default).set("code", code);
    error
}

fn too_complex(message: String) -> ServerError {
    coded(code::QUERY_TOO_COMPLEX, message, None)
}

/// Every limit that can be judged from the query text and the variables, cheapest first.
fn check_document(query: &str, variables: &Variables) -> ServerResult<()> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(coded(
            code::QUERY_TOO_LARGE,
            format!("the query is {} bytes long, more than the limit of {MAX_QUERY_BYTES}", query.len()),
            None,
        ));
    }
    let tokens = tokens(query);
    if tokens > MAX_TOKENS {
        return Err(coded(
            code::QUERY_TOO_LARGE,
            format!("the query holds {tokens} tokens, more than the limit of {MAX_TOKENS}"),
            None,
        ));
    }
    let document = async_graphql::parser::parse_query(query)
        .map_err(|error| with_code(ServerError::from(error), code::GRAPHQL_PARSE_FAILED))?;

    let operations = document.operations.iter().count();
    if operations > MAX_OPERATIONS {
        return Err(too_complex(format!(
            "the document holds {operations} operations, more than the limit of {MAX_OPERATIONS}"
        )));
    }
    if document.fragments.len() > MAX_FRAGMENTS {
        return Err(too_complex(format!(
            "the document defines {} fragments, more than the limit of {MAX_FRAGMENTS}",
            document.fragments.len()
        )));
    }
    let aliases =
        document.operations.iter().map(|(_, operation)| aliases(&operation.node.selection_set.node)).sum::<usize>()
            + document.fragments.values().map(|fragment| aliases(&fragment.node.selection_set.node)).sum::<usize>();
    if aliases > MAX_ALIASES {
        return Err(too_complex(format!(
            "the document holds {aliases} aliased fields, more than the limit of {MAX_ALIASES}"
        )));
    }

    let mut selections = 0_u64;
    for (_, operation) in document.operations.iter() {
        let cost =
            Walk::new(&document, &operation.node, variables).selection_set(&operation.node.selection_set.node)?;
        selections = selections.saturating_add(cost.selections);
        if selections > MAX_EXPANDED_SELECTIONS {
            return Err(too_complex(format!(
                "with its fragments expanded the document holds more than {MAX_EXPANDED_SELECTIONS} fields and \
                 fragments; spread fewer fragments or ask for fewer fields"
            )));
        }
        if let Some(deepest) = cost.deepest
            && cost.depth > MAX_DEPTH
        {
            return Err(coded(
                code::QUERY_TOO_DEEP,
                format!(
                    "the query nests fields {} levels deep, more than the limit of {MAX_DEPTH} (down to `{}`)",
                    cost.depth, deepest.node.name.node
                ),
                Some(deepest.pos),
            ));
        }
        for (rationed, uses) in RATIONED.iter().zip(cost.uses) {
            if uses > rationed.most {
                let most = if rationed.most == 1 { "once".to_string() } else { format!("{} times", rationed.most) };
                return Err(coded(
                    code::FIELD_REPEATED,
                    format!(
                        "`{}` may be asked for {most} per request, each alias and fragment spread counted, and this \
                         request asks for it {uses} times: {}",
                        rationed.name, rationed.why
                    ),
                    None,
                ));
            }
        }
    }
    Ok(())
}

/// GraphQL's lexical tokens in `text`, counted without parsing it: names, numbers, strings and
/// punctuators; whitespace, commas and comments are not tokens.
fn tokens(text: &str) -> usize {
    let bytes = text.as_bytes();
    let at = |i: usize, pattern: &[u8]| bytes.get(i..).is_some_and(|rest| rest.starts_with(pattern));
    let (mut count, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && !matches!(bytes[i], b'\n' | b'\r') {
                    i += 1;
                }
                continue;
            }
            b'"' if at(i, b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !at(i, b"\"\"\"") {
                    i += if at(i, b"\\\"\"\"") { 4 } else { 1 };
                }
                i += 3;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && !matches!(bytes[i], b'"' | b'\n' | b'\r') {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'.' if at(i, b"...") => i += 3,
            byte if byte == b'_' || byte.is_ascii_alphabetic() => {
                while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
            }
            byte if byte == b'-' || byte.is_ascii_digit() => {
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'.' | b'+' | b'-')) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
        count += 1;
    }
    count
}

/// Aliased fields as written, without following fragment spreads.
fn aliases(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => {
                usize::from(field.node.alias.is_some()) + aliases(&field.node.selection_set.node)
            }
            Selection::InlineFragment(fragment) => aliases(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

/// What a selection set costs with every fragment in it expanded. Counts saturate: a fragment fan-out
/// can stand for more selections than a u64 holds.
#[derive(Clone, Copy, Default)]
struct Cost<'a> {
    selections: u64,
    /// The deepest non-introspection field below, its own fields being depth 1; 0 when it has none.
    depth: usize,
    deepest: Option<&'a Positioned<Field>>,
    /// Uses of each [`RATIONED`] field.
    uses: [u64; RATIONED.len()],
}

impl<'a> Cost<'a> {
    /// Adds selections made at the same level, such as a fragment's.
    fn add(&mut self, other: &Cost<'a>) {
        self.selections = self.selections.saturating_add(other.selections);
        if other.depth > self.depth {
            self.depth = other.depth;
            self.deepest = other.deepest;
        }
        for (uses, more) in self.uses.iter_mut().zip(other.uses) {
            *uses = uses.saturating_add(more);
        }
    }
}

enum Expansion<'a> {
    /// Being costed: meeting it again is a cycle.
    Underway,
    Costed(Cost<'a>),
}

/// One operation's walk. Fragments are costed once each, as their page-size arguments are checked: a
/// fragment's variables take the operation's defaults, so the memo is the operation's own.
struct Walk<'a> {
    document: &'a ExecutableDocument,
    operation: &'a OperationDefinition,
    variables: &'a Variables,
    fragments: HashMap<&'a str, Expansion<'a>>,
}

impl<'a> Walk<'a> {
    fn new(document: &'a ExecutableDocument, operation: &'a OperationDefinition, variables: &'a Variables) -> Self {
        Self { document, operation, variables, fragments: HashMap::new() }
    }

    fn selection_set(&mut self, set: &'a SelectionSet) -> ServerResult<Cost<'a>> {
        let mut cost = Cost::default();
        for item in &set.items {
            cost.selections = cost.selections.saturating_add(1);
            match &item.node {
                Selection::Field(field) => {
                    self.check_page_size(&field.node)?;
                    let below = self.selection_set(&field.node.selection_set.node)?;
                    cost.selections = cost.selections.saturating_add(below.selections);
                    let name = field.node.name.node.as_str();
                    if !name.starts_with("__") && below.depth + 1 > cost.depth {
                        cost.depth = below.depth + 1;
                        cost.deepest = Some(below.deepest.unwrap_or(field));
                    }
                    for ((uses, rationed), below) in cost.uses.iter_mut().zip(&RATIONED).zip(below.uses) {
                        if rationed.name == name {
                            *uses = uses.saturating_add(1);
                        }
                        if !rationed.root_only {
                            *uses = uses.saturating_add(below);
                        }
                    }
                }
                Selection::InlineFragment(fragment) => {
                    cost.add(&self.selection_set(&fragment.node.selection_set.node)?);
                }
                Selection::FragmentSpread(spread) => {
                    cost.add(&self.fragment(&spread.node.fragment_name.node, spread.pos)?);
                }
            }
        }
        Ok(cost)
    }

    fn fragment(&mut self, name: &'a Name, spread_at: Pos) -> ServerResult<Cost<'a>> {
        match self.fragments.get(name.as_str()) {
            Some(Expansion::Costed(cost)) => return Ok(*cost),
            Some(Expansion::Underway) => {
                return Err(coded(
                    code::GRAPHQL_VALIDATION_FAILED,
                    format!("fragment `{name}` spreads itself, directly or through other fragments"),
                    Some(spread_at),
                ));
            }
            None => {}
        }
        // An unknown fragment costs nothing here; validation reports it.
        let Some(definition) = self.document.fragments.get(name) else { return Ok(Cost::default()) };
        self.fragments.insert(name.as_str(), Expansion::Underway);
        let cost = self.selection_set(&definition.node.selection_set.node)?;
        self.fragments.insert(name.as_str(), Expansion::Costed(cost));
        Ok(cost)
    }

    /// A variable's value, or its default when the request did not set it.
    fn variable(&self, name: Name) -> Result<Value, ()> {
        self.variables
            .get(&name)
            .or_else(|| {
                let definition = self.operation.variable_definitions.iter().find(|d| d.node.name.node == name)?;
                definition.node.default_value()
            })
            .cloned()
            .ok_or(())
    }

    fn check_page_size(&self, field: &Field) -> ServerResult<()> {
        for (name, value) in &field.arguments {
            let (limit, what) = match name.node.as_str() {
                "first" => (MAX_PAGE_SIZE, "events per page"),
                "limit" => (MAX_LIMIT, "rows"),
                _ => continue,
            };
            let asked = match value.node.clone().into_const_with(|name| self.variable(name)) {
                Ok(Value::Number(number)) => number.as_i64(),
                // Not a number: validation reports it.
                _ => None,
            };
            if let Some(asked) = asked
                && !(1..=limit).contains(&asked)
            {
                return Err(coded(
                    code::PAGE_TOO_LARGE,
                    format!("`{}` of `{}` must be from 1 to {limit} {what}, got {asked}", name.node, field.name.node),
                    Some(value.pos),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn check(query: &str, variables: serde_json::Value) -> Result<(), String> {
        check_document(query, &Variables::from_json(variables)).map_err(|error| {
            let code = error.extensions.as_ref().and_then(|e| e.get("code").cloned());
            format!("{code:?}: {}", error.message)
        })
    }

    fn refused(query: &str) -> String {
        check(query, serde_json::json!({})).expect_err(query)
    }

    /// What the README shows analysts, as written there.
    const README_QUERY: &str = r#"{
      stats(since: "2026-11-28T00:00:00Z", bucket: HOUR, source: "billing") { start success info warning error total }
      statusCounts(since: "2026-11-28T00:00:00Z") { status count }
      topSources(limit: 5) { source count }
      pipeline { received dispatched processed oldestUndispatchedAgeSeconds emailsSent emailsFailed deadLetters }
      events(filter: {statuses: [ERROR], search: "timeout"}, first: 20) {
        totalCount pageInfo { hasNextPage endCursor }
        nodes { id title receivedAt pipelineState routing { handler } processing { processedAt } notifications { state sentAt } }
      }
    }"#;

    /// graphql-js's `getIntrospectionQuery()`, which GraphiQL sends when it opens.
    const GRAPHIQL_INTROSPECTION: &str = "
    query IntrospectionQuery {
      __schema {
        queryType { name }
        mutationType { name }
        subscriptionType { name }
        types { ...FullType }
        directives { name description locations args { ...InputValue } }
      }
    }
    fragment FullType on __Type {
      kind name description
      fields(includeDeprecated: true) {
        name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
      }
      inputFields { ...InputValue }
      interfaces { ...TypeRef }
      enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
      possibleTypes { ...TypeRef }
    }
    fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
    fragment TypeRef on __Type {
      kind name
      ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name
        ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }
    }";

    /// `count` fragments, each spreading the next `fan_out` times: `fan_out ^ count` selections expanded.
    fn fragment_fan_out(count: usize, fan_out: usize) -> String {
        let mut query = String::from("{ ...F0 }");
        for i in 0..count {
            let body =
                if i + 1 == count { "__typename".to_string() } else { format!("...F{} ", i + 1).repeat(fan_out) };
            query.push_str(&format!(" fragment F{i} on Query {{ {body} }}"));
        }
        query
    }

    #[test]
    fn ordinary_queries_pass() {
        assert_eq!(check(README_QUERY, serde_json::json!({})), Ok(()));
        assert_eq!(check(GRAPHIQL_INTROSPECTION, serde_json::json!({})), Ok(()));
        assert_eq!(check(&fragment_fan_out(3, 3), serde_json::json!({})), Ok(()));
    }

    #[tokio::test]
    async fn the_schema_answers_graphiql_introspection() {
        let response = super::super::builder().finish().execute(GRAPHIQL_INTROSPECTION).await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
    }

    #[test]
    fn a_document_over_16_kib_is_refused_before_it_is_parsed() {
        let query = "{ pipeline { received } }";
        let padded = |bytes: usize| format!("{query}{}", " ".repeat(bytes - query.len()));
        assert_eq!(check(&padded(MAX_QUERY_BYTES), serde_json::json!({})), Ok(()));
        let error = refused(&padded(MAX_QUERY_BYTES + 1));
        assert!(error.contains("QUERY_TOO_LARGE") && error.contains("16385 bytes"), "{error}");
        // Not even parsed: text that is no GraphQL at all gets the same answer.
        assert!(refused(&"{".repeat(MAX_QUERY_BYTES + 1)).contains("QUERY_TOO_LARGE"));
    }

    #[test]
    fn tokens_are_counted_before_parsing_and_capped() {
        assert_eq!(tokens("{ a(x: -1.5e+3, y: \"s, t\") ...F }"), 13);
        assert_eq!(tokens("# { a b c }\n{ a(d: \"\"\"x \\\"\"\" y\"\"\") }"), 8);
        assert!(tokens(README_QUERY) < MAX_TOKENS / 4);
        assert!(tokens(GRAPHIQL_INTROSPECTION) < MAX_TOKENS / 4);

        let fields = |count: usize| format!("{{ {}}}", "a ".repeat(count));
        assert_eq!(check(&fields(MAX_TOKENS - 2), serde_json::json!({})), Ok(()));
        let error = refused(&fields(MAX_TOKENS - 1));
        assert!(error.contains("QUERY_TOO_LARGE") && error.contains("2001 tokens"), "{error}");
    }

    #[test]
    fn operations_fragments_and_aliases_are_counted_as_written() {
        let operations = |n: usize| (0..n).map(|i| format!("query Q{i} {{ __typename }}")).collect::<String>();
        assert_eq!(check(&operations(MAX_OPERATIONS), serde_json::json!({})), Ok(()));
        let error = refused(&operations(MAX_OPERATIONS + 1));
        assert!(error.contains("QUERY_TOO_COMPLEX") && error.contains("11 operations"), "{error}");

        let fragments = |n: usize| {
            let spreads = (0..n).map(|i| format!("...F{i} ")).collect::<String>();
            let definitions = (0..n).map(|i| format!("fragment F{i} on Query {{ __typename }} ")).collect::<String>();
            format!("{{ {spreads} }} {definitions}")
        };
        assert_eq!(check(&fragments(MAX_FRAGMENTS), serde_json::json!({})), Ok(()));
        let error = refused(&fragments(MAX_FRAGMENTS + 1));
        assert!(error.contains("QUERY_TOO_COMPLEX") && error.contains("21 fragments"), "{error}");

        // Aliases inside fragments count too, once each however often the fragment is spread.
        let aliases = |n: usize| {
            let half = (0..n / 2).map(|i| format!("a{i}: event(id: \"{i}\") {{ id }} ")).collect::<String>();
            let rest = (n / 2..n).map(|i| format!("a{i}: __typename ")).collect::<String>();
            format!("{{ {half} ...F }} fragment F on Query {{ {rest} }}")
        };
        assert_eq!(check(&aliases(MAX_ALIASES), serde_json::json!({})), Ok(()));
        let error = refused(&aliases(MAX_ALIASES + 1));
        assert!(error.contains("QUERY_TOO_COMPLEX") && error.contains("31 aliased fields"), "{error}");
    }

    #[test]
    fn a_fragment_fan_out_is_refused_in_microseconds() {
        // 3^19 and 10^9 selections expanded: a walk that expanded them would not finish.
        for query in [fragment_fan_out(MAX_FRAGMENTS, 3), fragment_fan_out(10, 10)] {
            let started = Instant::now();
            let error = refused(&query);
            let elapsed = started.elapsed();
            assert!(error.contains("QUERY_TOO_COMPLEX") && error.contains("2000"), "{error}");
            assert!(elapsed < Duration::from_millis(50), "took {elapsed:?}");
        }
        // Fragments that hold only spreads expand to no field at all, yet cost async-graphql's walks as much.
        let spreads_only = fragment_fan_out(MAX_FRAGMENTS, 3).replace("__typename", "...Missing");
        assert!(refused(&spreads_only).contains("QUERY_TOO_COMPLEX"));
        // Introspection is no way around it.
        let under_schema = fragment_fan_out(12, 3).replacen("{ ...F0 }", "{ __schema { ...F0 } }", 1);
        assert!(refused(&under_schema).contains("QUERY_TOO_COMPLEX"));
    }

    #[tokio::test]
    async fn the_schema_refuses_a_fragment_bomb_before_its_own_walks_expand_it() {
        let started = Instant::now();
        let response = super::super::builder().finish().execute(fragment_fan_out(MAX_FRAGMENTS, 3)).await;
        let elapsed = started.elapsed();
        let codes: Vec<_> =
            response.errors.iter().map(|e| e.extensions.as_ref().and_then(|x| x.get("code").cloned())).collect();
        assert_eq!(codes, [Some(Value::from(code::QUERY_TOO_COMPLEX))], "{:?}", response.errors);
        assert!(elapsed < Duration::from_millis(100), "took {elapsed:?}");
    }

    #[test]
    fn a_fragment_cycle_is_refused() {
        for cycle in [
            "{ events { ...F } } fragment F on EventConnection { nodes { id } ...F }",
            "{ ...A } fragment A on Query { ...B } fragment B on Query { pipeline { received } ...A }",
        ] {
            let error = refused(cycle);
            assert!(error.contains("GRAPHQL_VALIDATION_FAILED") && error.contains("spreads itself"), "{error}");
        }
    }

    #[test]
    fn depth_counts_fields_through_fragments_but_not_introspection() {
        let nested = |levels: usize| format!("{}x{}", "a { ".repeat(levels - 1), " }".repeat(levels - 1));
        assert!(check(&format!("{{ {} }}", nested(MAX_DEPTH)), serde_json::json!({})).is_ok());
        let too_deep = check(&format!("{{ {} }}", nested(MAX_DEPTH + 1)), serde_json::json!({})).unwrap_err();
        assert!(too_deep.contains("QUERY_TOO_DEEP") && too_deep.contains("9 levels"), "{too_deep}");

        let via_fragment = format!("{{ a {{ ...F }} }} fragment F on T {{ {} }}", nested(MAX_DEPTH));
        assert!(check(&via_fragment, serde_json::json!({})).unwrap_err().contains("QUERY_TOO_DEEP"));
        let inline = format!("{{ a {{ ... on T {{ {} }} }} }}", nested(MAX_DEPTH));
        assert!(check(&inline, serde_json::json!({})).unwrap_err().contains("QUERY_TOO_DEEP"));

        let introspection = format!("{{ __schema {{ {} }} }}", nested(MAX_DEPTH * 2));
        assert!(check(&introspection, serde_json::json!({})).is_ok());
    }

    #[test]
    fn page_sizes_are_checked_in_literals_variables_defaults_and_fragments() {
        assert!(check("{ events(first: 500) { totalCount } }", serde_json::json!({})).is_ok());
        for (query, variables) in [
            ("{ events(first: 501) { totalCount } }", serde_json::json!({})),
            ("{ events(first: 0) { totalCount } }", serde_json::json!({})),
            ("query Q($n: Int) { events(first: $n) { totalCount } }", serde_json::json!({"n": 100000})),
            ("query Q($n: Int = 1000) { events(first: $n) { totalCount } }", serde_json::json!({})),
            ("{ topSources(limit: 101) { source } }", serde_json::json!({})),
            ("{ ...F } fragment F on Query { events(first: 501) { totalCount } }", serde_json::json!({})),
            (
                "query A { ...F } query B($n: Int = 1000) { ...F } fragment F on Query { topSources(limit: $n) { source } }",
                serde_json::json!({}),
            ),
        ] {
            let error = check(query, variables).unwrap_err();
            assert!(error.contains("PAGE_TOO_LARGE"), "{query}: {error}");
        }
    }

    #[test]
    fn each_aggregate_is_refused_the_second_time_by_alias_or_by_fragment() {
        for (field, selection) in [
            ("stats", "stats { total }"),
            ("statusCounts", "statusCounts { count }"),
            ("topSources", "topSources { count }"),
            ("pipeline", "pipeline { received }"),
            ("totalCount", "events { totalCount }"),
        ] {
            assert_eq!(check(&format!("{{ {selection} }}"), serde_json::json!({})), Ok(()), "{field}");
            let aliased = refused(&format!("{{ a: {selection} b: {selection} }}"));
            let spread_twice = refused(&format!("{{ ...F ...F }} fragment F on Query {{ {selection} }}"));
            for error in [aliased, spread_twice] {
                assert!(error.contains("FIELD_REPEATED"), "{error}");
                assert!(error.contains(&format!("`{field}` may be asked for once")), "{error}");
                assert!(error.contains("2 times"), "{error}");
            }
        }
        let total_twice_in_pages =
            "{ events { ...T } e: events(first: 5) { ...T } } fragment T on EventConnection { totalCount }";
        assert!(refused(total_twice_in_pages).contains("`totalCount`"));

        let pages =
            |n: usize| (0..n).map(|i| format!("p{i}: events(first: 10) {{ nodes {{ id }} }} ")).collect::<String>();
        assert_eq!(check(&format!("{{ {} }}", pages(3)), serde_json::json!({})), Ok(()));
        let error = refused(&format!("{{ {} }}", pages(4)));
        assert!(error.contains("FIELD_REPEATED") && error.contains("`events` may be asked for 3 times"), "{error}");
    }

    #[test]
    fn root_fields_are_rationed_only_at_the_root_and_total_count_everywhere() {
        assert_eq!(check("{ a { stats pipeline } b { stats pipeline } }", serde_json::json!({})), Ok(()));
        let nested_fragment = "{ a { ...F } b { ...F } } fragment F on T { stats pipeline }";
        assert_eq!(check(nested_fragment, serde_json::json!({})), Ok(()));
        assert!(refused("{ a { totalCount } b { c { totalCount } } }").contains("`totalCount`"));
    }

    #[test]
    fn create_event_is_refused_the_second_time_and_pointed_at_the_batch_endpoint() {
        let create = |alias: &str| format!("{alias}: createEvent(input: {{title: \"x\", status: ERROR}}) {{ id }} ");
        assert_eq!(check(&format!("mutation {{ {} }}", create("a")), serde_json::json!({})), Ok(()));
        let error = refused(&format!("mutation {{ {}{} }}", create("a"), create("b")));
        assert!(error.contains("FIELD_REPEATED") && error.contains("`createEvent`"), "{error}");
        assert!(error.contains("POST /api/events/batch"), "{error}");
    }
}
