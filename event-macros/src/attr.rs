//! Attribute arguments, parsed by hand into plain structs that keep the user's tokens.
//!
//! A key's value is checked here when the check needs nothing but that value (a delay is a
//! whole number, a metadata value is a string); rules across keys and the signature live in
//! `valid.rs`. Every mistake goes to the [`Ctxt`] and parsing carries on, so that one build
//! reports all of them.

use std::fmt::Display;
use std::str::FromStr;

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{token, Attribute, Expr, ExprLit, Ident, Lit, LitInt, LitStr, MetaList, Path, Token};

use crate::ctxt::{tokens_text, Ctxt};
use crate::mirror::exponential;
use crate::symbol::*;

/// The arguments of `#[event_handler(...)]`.
pub struct HandlerArgs {
    pub topic: Option<LitStr>,
    pub pubsub: Option<LitStr>,
    pub route: Option<LitStr>,
    pub retry: Option<Retry>,
    pub retry_mode: Option<RetryModeArg>,
    pub dlq: Option<LitStr>,
    pub idempotent: bool,
    pub idempotency_key: Option<LitStr>,
    pub bulk: Option<Bulk>,
    pub raw_payload: bool,
    pub metadata: Option<Vec<(Ident, LitStr)>>,
    pub timeout: Option<u64>,
    /// `concurrency = N`: at most N deliveries at once, in lanes by partition key.
    pub concurrency: Option<u32>,
    /// `unordered`: delayed retries give up per-key order.
    pub unordered: Option<Ident>,
    /// `on_dead_letter = "release" | "hold"`.
    pub on_dead_letter: Option<OnDeadLetter>,
}

/// `on_dead_letter = "release" | "hold"`: what a dead letter does to its key's later events.
pub struct OnDeadLetter {
    pub hold: bool,
    pub lit: LitStr,
}

/// `retry = [..]` or `retry = exponential(..)`, as the delays (seconds) between attempts.
pub struct Retry {
    pub delays: Vec<u64>,
}

