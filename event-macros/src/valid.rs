//! Rules that look at more than one thing: the handler's signature, names that must be valid
//! for Kafka and Dapr, key templates, and the shape of an event type.

use std::collections::HashMap;

use syn::{FnArg, Type};

use crate::ast::{self, Data, Handler, Input, Style};
use crate::attr::RetryMode;
use crate::ctxt::Ctxt;
use crate::mirror::{INLINE_RETRY_LIMIT_SECS, MAX_TOPIC_LEN, TOPIC_RULE};

/// Checks an `#[event_handler]`: its signature, then its arguments against each other.
pub fn handler(cx: &Ctxt, handler: &Handler) {
    signature(cx, handler);

    let args = &handler.args;
    for lit in [&args.topic, &args.dlq].into_iter().flatten() {
        if let Err(problem) = topic_name(&lit.value()) {
            cx.error_spanned_by(lit, problem);
        }
    }
    if let (Some(topic), Some(dlq)) = (&args.topic, &args.dlq) {
        if topic.value() == dlq.value() {
            cx.error_spanned_by(
                dlq,
                "the dead-letter topic must differ from the topic it guards, or failed events would be redelivered to this handler forever",
            );
        }
    }
    if let Some(pubsub) = args.pubsub.as_ref().filter(|p| p.value().trim().is_empty()) {
        cx.error_spanned_by(pubsub, "`pubsub` names a Dapr pubsub component and cannot be empty; leave it out for the app's default");
    }
    if let Some(lit) = &args.route {
        if let Err(problem) = route(&lit.value()) {
            cx.error_spanned_by(lit, problem);
        }
    }
    if let (Some(mode), Some(retry)) = (&args.retry_mode, &args.retry) {
        let total = retry
            .delays
            .iter()
            .fold(0u64, |sum, d| sum.saturating_add(*d));
        if mode.mode == RetryMode::Inline && total > INLINE_RETRY_LIMIT_SECS {
            cx.error_spanned_by(
                &mode.lit,
                format!(
                    "inline retries hold the delivery: this schedule totals {total} s, over the {INLINE_RETRY_LIMIT_SECS} s limit; use `retry_mode = \"delayed\"`"
                ),
            );
        }
    }
    if let Some(lit) = &args.idempotency_key {
        if let Err(problem) = key_template(&lit.value()) {
            cx.error_spanned_by(lit, problem);
        }
    }
    order(cx, handler);
    batch(cx, handler);
}

/// `unordered` and `on_dead_letter` choose how delayed retries keep a key's order: they mean
/// nothing without delayed retries, nor together, nor on a batch handler (which runs a whole
/// batch in one call, so it keeps no per-key order).
fn order(cx: &Ctxt, handler: &Handler) {
    let args = &handler.args;
    let delayed = args.retry.is_some()
        && args
            .retry_mode
            .as_ref()
            .is_none_or(|m| m.mode == RetryMode::Delayed);
    if let Some(flag) = &args.unordered {
        if !delayed {
            cx.error_spanned_by(
                flag,
                "`unordered` gives up per-key order on delayed retries, and this handler has none: remove it",
            );
        } else if handler.batch.is_some() {
            cx.error_spanned_by(
                flag,
                "a batch handler keeps no per-key order across delayed retries already: remove `unordered`",
            );
        }
    }
    if let Some(then) = &args.on_dead_letter {
        let problem = if !delayed {
            Some("`on_dead_letter` says what a dead letter does to its key's later events, which only delayed retries hold back: add `retry = [..]` or remove it")
        } else if args.unordered.is_some() {
            Some("`on_dead_letter` with `unordered`: an unordered handler holds nothing back; remove one of them")
        } else if handler.batch.is_some() {
            Some("a batch handler keeps no per-key order across delayed retries, so `on_dead_letter` has nothing to hold or release")
        } else {
            None
        };
        if let Some(problem) = problem {
            cx.error_spanned_by(&then.lit, problem);
        }
    }
}

