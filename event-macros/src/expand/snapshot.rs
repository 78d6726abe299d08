//! Snapshots of one expansion of each macro, so that a change to the generated code is a visible
//! diff of `event-macros/tests/snapshots/*.expanded.rs`. Run with `UPDATE_SNAPSHOTS=1` to
//! accept a change (a missing snapshot is written, except under CI, where it fails).

use std::path::PathBuf;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, Expr, Item, ItemFn, Stmt};

use super::{event, handler};

#[test]
fn handler_expansion() {
    let expanded = expand_handler(quote! {
        /// Marks the task's reminders done.
        #[event_handler(
            pubsub = "kafka-pubsub",
            topic = "task-events",
            route = "/api/events/task-completed",
            retry = [30, 300, 1800],
            dlq = "task-events-dlq",
            idempotency_key = "{task_id}-{user_id}",
        )]
        pub async fn on_task_completed(event: TaskCompleted, id: EventId) -> anyhow::Result<()> {
            tracing::info!(task_id = event.task_id, event_id = %id.0, "task completed");
            Ok(())
        }
    });
    assert_snapshot("handler", expanded);
}

#[test]
fn batch_handler_expansion() {
    let expanded = expand_handler(quote! {
        #[event_handler(topic = "samples", bulk(max_messages = 100, max_await_ms = 50), retry = [1])]
        async fn ingest(samples: Batch<Sample>, State(db): State<Db>) -> Vec<Outcome> {
            db.insert_all(&samples).await
        }
    });
    assert_snapshot("batch_handler", expanded);
}

