//! Limits every request is held to before any resolver runs, and an extension `code` on every error.
//!
//! Depth and page sizes are checked on the parsed document, so a query over a limit is refused before it
//! touches the database. Introspection fields are not counted in the depth: GraphiQL's own introspection
//! query nests type references a dozen levels deep.

use std::sync::Arc;

use async_graphql::{
    Name, Pos, Response, ServerError, ServerResult, ValidationResult, Value, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextValidation},
    parser::types::{ExecutableDocument, OperationDefinition, Selection, SelectionSet},
};

use super::error::code;

/// The deepest selection accepted, counting the top-level fields as depth 1.
pub const MAX_DEPTH: usize = 8;
/// The highest complexity accepted: one per field, and each page's fields once per event it may hold.
pub const MAX_COMPLEXITY: usize = 25_000;
/// The most events one page may ask for (`first`).
pub const MAX_PAGE_SIZE: i64 = 500;
/// The most rows a `limit` argument may ask for.
pub const MAX_LIMIT: i64 = 100;

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
        let document =
            next.run(ctx, query, variables).await.map_err(|error| with_code(error, code::GRAPHQL_PARSE_FAILED))?;
        for (_, operation) in document.operations.iter() {
            check_operation(&document, &operation.node, variables)?;
        }
        Ok(document)
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

fn check_operation(
    document: &ExecutableDocument,
    operation: &OperationDefinition,
    variables: &Variables,
) -> ServerResult<()> {
    Walk { document, operation, variables, fragments: Vec::new() }.selection_set(&operation.selection_set.node, 1)
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    operation: &'a OperationDefinition,
    variables: &'a Variables,
    /// The fragments being expanded, to stop at a cycle (which validation reports).
    fragments: Vec<&'a str>,
}

impl<'a> Walk<'a> {
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

    fn selection_set(&mut self, set: &'a SelectionSet, depth: usize) -> ServerResult<()> {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    if field.name.node.starts_with("__") {
                        continue;
                    }
                    if depth > MAX_DEPTH {
                        return Err(coded(
                            code::QUERY_TOO_DEEP,
                            format!(
                                "the query nests fields more than {MAX_DEPTH} levels deep (at `{}`)",
                                field.name.node
                            ),
                            Some(item.pos),
                        ));
                    }
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
                                format!(
                                    "`{}` of `{}` must be from 1 to {limit} {what}, got {asked}",
                                    name.node, field.name.node
                                ),
                                Some(value.pos),
                            ));
                        }
                    }
                    self.selection_set(&field.selection_set.node, depth + 1)?;
                }
                Selection::InlineFragment(fragment) => {
                    self.selection_set(&fragment.node.selection_set.node, depth)?;
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if self.fragments.contains(&name) {
                        continue;
                    }
                    if let Some(fragment) = self.document.fragments.get(&spread.node.fragment_name.node) {
                        self.fragments.push(name);
                        self.selection_set(&fragment.node.selection_set.node, depth)?;
                        self.fragments.pop();
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(query: &str, variables: serde_json::Value) -> Result<(), String> {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let variables = Variables::from_json(variables);
        document
            .operations
            .iter()
            .try_for_each(|(_, operation)| check_operation(&document, &operation.node, &variables))
            .map_err(|error| {
                let code = error.extensions.as_ref().and_then(|e| e.get("code").cloned());
                format!("{code:?}: {}", error.message)
            })
    }

    #[test]
    fn depth_counts_fields_through_fragments_but_not_introspection() {
        let nested = |levels: usize| format!("{}x{}", "a { ".repeat(levels - 1), " }".repeat(levels - 1));
        assert!(check(&format!("{{ {} }}", nested(MAX_DEPTH)), serde_json::json!({})).is_ok());
        let too_deep = check(&format!("{{ {} }}", nested(MAX_DEPTH + 1)), serde_json::json!({})).unwrap_err();
        assert!(too_deep.contains("QUERY_TOO_DEEP"), "{too_deep}");

        let via_fragment = format!("{{ a {{ ...F }} }} fragment F on T {{ {} }}", nested(MAX_DEPTH));
        assert!(check(&via_fragment, serde_json::json!({})).unwrap_err().contains("QUERY_TOO_DEEP"));

        let introspection = format!("{{ __schema {{ {} }} }}", nested(MAX_DEPTH * 2));
        assert!(check(&introspection, serde_json::json!({})).is_ok());
    }

    #[test]
    fn a_fragment_cycle_does_not_loop() {
        let cycle = "{ a { ...F } } fragment F on T { b { ...F } }";
        assert!(check(cycle, serde_json::json!({})).is_ok());
    }

    #[test]
    fn page_sizes_are_checked_in_literals_variables_and_defaults() {
        assert!(check("{ events(first: 500) { totalCount } }", serde_json::json!({})).is_ok());
        for (query, variables) in [
            ("{ events(first: 501) { totalCount } }", serde_json::json!({})),
            ("{ events(first: 0) { totalCount } }", serde_json::json!({})),
            ("query Q($n: Int) { events(first: $n) { totalCount } }", serde_json::json!({"n": 100000})),
            ("query Q($n: Int = 1000) { events(first: $n) { totalCount } }", serde_json::json!({})),
            ("{ topSources(limit: 101) { source } }", serde_json::json!({})),
        ] {
            let error = check(query, variables).unwrap_err();
            assert!(error.contains("PAGE_TOO_LARGE"), "{query}: {error}");
        }
    }
}