/// A batch handler (`Vec<T>` or `Batch<T>` first) takes bulk deliveries, and is not idempotent:
/// claims are per event.
fn batch(cx: &Ctxt, handler: &Handler) {
    let (Some(_), Some(first)) = (handler.batch, handler.event) else {
        return;
    };
    if handler.args.bulk.is_none() {
        cx.error_spanned_by(
            first,
            "a batch handler (first argument `Vec<T>` or `Batch<T>`) takes bulk deliveries: add `bulk` or `bulk(max_messages = .., max_await_ms = ..)`",
        );
    }
    if handler.args.idempotent || handler.args.idempotency_key.is_some() {
        cx.error_spanned_by(
            first,
            "a batch handler cannot be `idempotent`: claims are per event; take single events, or deduplicate inside the batch",
        );
    }
}

fn signature(cx: &Ctxt, handler: &Handler) {
    let sig = &handler.item.sig;
    if let Some(constness) = &sig.constness {
        cx.error_spanned_by(constness, "an #[event_handler] cannot be `const`");
    }
    if sig.asyncness.is_none() {
        cx.error_spanned_by(sig.fn_token, "#[event_handler] needs an `async fn`");
    }
    if let Some(unsafety) = &sig.unsafety {
        cx.error_spanned_by(unsafety, "an #[event_handler] cannot be `unsafe`: the runtime calls it with no contract to uphold");
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(abi, "an #[event_handler] cannot declare an ABI");
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            "an #[event_handler] cannot be generic: the runtime needs the concrete event type to subscribe and decode",
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        cx.error_spanned_by(
            where_clause,
            "an #[event_handler] cannot have a `where` clause: it takes concrete types",
        );
    }
    if let Some(variadic) = &sig.variadic {
        cx.error_spanned_by(variadic, "an #[event_handler] cannot be variadic");
    }
    let receiver = sig.inputs.iter().find_map(|arg| match arg {
        FnArg::Receiver(receiver) => Some(receiver),
        FnArg::Typed(_) => None,
    });
    if let Some(receiver) = receiver {
        cx.error_spanned_by(
            receiver,
            "an #[event_handler] cannot be a method: make it a free `async fn` outside the `impl` block",
        );
    } else if handler.event.is_none() {
        cx.error_at(
            sig.paren_token.span.join(),
            "the first argument must be the event, like `async fn on_task_completed(event: TaskCompleted)`",
        );
    }
    for ty in handler
        .event
        .iter()
        .chain(&handler.extractors)
        .chain(&handler.output)
    {
        if let Type::ImplTrait(_) = ty {
            cx.error_spanned_by(
                ty,
                "write the concrete type here: the generated adapter has to name it",
            );
        }
    }
}

/// Checks a `#[derive(Event)]` type: the attributes, then the struct's or the enum's rules.
pub fn event(cx: &Ctxt, input: &Input) {
    if let Some(body) = &input.attrs.body {
        return check_body(cx, input, body);
    }
    check_version(cx, input);
    check_schema_is_concrete(cx, input);
    check_type_attr(cx, input);
    match &input.data {
        Data::Struct(style, fields) => check_struct(cx, input, *style, fields),
        Data::Enum(variants) => check_enum(cx, input, variants),
        Data::Union => cx.error_spanned_by(
            &input.original.ident,
            "derive(Event) works on structs and enums, not unions",
        ),
    }
}