/// The expansion of `#[event_handler(..)]` on the function `item`.
fn expand_handler(item: TokenStream) -> TokenStream {
    let mut item: ItemFn = syn::parse2(item).unwrap();
    let ours = item
        .attrs
        .iter()
        .position(|attr| attr.path().is_ident("event_handler"))
        .unwrap();
    let args = item
        .attrs
        .remove(ours)
        .meta
        .require_list()
        .unwrap()
        .tokens
        .clone();
    handler::expand(args, &item).unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn derive_expansion() {
    let input: DeriveInput = syn::parse2(quote! {
        #[derive(Debug, Clone, Serialize, Deserialize, Event, JsonSchema)]
        #[serde(tag = "event_type")]
        #[event(version = "1.0", schema)]
        pub enum TaskEvent {
            #[serde(rename = "task.created")]
            Created { event_id: String, event_version: String, task_id: i64, user_id: String, title: String },
            #[serde(rename = "task.completed")]
            Completed { event_id: String, event_version: String, task_id: i64, user_id: String },
            #[event(type = "task.reassigned")]
            Reassigned { event_id: String, task_id: i64, #[event(partition_key)] new_owner: String },
        }
    })
    .unwrap();
    let expanded = event::derive(&input).unwrap_or_else(|err| panic!("{err}"));
    assert_snapshot("derive", expanded);
}

#[test]
fn body_expansion() {
    let body: DeriveInput = syn::parse2(quote! {
        #[derive(Debug, Clone, Serialize, Deserialize, Event)]
        #[event(body)]
        pub struct TaskChange { event_id: String, event_version: String, task_id: i64, user_id: String }
    })
    .unwrap();
    let event: DeriveInput = syn::parse2(quote! {
        #[derive(Debug, Clone, Serialize, Deserialize, Event)]
        #[serde(tag = "event_type")]
        #[event(version = "1.0")]
        pub enum TaskChanged {
            #[serde(rename = "task.created")]
            Created(TaskChange),
            #[serde(rename = "task.deleted")]
            Deleted(TaskChange),
            #[serde(rename = "task.renamed")]
            Renamed { event_id: String, task_id: i64, user_id: String, title: String },
        }
    })
    .unwrap();
    let mut expanded = event::derive(&body).unwrap_or_else(|err| panic!("{err}"));
    expanded.extend(event::derive(&event).unwrap_or_else(|err| panic!("{err}")));
    assert_snapshot("body", expanded);
}

fn assert_snapshot(name: &str, expanded: TokenStream) {
    let file: syn::File = syn::parse2(expanded).expect("the expansion parses as items");
    let actual: Vec<String> = file.items.iter().map(unparse).collect();
    let actual = actual.join("\n");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/snapshots/{name}.expanded.rs"));
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");
    match std::fs::read_to_string(&path) {
        Ok(expected) if !update => {
            if expected != actual {
                let (line, want, got) = expected
                    .lines()
                    .chain(std::iter::repeat(""))
                    .zip(actual.lines().chain(std::iter::repeat("")))
                    .enumerate()
                    .find(|(_, (want, got))| want != got)
                    .map(|(i, (want, got))| (i + 1, want, got))
                    .unwrap_or((0, "", ""));
                panic!(
                    "the expansion differs from {} at line {line}:\n  snapshot: {want}\n  now:      {got}\n\n\
                     whole expansion now:\n{actual}\nrun with UPDATE_SNAPSHOTS=1 to accept it",
                    path.display()
                );
            }
        }
        // A missing snapshot is written on a developer's machine, and fails under CI, where a
        // snapshot written and passed would prove nothing.
        Err(_) if !update && std::env::var_os("CI").is_some() => panic!(
            "{} is missing: run the test locally (or with UPDATE_SNAPSHOTS=1) and commit it",
            path.display()
        ),
        _ => {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &actual).unwrap();
        }
    }
}

/// One item as prettyplease prints it, except that the body of a macro call (`submit! { .. }`),
/// which prettyplease leaves as a run of tokens, is printed as the expression it is, also for a
/// call inside a `const _: () = { .. };` block.
fn unparse(item: &Item) -> String {
    if let Some(printed) = unparse_block(item) {
        return printed;
    }
    if let Item::Macro(call) = item {
        if let Ok(body) = syn::parse2::<Expr>(call.mac.tokens.clone()) {
            let printed = prettyplease::unparse(&syn::parse_quote!(const _: () = #body;));
            let body = printed
                .trim_start_matches("const _: () = ")
                .trim_end()
                .trim_end_matches(';');
            let body: Vec<String> = body.lines().map(|line| format!("    {line}")).collect();
            let path = &call.mac.path;
            let path = quote!(#path).to_string().replace(' ', "");
            return format!("{path}! {{\n{}\n}}\n", body.join("\n"));
        }
    }
    prettyplease::unparse(&syn::File {
        shebang: None,
        attrs: Vec::new(),
        items: vec![item.clone()],
    })
}

/// A `const _: () = { .. };` block holding macro calls: each call is printed by [`unparse`] and
/// put back where a placeholder item held its place.
fn unparse_block(item: &Item) -> Option<String> {
    let Item::Const(konst) = item else {
        return None;
    };
    let Expr::Block(block) = &*konst.expr else {
        return None;
    };
    let mut konst = konst.clone();
    let mut calls = Vec::new();
    let Expr::Block(placeheld) = &mut *konst.expr else {
        unreachable!()
    };
    for stmt in &mut placeheld.block.stmts {
        let call = match stmt {
            Stmt::Item(Item::Macro(call)) => call.clone(),
            Stmt::Macro(call) => syn::ItemMacro {
                attrs: call.attrs.clone(),
                ident: None,
                mac: call.mac.clone(),
                semi_token: call.semi_token,
            },
            _ => continue,
        };
        let placeholder = quote::format_ident!("__SNAPSHOT_MACRO_{}", calls.len());
        *stmt = syn::parse_quote!(const #placeholder: () = (););
        calls.push(unparse(&Item::Macro(call)));
    }
    if calls.is_empty() || block.block.stmts.is_empty() {
        return None;
    }
    let mut printed = prettyplease::unparse(&syn::File {
        shebang: None,
        attrs: Vec::new(),
        items: vec![Item::Const(konst)],
    });
    for (i, call) in calls.iter().enumerate() {
        let line = format!("    const __SNAPSHOT_MACRO_{i}: () = ();\n");
        let indented: String = call
            .trim_end()
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect();
        printed = printed.replace(&line, &indented);
    }
    Some(printed)
}