/// `retry_mode = "inline" | "delayed"`.
pub struct RetryModeArg {
    pub mode: RetryMode,
    pub lit: LitStr,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RetryMode {
    Inline,
    Delayed,
}

/// `bulk` or `bulk(max_messages = .., max_await_ms = ..)`.
pub struct Bulk {
    pub max_messages: u32,
    pub max_await_ms: u32,
}

impl Bulk {
    const DEFAULT: Bulk = Bulk {
        max_messages: 100,
        max_await_ms: 1000,
    };
}

/// The most events one bulk delivery may ask for: `bulk(max_messages = ..)` above it does not
/// compile. Dapr's default `maxMessagesCount` is 100; the app reads a whole batch into memory
/// (start-up checks that the largest batch fits `EVENTS_MAX_BULK_BODY_BYTES`).
///
/// A proc-macro crate can export nothing but macros, so the runtime cannot import this
/// constant: a runtime check of the same cap must keep its own copy equal to this one.
pub const MAX_BULK_MESSAGES: u32 = 1000;

/// How an exponential schedule is bounded: more retries than this is a loop, not a schedule.
const MAX_EXPONENTIAL_ATTEMPTS: u64 = 100;

impl HandlerArgs {
    /// Parses the tokens inside `#[event_handler(...)]`.
    pub fn parse(cx: &Ctxt, args: TokenStream) -> HandlerArgs {
        let mut topic = Attr::none(cx, TOPIC);
        let mut pubsub = Attr::none(cx, PUBSUB);
        let mut route = Attr::none(cx, ROUTE);
        let mut retry = Attr::none(cx, RETRY);
        let mut retry_mode = Attr::none(cx, RETRY_MODE);
        let mut dlq = Attr::none(cx, DLQ);
        let mut idempotent = Attr::none(cx, IDEMPOTENT);
        let mut idempotency_key = Attr::none(cx, IDEMPOTENCY_KEY);
        let mut bulk = Attr::none(cx, BULK);
        let mut raw_payload = Attr::none(cx, RAW_PAYLOAD);
        let mut metadata = Attr::none(cx, METADATA);
        let mut timeout = Attr::none(cx, TIMEOUT);
        let mut concurrency = Attr::none(cx, CONCURRENCY);
        let mut unordered = Attr::none(cx, UNORDERED);
        let mut on_dead_letter = Attr::none(cx, ON_DEAD_LETTER);

        let parser = syn::meta::parser(|meta| {
            let key = &meta.path;
            if key == TOPIC {
                topic.set(key, lit_str(cx, &meta, TOPIC)?);
            } else if key == PUBSUB {
                pubsub.set(key, lit_str(cx, &meta, PUBSUB)?);
            } else if key == ROUTE {
                route.set(key, lit_str(cx, &meta, ROUTE)?);
            } else if key == RETRY {
                retry.set(key, parse_retry(cx, &meta)?);
            } else if key == RETRY_MODE {
                let mode =
                    lit_str(cx, &meta, RETRY_MODE)?.and_then(|lit| parse_retry_mode(cx, lit));
                retry_mode.set(key, mode);
            } else if key == DLQ {
                dlq.set(key, lit_str(cx, &meta, DLQ)?);
            } else if key == IDEMPOTENT {
                idempotent.set(key, flag(cx, &meta, IDEMPOTENT)?);
            } else if key == IDEMPOTENCY_KEY {
                idempotency_key.set(key, lit_str(cx, &meta, IDEMPOTENCY_KEY)?);
            } else if key == BULK {
                bulk.set(key, parse_bulk(cx, &meta)?);
            } else if key == RAW_PAYLOAD {
                raw_payload.set(key, flag(cx, &meta, RAW_PAYLOAD)?);
            } else if key == METADATA {
                metadata.set(key, Some(parse_metadata(cx, &meta)?));
            } else if key == TIMEOUT {
                let secs = positive::<u64>(
                    cx,
                    &meta,
                    "`timeout` is whole seconds per run, like `timeout = 30`",
                    "`timeout` must be at least 1 second",
                )?;
                timeout.set(key, secs);
            } else if key == CONCURRENCY {
                let n = positive::<u32>(
                    cx,
                    &meta,
                    "`concurrency` is how many deliveries run at once, like `concurrency = 8`",
                    "`concurrency` must be at least 1 (1 runs one delivery at a time)",
                )?;
                concurrency.set(key, n);
            } else if key == UNORDERED {
                let ident = key.get_ident().cloned();
                unordered.set(key, flag(cx, &meta, UNORDERED)?.and(ident));
            } else if key == ON_DEAD_LETTER {
                let then = lit_str(cx, &meta, ON_DEAD_LETTER)?
                    .and_then(|lit| parse_on_dead_letter(cx, lit));
                on_dead_letter.set(key, then);
            } else {
                unknown(cx, &meta, HANDLER_KEYS, "#[event_handler]")?;
            }
            Ok(())
        });

        match parser.parse2(args) {
            Ok(()) => {
                if !topic.seen {
                    cx.error_at(
                        Span::call_site(),
                        "#[event_handler] needs a `topic`, like `#[event_handler(topic = \"task-events\")]`",
                    );
                }
                if let (Some(mode), false) = (&retry_mode.value, retry.seen) {
                    cx.error_spanned_by(
                        &mode.lit,
                        "`retry_mode` without `retry` has no retries to apply to: add `retry = [30, 300, 1800]` or remove it",
                    );
                }
            }
            // A syntax error stops the parse: keys after it were never seen, so say nothing of them.
            Err(err) => cx.syn_error(err),
        }

        HandlerArgs {
            topic: topic.get(),
            pubsub: pubsub.get(),
            route: route.get(),
            retry: retry.get(),
            retry_mode: retry_mode.get(),
            dlq: dlq.get(),
            idempotent: idempotent.seen,
            idempotency_key: idempotency_key.get(),
            bulk: bulk.get(),
            raw_payload: raw_payload.seen,
            metadata: metadata.get(),
            timeout: timeout.get(),
            concurrency: concurrency.get(),
            unordered: unordered.get(),
            on_dead_letter: on_dead_letter.get(),
        }
    }
}

/// `retry = [30, 300, 1800]` or `retry = exponential(initial = 1, factor = 2, attempts = 10)`.
fn parse_retry(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Retry>> {
    let input = meta.value()?;
    if input.peek(token::Bracket) {
        let content;
        let brackets = syn::bracketed!(content in input);
        let elements = Punctuated::<Expr, Token![,]>::parse_terminated(&content)?;
        if elements.is_empty() {
            cx.error_at(
                brackets.span.join(),
                "`retry` needs at least one delay, like `retry = [30, 300, 1800]`; leave `retry` out for no retries",
            );
            return Ok(None);
        }
        let delays: Vec<Option<u64>> = elements.iter().map(|e| whole_seconds(cx, e)).collect();
        return Ok(delays
            .into_iter()
            .collect::<Option<Vec<u64>>>()
            .map(|delays| Retry { delays }));
    }
    if input.peek(Ident) && input.peek2(token::Paren) {
        let list: MetaList = input.parse()?;
        if list.path == EXPONENTIAL {
            return Ok(parse_exponential(cx, &list).map(|delays| Retry { delays }));
        }
        cx.error_spanned_by(
            &list.path,
            format!(
                "unknown retry schedule `{}`: {RETRY_FORMS}",
                path_name(&list.path)
            ),
        );
        return Ok(None);
    }
    let value: Expr = input.parse()?;
    cx.error_spanned_by(
        &value,
        format!("`retry` takes a list of delays or a schedule: {RETRY_FORMS}"),
    );
    Ok(None)
}

const RETRY_FORMS: &str = "write `retry = [30, 300, 1800]` (seconds) or `retry = exponential(initial = 1, factor = 2, attempts = 10, cap = 512)`";

/// One element of `retry = [..]`: a non-negative integer literal.
fn whole_seconds(cx: &Ctxt, element: &Expr) -> Option<u64> {
    let element = &ungroup(element.clone());
    if let Expr::Lit(ExprLit {
        lit: Lit::Int(lit), ..
    }) = element
    {
        return lit
            .base10_parse::<u64>()
            .map_err(|err| cx.syn_error(err))
            .ok();
    }
    cx.error_spanned_by(
        element,
        format!(
            "retry delays are whole seconds: `{}` is not a non-negative integer, write e.g. `30`",
            tokens_text(element)
        ),
    );
    None
}

/// `exponential(initial = 1, factor = 2, attempts = 10, cap = 512)`, expanded into its delays.
fn parse_exponential(cx: &Ctxt, list: &MetaList) -> Option<Vec<u64>> {
    let mut initial = Attr::none(cx, INITIAL);
    let mut factor = Attr::none(cx, FACTOR);
    let mut attempts = Attr::none(cx, ATTEMPTS);
    let mut cap = Attr::none(cx, CAP);
    let parsed = list.parse_nested_meta(|meta| {
        let key = &meta.path;
        let hint = "values of `exponential(...)` are whole numbers, like `initial = 1`";
        if key == INITIAL {
            let v = lit_int::<u64>(cx, &meta, hint)?;
            initial.set(
                key,
                v.and_then(|(v, lit)| {
                    at_least(
                        cx,
                        v,
                        1,
                        &lit,
                        "`initial` is the first delay, at least 1 second",
                    )
                }),
            );
        } else if key == FACTOR {
            let v = lit_int::<u64>(cx, &meta, hint)?;
            factor.set(
                key,
                v.and_then(|(v, lit)| at_least(cx, v, 1, &lit, "`factor` must be at least 1")),
            );
        } else if key == ATTEMPTS {
            let v = lit_int::<u64>(cx, &meta, hint)?;
            let v = v.and_then(|(v, lit)| {
                at_least(
                    cx,
                    v,
                    1,
                    &lit,
                    "`attempts` (the number of retries) must be at least 1",
                )
                .map(|v| (v, lit))
            });
            let v = v.and_then(|(v, lit)| {
                if v > MAX_EXPONENTIAL_ATTEMPTS {
                    cx.error_spanned_by(
                        lit,
                        format!("`attempts` is at most {MAX_EXPONENTIAL_ATTEMPTS}"),
                    );
                    return None;
                }
                Some(v)
            });
            attempts.set(key, v);
        } else if key == CAP {
            let v = lit_int::<u64>(cx, &meta, hint)?;
            cap.set(
                key,
                v.and_then(|(v, lit)| at_least(cx, v, 1, &lit, "`cap` must be at least 1 second")),
            );
        } else {
            unknown(cx, &meta, EXPONENTIAL_KEYS, "`exponential(...)`")?;
        }
        Ok(())
    });
    if let Err(err) = parsed {
        cx.syn_error(err);
        return None;
    }
    let missing: Vec<String> = [&initial, &factor, &attempts]
        .iter()
        .filter(|a| !a.seen)
        .map(|a| format!("`{}`", a.name))
        .collect();
    if !missing.is_empty() {
        cx.error_spanned_by(
            &list.path,
            format!(
                "`exponential` needs `initial`, `factor` and `attempts` (`cap` is optional); missing {}",
                missing.join(", ")
            ),
        );
        return None;
    }
    Some(exponential(
        initial.get()?,
        factor.get()?,
        attempts.get()?,
        cap.get(),
    ))
}

fn parse_retry_mode(cx: &Ctxt, lit: LitStr) -> Option<RetryModeArg> {
    let value = lit.value();
    let mode = if value == INLINE.0 {
        RetryMode::Inline
    } else if value == DELAYED.0 {
        RetryMode::Delayed
    } else {
        let hint = match did_you_mean(&value, RETRY_MODES) {
            Some(close) => format!(": did you mean \"{close}\"?"),
            None => String::new(),
        };
        cx.error_spanned_by(
            &lit,
            format!("`retry_mode` is \"inline\" or \"delayed\"{hint}"),
        );
        return None;
    };
    Some(RetryModeArg { mode, lit })
}

fn parse_on_dead_letter(cx: &Ctxt, lit: LitStr) -> Option<OnDeadLetter> {
    let value = lit.value();
    if value == RELEASE.0 || value == HOLD.0 {
        return Some(OnDeadLetter {
            hold: value == HOLD.0,
            lit,
        });
    }
    let hint = match did_you_mean(&value, AFTER_DEAD_LETTER) {
        Some(close) => format!(": did you mean \"{close}\"?"),
        None => String::new(),
    };
    cx.error_spanned_by(
        &lit,
        format!("`on_dead_letter` is \"release\" (the key's later events run) or \"hold\" (they wait for the dead letter's replay){hint}"),
    );
    None
}

/// `bulk` or `bulk(max_messages = 100, max_await_ms = 1000)`.
fn parse_bulk(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Bulk>> {
    if !meta.input.peek(token::Paren) {
        return Ok(flag(cx, meta, BULK)?.map(|()| Bulk::DEFAULT));
    }
    let mut max_messages = Attr::none(cx, MAX_MESSAGES);
    let mut max_await_ms = Attr::none(cx, MAX_AWAIT_MS);
    meta.parse_nested_meta(|meta| {
        let key = &meta.path;
        if key == MAX_MESSAGES {
            let v = lit_int::<u32>(
                cx,
                &meta,
                "`max_messages` is a whole number, like `max_messages = 100`",
            )?;
            max_messages.set(
                key,
                v.and_then(|(v, lit)| {
                    at_least(cx, v, 1, &lit, "`max_messages` must be at least 1")?;
                    at_most(
                        cx,
                        v,
                        MAX_BULK_MESSAGES,
                        &lit,
                        &format!("`max_messages` is at most {MAX_BULK_MESSAGES} events per bulk delivery (Dapr's default is 100); lower it, or write `bulk` alone for the default"),
                    )
                }),
            );
        } else if key == MAX_AWAIT_MS {
            let v = lit_int::<u32>(
                cx,
                &meta,
                "`max_await_ms` is whole milliseconds, like `max_await_ms = 1000`",
            )?;
            max_await_ms.set(key, v.map(|(v, _)| v));
        } else {
            unknown(cx, &meta, BULK_KEYS, "`bulk(...)`")?;
        }
        Ok(())
    })?;
    Ok(Some(Bulk {
        max_messages: max_messages.get().unwrap_or(Bulk::DEFAULT.max_messages),
        max_await_ms: max_await_ms.get().unwrap_or(Bulk::DEFAULT.max_await_ms),
    }))
}

/// `metadata(key = "value", ...)`.
fn parse_metadata(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Vec<(Ident, LitStr)>> {
    let mut entries: Vec<(Ident, LitStr)> = Vec::new();
    meta.parse_nested_meta(|entry| {
        let value: Expr = entry.value()?.parse()?;
        let Some(key) = entry.path.get_ident() else {
            cx.error_spanned_by(&entry.path, "metadata keys are plain names, like `priority = \"high\"`");
            return Ok(());
        };
        if entries.iter().any(|(seen, _)| seen == key) {
            cx.error_spanned_by(key, format!("duplicate metadata key `{key}`"));
            return Ok(());
        }
        match value {
            Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) => entries.push((key.clone(), lit)),
            other => cx.error_spanned_by(
                &other,
                format!(
                    "subscription metadata values must be strings (Dapr rejects the whole subscription list otherwise): write \"{}\"",
                    tokens_text(&other)
                ),
            ),
        }
        Ok(())
    })?;
    Ok(entries)
}

/// The `#[event(...)]` and `#[serde(...)]` attributes of a `#[derive(Event)]` type.
pub struct ContainerAttrs {
    pub ty: Option<LitStr>,
    pub version: Option<LitStr>,
    pub unkeyed: bool,
    /// `upcast_from = OlderType`: the previous version of this event, converted with `From`.
    pub upcast_from: Option<Path>,
    /// The `schema` word of `#[event(schema)]`: the JSON Schema comes from `schemars`.
    pub schema: Option<Path>,
    /// `#[serde(tag = "...")]`: the enum is internally tagged.
    pub serde_tag: Option<LitStr>,
    /// `#[serde(content = "...")]`: the enum is adjacently tagged, which the derive rejects.
    pub serde_content: Option<LitStr>,
    /// `#[serde(rename_all ...)]` or `rename_all_fields`: field names are not their idents.
    pub serde_rename_all: bool,
    /// `contract = "path"`: the producer's published JSON Schema (or AsyncAPI document).
    pub contract: Option<LitStr>,
    /// `message = "Name"`: the message of an AsyncAPI `contract`.
    pub message: Option<LitStr>,
    /// The `body` word of `#[event(body)]`: the struct is the fields of an enum event's newtype
    /// variants (`Created(TaskChange)`), not an event of its own.
    pub body: Option<Path>,
    /// The serde attributes a contract check reads.
    pub serde: SerdeContainer,
}

/// What serde does with a container's names and defaults, as far as a contract check needs it.
pub struct SerdeContainer {
    /// `#[serde(rename = "...")]`: a tagged struct's tag value.
    pub rename: Option<LitStr>,
    /// `#[serde(rename_all = "...")]`: the rule for the fields (struct) or variants (enum).
    pub rename_all: Option<LitStr>,
    /// `#[serde(rename_all_fields = "...")]`: the rule for every variant's fields.
    pub rename_all_fields: Option<LitStr>,
    /// `#[serde(default)]` on the container: every field may be missing.
    pub default: bool,
}

impl ContainerAttrs {
    pub fn from_syn(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut ty = Attr::none(cx, TYPE);
        let mut version = Attr::none(cx, VERSION);
        let mut unkeyed = Attr::none(cx, UNKEYED);
        let mut upcast_from = Attr::none(cx, UPCAST_FROM);
        let mut schema = Attr::none(cx, SCHEMA);
        let mut contract = Attr::none(cx, CONTRACT);
        let mut message = Attr::none(cx, MESSAGE);
        let mut body = Attr::none(cx, BODY);
        for attr in attrs.iter().filter(|a| a.path() == EVENT) {
            let parsed = attr.parse_nested_meta(|meta| {
                let key = &meta.path;
                if key == TYPE {
                    ty.set(key, lit_str(cx, &meta, TYPE)?);
                } else if key == VERSION {
                    version.set(key, lit_str(cx, &meta, VERSION)?);
                } else if key == UNKEYED {
                    unkeyed.set(key, flag(cx, &meta, UNKEYED)?);
                } else if key == UPCAST_FROM {
                    upcast_from.set(key, type_path(cx, &meta)?);
                } else if key == SCHEMA {
                    let path = key.clone();
                    schema.set(key, flag(cx, &meta, SCHEMA)?.map(|()| path));
                } else if key == CONTRACT {
                    contract.set(key, lit_str(cx, &meta, CONTRACT)?);
                } else if key == MESSAGE {
                    message.set(key, lit_str(cx, &meta, MESSAGE)?);
                } else if key == BODY {
                    let path = key.clone();
                    body.set(key, flag(cx, &meta, BODY)?.map(|()| path));
                } else {
                    unknown(cx, &meta, CONTAINER_KEYS, "#[event(...)]")?;
                }
                Ok(())
            });
            parsed.unwrap_or_else(|err| cx.syn_error(err));
        }
        ContainerAttrs {
            ty: ty.get(),
            version: version.get(),
            unkeyed: unkeyed.seen,
            upcast_from: upcast_from.get(),
            schema: schema.get(),
            serde_tag: serde_str(attrs, TAG),
            serde_content: serde_str(attrs, CONTENT),
            serde_rename_all: renames_all(attrs),
            contract: contract.get(),
            message: message.get(),
            body: body.get(),
            serde: SerdeContainer {
                rename: serde_str(attrs, RENAME),
                rename_all: serde_str(attrs, RENAME_ALL),
                rename_all_fields: serde_str(attrs, RENAME_ALL_FIELDS),
                default: serde_keys(attrs).iter().any(|key| key == DEFAULT),
            },
        }
    }
}

/// The `#[event(...)]` and `#[serde(...)]` attributes of an enum variant.
pub struct VariantAttrs {
    pub ty: Option<LitStr>,
    pub serde_rename: Option<LitStr>,
    /// `#[serde(rename_all ...)]`: the variant's field names are not their idents.
    pub serde_rename_all: bool,
    /// `#[serde(rename_all = "...")]` on the variant: the rule for its fields.
    pub serde_rename_all_rule: Option<LitStr>,
}

impl VariantAttrs {
    pub fn from_syn(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut ty = Attr::none(cx, TYPE);
        for attr in attrs.iter().filter(|a| a.path() == EVENT) {
            let parsed = attr.parse_nested_meta(|meta| {
                if meta.path == TYPE {
                    ty.set(&meta.path, lit_str(cx, &meta, TYPE)?);
                } else {
                    unknown(cx, &meta, VARIANT_KEYS, "#[event(...)] on a variant")?;
                }
                Ok(())
            });
            parsed.unwrap_or_else(|err| cx.syn_error(err));
        }
        VariantAttrs {
            ty: ty.get(),
            serde_rename: serde_str(attrs, RENAME),
            serde_rename_all: renames_all(attrs),
            serde_rename_all_rule: serde_str(attrs, RENAME_ALL),
        }
    }
}

/// The `#[event(...)]` and `#[serde(...)]` attributes of a field.
pub struct FieldAttrs {
    /// The `partition_key` word of `#[event(partition_key)]`, for errors to point at.
    pub partition_key: Option<Path>,
    /// The `body` word of `#[event(body)]`: a struct event's flattened `#[event(body)]` struct.
    pub body: Option<Path>,
    pub serde_rename: Option<LitStr>,
    /// Serde reads the field as it is written: no `#[serde(...)]` key other than `rename` and
    /// `default` (no `with`, `skip`, `flatten`, `alias`, ...).
    pub serde_plain: bool,
    /// `#[serde(default)]` (or `default = "path"`): the field may be missing.
    pub serde_default: bool,
    /// `#[serde(flatten)]`: the field's own fields sit beside the others.
    pub serde_flatten: bool,
    /// `#[serde(skip)]` or `skip_deserializing`: serde never reads the field.
    pub serde_skip: bool,
}

impl FieldAttrs {
    pub fn from_syn(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut partition_key = Attr::none(cx, PARTITION_KEY);
        let mut body = Attr::none(cx, BODY);
        for attr in attrs.iter().filter(|a| a.path() == EVENT) {
            let parsed = attr.parse_nested_meta(|meta| {
                if meta.path == PARTITION_KEY {
                    let path = meta.path.clone();
                    partition_key.set(&meta.path, flag(cx, &meta, PARTITION_KEY)?.map(|()| path));
                } else if meta.path == BODY {
                    let path = meta.path.clone();
                    body.set(&meta.path, flag(cx, &meta, BODY)?.map(|()| path));
                } else {
                    unknown(cx, &meta, FIELD_KEYS, "#[event(...)] on a field")?;
                }
                Ok(())
            });
            parsed.unwrap_or_else(|err| cx.syn_error(err));
        }
        let keys = serde_keys(attrs);
        FieldAttrs {
            partition_key: partition_key.get(),
            body: body.get(),
            serde_rename: serde_str(attrs, RENAME),
            serde_plain: keys.iter().all(|key| key == RENAME || key == DEFAULT),
            serde_default: keys.iter().any(|key| key == DEFAULT),
            serde_flatten: keys.iter().any(|key| key == FLATTEN),
            serde_skip: keys
                .iter()
                .any(|key| key == SKIP || key == SKIP_DESERIALIZING),
        }
    }
}

/// The string value of `key` in the `#[serde(...)]` attributes: `key = "..."`, or for `rename`
/// also `rename(serialize = "...")`. Serde reports malformed serde attributes itself, so any
/// parse error here is ignored.
fn serde_str(attrs: &[Attribute], key: Symbol) -> Option<LitStr> {
    let mut found = None;
    for attr in attrs.iter().filter(|a| a.path() == SERDE) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path == key && meta.input.peek(Token![=]) {
                if let Expr::Lit(ExprLit {
                    lit: Lit::Str(lit), ..
                }) = meta.value()?.parse()?
                {
                    found = Some(lit);
                }
            } else if meta.path == key && meta.input.peek(token::Paren) {
                meta.parse_nested_meta(|inner| {
                    if inner.path == SERIALIZE {
                        found = Some(inner.value()?.parse()?);
                    } else {
                        skip_value(&inner)?;
                    }
                    Ok(())
                })?;
            } else {
                skip_value(&meta)?;
            }
            Ok(())
        });
    }
    found
}