/// `#[event(body)]`: a struct with named fields and a partition key (or unkeyed). The enum whose
/// newtype variants hold it gives the type and the version, so the body names neither.
fn check_body(cx: &Ctxt, input: &Input, body: &syn::Path) {
    let attrs = &input.attrs;
    let ident = &input.original.ident;
    let misplaced: [(Option<&dyn quote::ToTokens>, &str); 4] = [
        (attrs.ty.as_ref().map(|t| t as _), "type"),
        (attrs.version.as_ref().map(|t| t as _), "version"),
        (attrs.upcast_from.as_ref().map(|t| t as _), "upcast_from"),
        (attrs.schema.as_ref().map(|t| t as _), "schema"),
    ];
    for (tokens, key) in misplaced {
        if let Some(tokens) = tokens {
            cx.error_spanned_by(
                tokens,
                format!("`{key}` belongs on the enum event whose variants hold this body, not on the body: remove it here"),
            );
        }
    }
    match &input.data {
        Data::Struct(Style::Named, fields) => {
            no_body_fields(
                cx,
                fields,
                "a body cannot hold another body: write its fields here",
            );
            let missing = format!("`{ident}` has no partition key");
            keys(cx, input, fields, ident, missing);
        }
        _ => cx.error_spanned_by(
            body,
            "`body` needs a struct with named fields: they travel beside the enum's tag",
        ),
    }
}

/// An event declares its schema version, as `major.minor`.
fn check_version(cx: &Ctxt, input: &Input) {
    let ident = &input.original.ident;
    match &input.attrs.version {
        None => cx.error_spanned_by(
            ident,
            format!("`{ident}` needs a schema version: `#[event(version = \"1.0\")]`"),
        ),
        Some(version) if !valid_version(&version.value()) => cx.error_spanned_by(
            version,
            format!(
                "invalid version \"{}\": write `major.minor`, like \"1.0\" or \"2.13\"",
                version.value()
            ),
        ),
        Some(_) => {}
    }
}

/// `schema` needs a concrete type: a generic one has no one JSON Schema.
fn check_schema_is_concrete(cx: &Ctxt, input: &Input) {
    if let Some(schema) = &input.attrs.schema {
        if !input.original.generics.params.is_empty() {
            cx.error_spanned_by(
                schema,
                "`schema` needs a concrete type: a generic event type has no one JSON Schema, remove `schema`",
            );
        }
    }
}

/// `type` on the type itself belongs to a struct, and is not empty.
fn check_type_attr(cx: &Ctxt, input: &Input) {
    let Some(ty) = &input.attrs.ty else {
        return;
    };
    if matches!(input.data, Data::Enum(_)) {
        cx.error_spanned_by(
            ty,
            "on an enum each variant gives its own type: move `type` to `#[event(type = \"...\")]` on each variant, or use `#[serde(rename = \"...\")]` there",
        );
    } else if ty.value().is_empty() {
        cx.error_spanned_by(ty, "the CloudEvent type cannot be empty");
    }
}

/// A struct event has named fields, a CloudEvent type, and a partition key (or is unkeyed).
fn check_struct(cx: &Ctxt, input: &Input, style: Style, fields: &[ast::Field]) {
    let ident = &input.original.ident;
    if style != Style::Named {
        cx.error_spanned_by(
            ident,
            "derive(Event) needs a struct with named fields: an event travels as a JSON object",
        );
        return;
    }
    if input.attrs.ty.is_none() {
        cx.error_spanned_by(
            ident,
            format!("`{ident}` needs a CloudEvent type: `#[event(type = \"task.completed\", version = \"1.0\")]`"),
        );
    }
    check_body_fields(cx, input, fields);
    let missing = format!("`{ident}` has no partition key");
    keys(cx, input, fields, ident, missing);
}

/// A struct event's `#[event(body)]` field: one, flattened by serde (its fields travel beside
/// the event's), in a concrete struct (its fields are known only to a concrete type).
fn check_body_fields(cx: &Ctxt, input: &Input, fields: &[ast::Field]) {
    let mut bodies = fields
        .iter()
        .filter_map(|f| Some((f, f.attrs.body.as_ref()?)));
    let Some((field, word)) = bodies.next() else {
        return;
    };
    for (_, extra) in bodies {
        cx.error_spanned_by(extra, "only one field can be the event's body");
    }
    if !field.attrs.serde_flatten {
        cx.error_spanned_by(
            word,
            "a body field needs `#[serde(flatten)]`: its fields travel beside the event's",
        );
    }
    if !input.original.generics.params.is_empty() {
        cx.error_spanned_by(
            word,
            "a generic event cannot hold a body: its fields are known only to a concrete type; write the fields in the struct, or make it concrete",
        );
    }
}

