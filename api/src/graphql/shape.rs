//! Limits on the shape of a query that depth and complexity do not catch:
//! aliases (one field asked many times under different names), root fields
//! per operation, sensitive mutations repeated in one operation, and
//! sensitive mutations inside a batched HTTP request.
//!
//! Checked after parsing (and after Automatic Persisted Queries have
//! supplied the text), so hash-only requests are checked too.

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult};
use domain::ErrorCode;

use crate::error::coded_server_error as refuse;

/// Most aliased fields in one document.
pub const MAX_ALIASES: usize = 30;
/// Most root fields in one operation.
pub const MAX_ROOT_FIELDS: usize = 20;
/// Mutations that sign in or move money: at most once per operation, and
/// never inside a batch (each attempt must meet the rate limits alone).
pub const SENSITIVE_MUTATIONS: [&str; 12] = [
    "login",
    "startOAuthLogin",
    "changePassword",
    "finishWebauthnRegistration",
    "register",
    "refreshSession",
    "finishWebauthnLogin",
    "completeOAuthLogin",
    "finishStepUp",
    "deposit",
    "withdraw",
    "transfer",
];

/// How an operation reached the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin {
    /// One of several operations of a batched HTTP request.
    pub in_batch: bool,
    /// An HTTP `GET`, which may run queries only. The HTTP layer refuses a
    /// mutation it can see; this catches the one it cannot, a hash-only
    /// persisted query whose stored document is a mutation.
    pub via_get: bool,
}

/// Walks a selection set, expanding fragments, calling `visit` on every
/// field; gives up (returns false) after `budget` steps.
fn walk<'a>(
    doc: &'a ExecutableDocument,
    set: &'a SelectionSet,
    depth: usize,
    budget: &mut usize,
    visit: &mut dyn FnMut(&'a async_graphql::parser::types::Field, usize),
) -> bool {
    for item in &set.items {
        if *budget == 0 || depth > 64 {
            return false;
        }
        *budget -= 1;
        let inner = match &item.node {
            Selection::Field(field) => {
                visit(&field.node, depth);
                &field.node.selection_set.node
            }
            Selection::InlineFragment(fragment) => &fragment.node.selection_set.node,
            Selection::FragmentSpread(spread) => {
                match doc.fragments.get(&spread.node.fragment_name.node) {
                    Some(fragment) => &fragment.node.selection_set.node,
                    None => continue,
                }
            }
        };
        let nested = if matches!(item.node, Selection::Field(_)) {
            depth + 1
        } else {
            depth
        };
        if !walk(doc, inner, nested, budget, visit) {
            return false;
        }
    }
    true
}

/// Checks a parsed document; `in_batch` when it came in a batch.
pub fn check(doc: &ExecutableDocument, in_batch: bool) -> Result<(), ServerError> {
    let mut aliases = 0usize;
    for (_, operation) in doc.operations.iter() {
        let mut root_fields = 0usize;
        let mut sensitive: Vec<&str> = Vec::new();
        let mutation = operation.node.ty == OperationType::Mutation;
        let mut budget = 20_000usize;
        let complete = walk(
            doc,
            &operation.node.selection_set.node,
            0,
            &mut budget,
            &mut |field, depth| {
                if field.alias.is_some() {
                    aliases += 1;
                }
                if depth == 0 {
                    root_fields += 1;
                    let name = field.name.node.as_str();
                    if mutation && SENSITIVE_MUTATIONS.contains(&name) {
                        sensitive.push(name);
                    }
                }
            },
        );
        if !complete {
            return Err(refuse(
                ErrorCode::QueryTooComplex,
                "the query selects too many fields".to_owned(),
            ));
        }
        if root_fields > MAX_ROOT_FIELDS {
            return Err(refuse(
                ErrorCode::QueryTooComplex,
                format!("an operation may select at most {MAX_ROOT_FIELDS} root fields"),
            ));
        }
        if let Some(first) = sensitive.first() {
            if sensitive.len() > 1 {
                return Err(refuse(
                    ErrorCode::QueryTooComplex,
                    format!(
                        "{first} and the other sign-in and money mutations may appear once per operation"
                    ),
                ));
            }
            if in_batch {
                return Err(refuse(
                    ErrorCode::BadUserInput,
                    format!("{first} cannot be sent in a batch: send it in a request of its own"),
                ));
            }
        }
    }
    if aliases > MAX_ALIASES {
        return Err(refuse(
            ErrorCode::QueryTooComplex,
            format!("a query may use at most {MAX_ALIASES} aliases"),
        ));
    }
    Ok(())
}

/// Checks a parsed document against the limits, and against the method
/// and batch the request came in.
pub fn check_request(doc: &ExecutableDocument, origin: Origin) -> ServerResult<()> {
    check(doc, origin.in_batch)?;
    if origin.via_get
        && doc
            .operations
            .iter()
            .any(|(_, op)| op.node.ty != OperationType::Query)
    {
        return Err(refuse(
            ErrorCode::BadUserInput,
            "GET requests may only run queries: send mutations with POST".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(query: &str, in_batch: bool) -> Option<String> {
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        check(&doc, in_batch).err().map(|e| {
            e.extensions
                .and_then(|x| x.get("code").cloned())
                .map(|v| v.to_string())
                .unwrap_or_default()
        })
    }

    #[test]
    fn aliases_are_limited() {
        let aliases = |n: usize| -> String {
            let inner: String = (0..n).map(|i| format!("a{i}: id ")).collect();
            format!("{{ me {{ {inner} }} }}")
        };
        assert_eq!(code_of(&aliases(MAX_ALIASES), false), None);
        assert_eq!(
            code_of(&aliases(MAX_ALIASES + 1), false).as_deref(),
            Some("\"QUERY_TOO_COMPLEX\"")
        );
    }

    #[test]
    fn aliases_in_fragments_count() {
        let q = "query { ...F ...F } fragment F on Query { a: me { id } b: me { id } }";
        let doc = async_graphql::parser::parse_query(q).expect("parses");
        assert!(check(&doc, false).is_ok());
        let fields: String = (0..16).map(|i| format!("x{i}: me {{ id }} ")).collect();
        let q = format!("query {{ ...F ...F }} fragment F on Query {{ {fields} }}");
        assert_eq!(code_of(&q, false).as_deref(), Some("\"QUERY_TOO_COMPLEX\""));
    }

    #[test]
    fn root_fields_are_limited() {
        let fields: String = (0..=MAX_ROOT_FIELDS).map(|_| "me { id } ").collect();
        assert_eq!(
            code_of(&format!("{{ {fields} }}"), false).as_deref(),
            Some("\"QUERY_TOO_COMPLEX\"")
        );
    }

    #[test]
    fn sensitive_mutations_once_and_never_batched() {
        let twice = r#"mutation { a: login(input: {email: "a@b.c", password: "x"}) { __typename } b: login(input: {email: "a@b.c", password: "y"}) { __typename } }"#;
        assert_eq!(
            code_of(twice, false).as_deref(),
            Some("\"QUERY_TOO_COMPLEX\"")
        );
        let once = r#"mutation { login(input: {email: "a@b.c", password: "x"}) { __typename } }"#;
        assert_eq!(code_of(once, false), None);
        assert_eq!(code_of(once, true).as_deref(), Some("\"BAD_USER_INPUT\""));
        assert_eq!(code_of("{ me { id } }", true), None);
    }
}