/// The keys of the `#[serde(...)]` attributes, whatever their values.
fn serde_keys(attrs: &[Attribute]) -> Vec<Path> {
    let mut keys = Vec::new();
    for attr in attrs.iter().filter(|a| a.path() == SERDE) {
        let _ = attr.parse_nested_meta(|meta| {
            keys.push(meta.path.clone());
            skip_value(&meta)
        });
    }
    keys
}

/// Whether `#[serde(rename_all ...)]` or `rename_all_fields` renames the fields.
fn renames_all(attrs: &[Attribute]) -> bool {
    serde_keys(attrs)
        .iter()
        .any(|key| key == RENAME_ALL || key == RENAME_ALL_FIELDS)
}

/// A key while parsing: remembers whether it was given, so that a second one is reported
/// where it stands (the one place duplicates are detected).
struct Attr<'c, T> {
    cx: &'c Ctxt,
    name: Symbol,
    seen: bool,
    value: Option<T>,
}

impl<'c, T> Attr<'c, T> {
    fn none(cx: &'c Ctxt, name: Symbol) -> Self {
        Attr {
            cx,
            name,
            seen: false,
            value: None,
        }
    }

    /// Records the key at `key` with its value (`None` when the value was wrong, already reported).
    fn set(&mut self, key: &Path, value: Option<T>) {
        if self.seen {
            self.cx
                .error_spanned_by(key, format!("duplicate key `{}`: give it once", self.name));
            return;
        }
        self.seen = true;
        self.value = value;
    }