/// `#[event(body)]` on a field where no body can stand: in a body, or in an enum's variant
/// (which holds its body as `Variant(Body)`).
fn no_body_fields(cx: &Ctxt, fields: &[ast::Field], why: &str) {
    for word in fields.iter().filter_map(|f| f.attrs.body.as_ref()) {
        cx.error_spanned_by(word, why);
    }
}

/// An enum event is internally tagged, has variants, and each variant follows its rules.
fn check_enum(cx: &Ctxt, input: &Input, variants: &[ast::Variant]) {
    check_internally_tagged(cx, input);
    if variants.is_empty() {
        cx.error_spanned_by(
            &input.original.ident,
            "derive(Event) needs at least one variant: each variant is an event type",
        );
    }
    let mut types: HashMap<String, &syn::Ident> = HashMap::new();
    for variant in variants {
        check_variant_type(cx, variant, &mut types);
        check_variant_fields(cx, input, variant);
    }
}

/// An enum event is `#[serde(tag = "...")]` without `content`: the type travels inside the data.
fn check_internally_tagged(cx: &Ctxt, input: &Input) {
    if input.attrs.serde_tag.is_none() {
        cx.error_spanned_by(
            &input.original.ident,
            "derive(Event) on an enum needs `#[serde(tag = \"event_type\")]` (internally tagged) so the type travels inside the data",
        );
    }
    if let Some(content) = &input.attrs.serde_content {
        cx.error_spanned_by(
            content,
            "derive(Event) needs an internally tagged enum: remove `content = ...` so that the fields sit beside the tag",
        );
    }
}

/// Each variant has a CloudEvent type, not empty, and not another variant's (`types` so far).
fn check_variant_type<'a>(
    cx: &Ctxt,
    variant: &'a ast::Variant,
    types: &mut HashMap<String, &'a syn::Ident>,
) {
    let name = variant.ident();
    match variant.event_type() {
        None => cx.error_spanned_by(
            name,
            format!(
                "variant `{name}` needs a type: `#[serde(rename = \"task.created\")]` or `#[event(type = ...)]`"
            ),
        ),
        Some(ty) if ty.value().is_empty() => {
            cx.error_spanned_by(ty, "the CloudEvent type cannot be empty")
        }
        Some(ty) => {
            if let Some(first) = types.insert(ty.value(), name) {
                cx.error_spanned_by(
                    ty,
                    format!("variants `{first}` and `{name}` both have type \"{}\": each needs its own", ty.value()),
                );
            }
        }
    }
}

/// Each variant has named fields, one of them its partition key, unless the event is unkeyed.
fn check_variant_fields(cx: &Ctxt, input: &Input, variant: &ast::Variant) {
    let name = variant.ident();
    let why = format!("a variant holds its body as `{name}(Body)`, not in a field");
    no_body_fields(cx, &variant.fields, &why);
    match variant.style {
        Style::Named => {
            let missing = format!(
                "variant `{name}` of `{}` has no partition key",
                input.original.ident
            );
            keys(cx, input, &variant.fields, name, missing);
        }
        Style::Tuple if variant.fields.len() == 1 => {
            if !input.original.generics.params.is_empty() {
                cx.error_spanned_by(
                    name,
                    format!("variant `{name}` holds a body, which a generic enum cannot: its fields are known only to a concrete enum; write the fields in the variant, or make the enum concrete"),
                );
            }
        }
        _ if input.attrs.unkeyed => {}
        _ => cx.error_spanned_by(
            name,
            format!(
                "variant `{name}` needs named fields, like `{name} {{ user_id: String, .. }}`, or one `#[event(body)]` struct, like `{name}(TaskChange)`: its partition key is one of them"
            ),
        ),
    }
}

