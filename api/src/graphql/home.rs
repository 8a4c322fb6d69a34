//! The home screen in one round trip: a query operation that asks for the
//! first page of `transactions` without filters (the balances and the
//! latest movements every app opens with) has that page read by the
//! statement that checks the session, which already reads the account and
//! its wallets ([`crate::auth::ReadAlong::Home`]).
//!
//! Which page that is comes from the parsed document and its variables,
//! before anything runs; the resolver then takes the page only when the
//! arguments it was given ask for exactly that page, and reads its own
//! otherwise. A wrong guess here can cost a read, never a wrong answer.

use async_graphql::Variables;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Field, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::{Name, Value};
use entity::store::history::HistoryPage;
use uuid::Uuid;

/// How deep fragments at the root are followed.
const FRAGMENT_DEPTH: usize = 4;

/// The page size of the first `transactions` field at the root of the
/// operation to run, when it is a query and that field has no `walletId`,
/// `from`, `to` or `after` (absent or null).
pub fn history_limit(
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Option<u64> {
    let operation = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => &op.node,
        (DocumentOperations::Multiple(ops), Some(name)) => &ops.get(name)?.node,
        // One named operation runs without its name asked.
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => &ops.values().next()?.node,
        (DocumentOperations::Multiple(_), None) => return None,
    };
    if operation.ty != OperationType::Query {
        return None;
    }
    let input = Input {
        doc,
        operation,
        variables,
    };
    input.in_set(&operation.selection_set.node, FRAGMENT_DEPTH)
}

struct Input<'a> {
    doc: &'a ExecutableDocument,
    operation: &'a OperationDefinition,
    variables: &'a Variables,
}

impl Input<'_> {
    fn in_set(&self, set: &SelectionSet, depth: usize) -> Option<u64> {
        set.items.iter().find_map(|item| match &item.node {
            Selection::Field(field) if field.node.name.node == "transactions" => {
                self.page(&field.node)
            }
            Selection::Field(_) => None,
            Selection::InlineFragment(inline) if depth > 0 => {
                self.in_set(&inline.node.selection_set.node, depth - 1)
            }
            Selection::FragmentSpread(spread) if depth > 0 => {
                let fragment = self.doc.fragments.get(&spread.node.fragment_name.node)?;
                self.in_set(&fragment.node.selection_set.node, depth - 1)
            }
            _ => None,
        })
    }

    /// The page size, when the field's arguments ask for a first page of
    /// all the viewer's wallets.
    fn page(&self, field: &Field) -> Option<u64> {
        let mut first = None;
        for (name, value) in &field.arguments {
            let value = value
                .node
                .clone()
                .into_const_with(|variable| self.variable(&variable).ok_or(()))
                .ok()?;
            match name.node.as_str() {
                "first" => match value {
                    Value::Null => {}
                    Value::Number(n) => first = Some(i32::try_from(n.as_i64()?).ok()?),
                    _ => return None,
                },
                "walletId" | "from" | "to" | "after" if value != Value::Null => return None,
                _ => {}
            }
        }
        super::page_size(first).ok()
    }

    /// A variable's value: given, or its default, or null.
    fn variable(&self, name: &Name) -> Option<Value> {
        if let Some(given) = self.variables.get(name) {
            return Some(given.clone());
        }
        let definition = self
            .operation
            .variable_definitions
            .iter()
            .find(|d| d.node.name.node == *name)?;
        Some(
            definition
                .node
                .default_value
                .as_ref()
                .map_or(Value::Null, |d| d.node.clone()),
        )
    }
}

/// The first page of the viewer's history as read with the session check
/// (request data of a query operation).
#[derive(Debug, Clone)]
pub struct ViewerHistory {
    user_id: Uuid,
    limit: u64,
    page: HistoryPage,
}

impl ViewerHistory {
    /// The `limit` newest transactions of `user_id`'s wallets.
    pub fn new(user_id: Uuid, limit: u64, page: HistoryPage) -> Self {
        Self {
            user_id,
            limit,
            page,
        }
    }

    /// The page, when it is the one asked for: `user_id`'s newest `limit`.
    pub fn page(&self, user_id: Uuid, limit: u64) -> Option<HistoryPage> {
        (self.user_id == user_id && self.limit == limit).then(|| self.page.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(query: &str, name: Option<&str>, variables: serde_json::Value) -> Option<u64> {
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        history_limit(&doc, name, &Variables::from_json(variables))
    }

    #[test]
    fn the_home_screen_asks_for_a_first_page() {
        let home = "{ me { id } transactions(first: 20) { edges { node { id } } } }";
        assert_eq!(limit(home, None, serde_json::json!({})), Some(20));
        assert_eq!(
            limit(
                "{ transactions { edges { node { id } } } }",
                None,
                serde_json::json!({})
            ),
            super::super::page_size(None).ok()
        );
        let with_variable = "query Home($n: Int = 5, $c: String) { transactions(first: $n, after: $c) { edges { node { id } } } }";
        assert_eq!(limit(with_variable, None, serde_json::json!({})), Some(5));
        assert_eq!(
            limit(with_variable, None, serde_json::json!({ "n": 7 })),
            Some(7)
        );
        assert_eq!(
            limit(
                with_variable,
                None,
                serde_json::json!({ "n": 7, "c": null })
            ),
            Some(7)
        );
        let fragment = "query Home { ...Screen } fragment Screen on Query { transactions(first: 3) { edges { node { id } } } }";
        assert_eq!(limit(fragment, None, serde_json::json!({})), Some(3));
        let named =
            "query A { me { id } } query B { transactions(first: 4) { edges { node { id } } } }";
        assert_eq!(limit(named, Some("B"), serde_json::json!({})), Some(4));
    }

    #[test]
    fn other_pages_and_operations_are_read_by_their_resolver() {
        for (query, variables) in [
            ("{ me { id } }", serde_json::json!({})),
            (
                "{ transactions(first: 20, after: \"x\") { edges { node { id } } } }",
                serde_json::json!({}),
            ),
            (
                "query($c: String) { transactions(after: $c) { edges { node { id } } } }",
                serde_json::json!({ "c": "x" }),
            ),
            (
                "{ transactions(walletId: \"w\") { edges { node { id } } } }",
                serde_json::json!({}),
            ),
            (
                "{ transactions(from: \"2026-01-01T00:00:00Z\") { edges { node { id } } } }",
                serde_json::json!({}),
            ),
            (
                "{ transactions(first: 100000) { edges { node { id } } } }",
                serde_json::json!({}),
            ),
            (
                "{ transactions(first: -1) { edges { node { id } } } }",
                serde_json::json!({}),
            ),
            (
                "mutation { transactions(first: 2) { edges { node { id } } } }",
                serde_json::json!({}),
            ),
            (
                "{ me { transactions(first: 2) { edges { node { id } } } } }",
                serde_json::json!({}),
            ),
        ] {
            assert_eq!(limit(query, None, variables), None, "{query}");
        }
        let two =
            "query A { transactions(first: 4) { edges { node { id } } } } query B { me { id } }";
        assert_eq!(
            limit(two, None, serde_json::json!({})),
            None,
            "which operation runs is not known"
        );
    }
}