    fn get(self) -> Option<T> {
        self.value
    }
}

/// A string value: `key = "..."`.
fn lit_str(cx: &Ctxt, meta: &ParseNestedMeta, key: Symbol) -> syn::Result<Option<LitStr>> {
    match ungroup(meta.value()?.parse()?) {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(Some(lit)),
        other => {
            cx.error_spanned_by(
                other,
                format!("`{key}` takes a string, like `{key} = \"...\"`"),
            );
            Ok(None)
        }
    }
}

/// A value as written: a literal passed through a `macro_rules!` fragment (`$topic:literal`)
/// arrives wrapped in an invisible group.
fn ungroup(expr: Expr) -> Expr {
    match expr {
        Expr::Group(g) => ungroup(*g.expr),
        other => other,
    }
}

/// A type path value: `upcast_from = TaskCompletedV1`.
fn type_path(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Path>> {
    match ungroup(meta.value()?.parse()?) {
        Expr::Path(p) if p.qself.is_none() => Ok(Some(p.path)),
        other => {
            cx.error_spanned_by(
                other,
                "`upcast_from` names the older event type, like `upcast_from = TaskCompletedV1`",
            );
            Ok(None)
        }
    }
}

/// An integer value: `key = 30`.
fn lit_int<N>(cx: &Ctxt, meta: &ParseNestedMeta, hint: &str) -> syn::Result<Option<(N, LitInt)>>
where
    N: FromStr,
    N::Err: Display,
{
    match ungroup(meta.value()?.parse()?) {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => match lit.base10_parse::<N>() {
            Ok(n) => Ok(Some((n, lit))),
            Err(err) => {
                cx.syn_error(err);
                Ok(None)
            }
        },
        other => {
            cx.error_spanned_by(other, hint);
            Ok(None)
        }
    }
}

/// A whole number of at least 1: `hint` when the value is no integer, `message` when it is 0.
fn positive<N>(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    hint: &str,
    message: &str,
) -> syn::Result<Option<N>>
where
    N: FromStr + PartialOrd + From<u8>,
    N::Err: Display,
{
    let n = lit_int::<N>(cx, meta, hint)?;
    Ok(n.and_then(|(n, lit)| at_least(cx, n, N::from(1), &lit, message)))
}

fn at_most<N: PartialOrd>(cx: &Ctxt, value: N, max: N, lit: &LitInt, message: &str) -> Option<N> {
    if value > max {
        cx.error_spanned_by(lit, message);
        return None;
    }
    Some(value)
}

fn at_least<N: PartialOrd>(cx: &Ctxt, value: N, min: N, lit: &LitInt, message: &str) -> Option<N> {
    if value < min {
        cx.error_spanned_by(lit, message);
        return None;
    }
    Some(value)
}

/// A flag: the key alone. A value is reported and skipped.
fn flag(cx: &Ctxt, meta: &ParseNestedMeta, key: Symbol) -> syn::Result<Option<()>> {
    if meta.input.peek(Token![=]) || meta.input.peek(token::Paren) {
        let hint = if key == IDEMPOTENT {
            "; to choose the key, use `idempotency_key = \"...\"`"
        } else {
            ""
        };
        cx.error_spanned_by(
            &meta.path,
            format!("`{key}` is a flag and takes no value: write `{key}` alone{hint}"),
        );
        skip_value(meta)?;
        return Ok(None);
    }
    Ok(Some(()))
}

/// Reports an unknown key (with a suggestion when one is close) and skips its value.
fn unknown(cx: &Ctxt, meta: &ParseNestedMeta, known: &[Symbol], attr: &str) -> syn::Result<()> {
    cx.error_spanned_by(&meta.path, unknown_key(&path_name(&meta.path), known, attr));
    skip_value(meta)
}

/// Consumes whatever follows a key: `= value`, `(...)` or nothing.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(token::Paren) {
        meta.input.parse::<TokenTree>()?;
    }
    Ok(())
}