/// The partition-key rules for the fields of a struct or of one variant; a missing key is
/// reported at `owner`, the struct's or the variant's name.
fn keys(cx: &Ctxt, input: &Input, fields: &[ast::Field], owner: &syn::Ident, missing: String) {
    let mut marked = fields.iter().filter_map(|f| f.attrs.partition_key.as_ref());
    if let Some(first) = marked.next() {
        if input.attrs.unkeyed {
            cx.error_spanned_by(
                first,
                "`partition_key` contradicts `#[event(unkeyed)]`: remove one of them",
            );
        }
        for extra in marked {
            cx.error_spanned_by(extra, "only one field can be the partition key");
        }
    }
    let own_or_body = ast::partition_key(fields).or_else(|| ast::body_field(fields));
    if !input.attrs.unkeyed && own_or_body.is_none() {
        cx.error_spanned_by(
            owner,
            format!(
                "{missing}: add a `user_id` field, mark a field with `#[event(partition_key)]`, or declare `#[event(unkeyed)]`"
            ),
        );
    }
}

/// Whether `name` is a valid Kafka topic name; the error says which rule it breaks.
pub fn topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("the topic name is empty; {TOPIC_RULE}"));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a valid topic name; {TOPIC_RULE}"));
    }
    let len = name.chars().count();
    if len > MAX_TOPIC_LEN {
        return Err(format!(
            "this topic name is {len} characters long; {TOPIC_RULE}"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{c:?} is not allowed in a topic name; {TOPIC_RULE}"
        ));
    }
    Ok(())
}

/// Whether `route` is a usable HTTP path for Dapr to deliver to.
pub fn route(route: &str) -> Result<(), String> {
    if !route.starts_with('/') {
        return Err(
            "a route is an absolute path: start it with `/`, like \"/events/task-completed\""
                .into(),
        );
    }
    if route.chars().any(char::is_whitespace) {
        return Err("a route cannot contain whitespace".into());
    }
    if route.contains(['?', '#']) {
        return Err("a route is a path only: no `?` query or `#` fragment".into());
    }
    Ok(())
}

/// Whether `version` is `major.minor`, both decimal numbers.
pub fn valid_version(version: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    version
        .split_once('.')
        .is_some_and(|(major, minor)| digits(major) && digits(minor))
}