fn path_name(path: &Path) -> String {
    tokens_text(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: TokenStream) -> (HandlerArgs, Vec<String>) {
        let cx = Ctxt::new();
        let parsed = HandlerArgs::parse(&cx, args);
        let errors = match cx.check() {
            Ok(()) => Vec::new(),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        };
        (parsed, errors)
    }

    #[test]
    fn exponential_doubles_up_to_the_cap() {
        assert_eq!(
            exponential(1, 2, 10, Some(512)),
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
        );
        assert_eq!(
            exponential(1, 2, 12, Some(512)),
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 512, 512]
        );
        assert_eq!(exponential(5, 3, 4, None), [5, 15, 45, 135]);
        assert_eq!(exponential(7, 1, 3, None), [7, 7, 7]);
        assert_eq!(exponential(10, 2, 3, Some(4)), [4, 4, 4]);
    }

    #[test]
    fn exponential_saturates_instead_of_overflowing() {
        let delays = exponential(u64::MAX / 2, 4, 3, None);
        assert_eq!(delays, [u64::MAX / 2, u64::MAX, u64::MAX]);
    }

    #[test]
    fn parses_every_key() {
        let (args, errors) = parse(quote::quote! {
            topic = "t", pubsub = "p", route = "/r", retry = exponential(initial = 1, factor = 2, attempts = 3),
            retry_mode = "inline", dlq = "d", idempotent, idempotency_key = "{a}", bulk(max_messages = 5),
            raw_payload, metadata(priority = "high", rawPayload = "true"), timeout = 30, concurrency = 4
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(args.topic.unwrap().value(), "t");
        assert_eq!(args.retry.unwrap().delays, [1, 2, 4]);
        assert_eq!(args.retry_mode.unwrap().mode, RetryMode::Inline);
        assert!(args.idempotent && args.raw_payload);
        let bulk = args.bulk.unwrap();
        assert_eq!((bulk.max_messages, bulk.max_await_ms), (5, 1000));
        assert_eq!(args.metadata.unwrap().len(), 2);
        assert_eq!(args.timeout, Some(30));
        assert_eq!(args.concurrency, Some(4));
    }

    #[test]
    fn reports_every_mistake() {
        let (_, errors) = parse(quote::quote! {
            topik = "t", retry = [1, -1, 1.5, "a"], retry_mode = "inlne", dlq = "x", dlq = "y", bulk = 3
        });
        assert_eq!(
            errors,
            [
                "unknown key `topik` in #[event_handler]: did you mean `topic`?",
                "retry delays are whole seconds: `-1` is not a non-negative integer, write e.g. `30`",
                "retry delays are whole seconds: `1.5` is not a non-negative integer, write e.g. `30`",
                "retry delays are whole seconds: `\"a\"` is not a non-negative integer, write e.g. `30`",
                "`retry_mode` is \"inline\" or \"delayed\": did you mean \"inline\"?",
                "duplicate key `dlq`: give it once",
                "`bulk` is a flag and takes no value: write `bulk` alone",
                "#[event_handler] needs a `topic`, like `#[event_handler(topic = \"task-events\")]`",
            ]
        );
    }

    #[test]
    fn bulk_max_messages_is_capped() {
        let (args, errors) = parse(quote::quote!(topic = "t", bulk(max_messages = 1000)));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(args.bulk.unwrap().max_messages, MAX_BULK_MESSAGES);

        let (args, errors) = parse(quote::quote!(
            topic = "t",
            bulk(max_messages = 1001, max_await_ms = 5)
        ));
        assert_eq!(
            errors,
            ["`max_messages` is at most 1000 events per bulk delivery (Dapr's default is 100); lower it, or write `bulk` alone for the default"]
        );
        // The bad value is not kept: nothing is generated from it.
        assert_ne!(args.bulk.unwrap().max_messages, 1001);
        let (_, errors) = parse(quote::quote!(topic = "t", bulk(max_messages = 4294967295)));
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn metadata_values_must_be_strings() {
        let (_, errors) = parse(quote::quote!(topic = "t", metadata(rawPayload = true)));
        assert_eq!(
            errors,
            ["subscription metadata values must be strings (Dapr rejects the whole subscription list otherwise): write \"true\""]
        );
    }

    #[test]
    fn exponential_needs_its_keys() {
        let (_, errors) = parse(quote::quote!(
            topic = "t",
            retry = exponential(initial = 0, factr = 2)
        ));
        assert_eq!(
            errors,
            [
                "`initial` is the first delay, at least 1 second",
                "unknown key `factr` in `exponential(...)`: did you mean `factor`?",
                "`exponential` needs `initial`, `factor` and `attempts` (`cap` is optional); missing `factor`, `attempts`",
            ]
        );
    }
}