/// The placeholders of an `idempotency_key` template like `"{event_type}-{task_id}"`, in order.
///
/// Two placeholders need a literal character between them: the runtime escapes that character
/// in the values (`render_key`), which keeps distinct values apart; with nothing between them,
/// `{a}{b}` renders `("xy", "")` and `("x", "y")` alike.
pub fn key_template(template: &str) -> Result<Vec<&str>, String> {
    const FORM: &str = "write placeholders as `{field}`, like \"{event_type}-{task_id}\"";
    if template.is_empty() {
        return Err(format!(
            "an empty idempotency_key would give every event the same key; {FORM}"
        ));
    }
    let mut placeholders = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find(['{', '}']) {
        if rest[start..].starts_with('}') {
            return Err(format!("unbalanced `}}` in idempotency_key; {FORM}"));
        }
        let after = &rest[start + 1..];
        let end = after
            .find(['{', '}'])
            .filter(|&end| after[end..].starts_with('}'));
        let Some(end) = end else {
            return Err(format!("unbalanced `{{` in idempotency_key; {FORM}"));
        };
        let name = &after[..end];
        if !is_identifier(name) {
            return Err(format!(
                "`{{{name}}}` is not a placeholder: a placeholder names a field; {FORM}"
            ));
        }
        if let (0, Some(previous)) = (start, placeholders.last()) {
            return Err(format!(
                "`{{{previous}}}{{{name}}}` renders (\"xy\", \"\") and (\"x\", \"y\") as one key, so the second event would be skipped; put a separator between `{{{previous}}}` and `{{{name}}}`, like `{{{previous}}}-{{{name}}}`"
            ));
        }
        placeholders.push(name);
        rest = &after[end + 1..];
    }
    if placeholders.is_empty() {
        return Err(format!(
            "idempotency_key has no placeholder, so every event would share one key; {FORM}"
        ));
    }
    Ok(placeholders)
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name != "_"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["task-events", "a", "A.b_c-9", &"x".repeat(249), "..."] {
            assert_eq!(topic_name(ok), Ok(()), "{ok}");
        }
        assert!(topic_name("")
            .unwrap_err()
            .starts_with("the topic name is empty"));
        assert!(topic_name(".")
            .unwrap_err()
            .starts_with("`.` is not a valid topic name"));
        assert!(topic_name("..")
            .unwrap_err()
            .starts_with("`..` is not a valid topic name"));
        assert!(topic_name(&"x".repeat(250))
            .unwrap_err()
            .starts_with("this topic name is 250 characters long"));
        assert!(topic_name("task events")
            .unwrap_err()
            .starts_with("' ' is not allowed in a topic name"));
        assert!(topic_name("tâche")
            .unwrap_err()
            .starts_with("'â' is not allowed"));
        assert!(topic_name("a/b").unwrap_err().ends_with(TOPIC_RULE));
    }

    #[test]
    fn routes() {
        assert_eq!(route("/api/events/task-completed"), Ok(()));
        assert_eq!(route("/"), Ok(()));
        assert!(route("api").is_err());
        assert!(route("/a b").is_err());
        assert!(route("/a?b=1").is_err());
        assert!(route("/a#b").is_err());
    }

    #[test]
    fn versions() {
        for ok in ["1.0", "2.13", "10.0"] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in ["1", "1.", ".1", "1.0.0", "v1.0", "1.x", "", "1 .0"] {
            assert!(!valid_version(bad), "{bad}");
        }
    }

    #[test]
    fn key_templates() {
        assert_eq!(
            key_template("{event_type}-{task_id}-{timestamp}"),
            Ok(vec!["event_type", "task_id", "timestamp"])
        );
        assert_eq!(key_template("order:{id}"), Ok(vec!["id"]));
        assert_eq!(key_template("{_a1}.{b}"), Ok(vec!["_a1", "b"]));
        let err = |t: &str| key_template(t).unwrap_err();
        assert!(err("").starts_with("an empty idempotency_key"));
        assert!(err("constant").starts_with("idempotency_key has no placeholder"));
        assert!(err("{task_id").starts_with("unbalanced `{`"));
        assert!(err("{a{b}").starts_with("unbalanced `{`"));
        assert!(err("task_id}").starts_with("unbalanced `}`"));
        assert!(err("{a}}").starts_with("unbalanced `}`"));
        assert!(err("{}").starts_with("`{}` is not a placeholder"));
        assert!(err("{task-id}").starts_with("`{task-id}` is not a placeholder"));
        assert!(err("{1a}").starts_with("`{1a}` is not a placeholder"));
    }

    /// `{a}{b}` renders ("xy", "") and ("x", "y") alike: two events, one claim.
    #[test]
    fn key_templates_separate_their_placeholders() {
        let err = |t: &str| key_template(t).unwrap_err();
        assert_eq!(
            err("{a}{b}"),
            "`{a}{b}` renders (\"xy\", \"\") and (\"x\", \"y\") as one key, so the second event would be skipped; put a separator between `{a}` and `{b}`, like `{a}-{b}`"
        );
        assert!(err("order:{id}-{a}{b}").contains("between `{a}` and `{b}`"));
        assert!(err("{a}{b}-{c}").contains("between `{a}` and `{b}`"));
        for ok in ["{a}-{b}", "{a}:{b}:{c}", "x{a}y{b}z", "{a} {b}"] {
            assert!(key_template(ok).is_ok(), "{ok}");
        }
    }
}
