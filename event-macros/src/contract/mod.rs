//! `#[event(contract = "...")]`: the event type checked, field by field, against the JSON Schema
//! its producer publishes (Pydantic's `model_json_schema()`, or a message of an AsyncAPI
//! document). The Rust type may read less than the schema offers (forward compatibility), never
//! more: a field it requires must be required there, its type must hold every value the schema
//! admits, and an enum's tag values must be ones the schema allows.
//!
//! Each rule is a small function below; every mistake is reported at the user's tokens.

mod load;
mod rust;
mod schema;

use proc_macro2::TokenStream;
use quote::ToTokens;
use serde_json::Value;
use syn::ext::IdentExt;
use syn::{LitStr, Type};

pub use load::path;
use rust::{shape, Shape};
use schema::{Doc, Kinds};

use crate::ast::{Data, Field, Input, Style, Variant};
use crate::ctxt::{tokens_text, Ctxt};

/// Checks `input` against its contract, when it declares one.
pub fn check(cx: &Ctxt, input: &Input) {
    let attrs = &input.attrs;
    let Some(lit) = &attrs.contract else {
        if let Some(message) = &attrs.message {
            cx.error_spanned_by(
                message,
                "`message` chooses a message of a contract: add `contract = \"contracts/todo.asyncapi.json\"`",
            );
        }
        return;
    };
    let Some(contract) = load::load(cx, lit, attrs.message.as_ref()) else {
        return;
    };
    let checker = Checker {
        cx,
        doc: Doc::new(&contract.root),
        view: &contract.view,
    };
    let tag = attrs.serde_tag.as_ref();
    match &input.data {
        // A body serves variants of any tag value, so it reads every object the schema has.
        Data::Struct(Style::Named, fields) if attrs.body.is_some() => {
            let rule = attrs.serde.rename_all.as_ref().map(LitStr::value);
            for object in checker.doc.objects(&contract.schema) {
                checker.fields(object, fields, rule.as_deref(), attrs.serde.default);
            }
        }
        Data::Struct(Style::Named, fields) => {
            let tag_value = attrs.serde.rename.as_ref().map(LitStr::value);
            let Some(object) = checker.object_for(&contract.schema, tag, tag_value.as_deref())
            else {
                // Only a tag value the schema does not know leaves no object to check against.
                let (tag, value) = (tag.expect("a tag"), attrs.serde.rename.as_ref());
                checker.unknown_tag(&contract.schema, tag, value.expect("a value"), value);
                return;
            };
            let rule = attrs.serde.rename_all.as_ref().map(LitStr::value);
            checker.fields(object, fields, rule.as_deref(), attrs.serde.default);
        }
        Data::Enum(variants) => {
            let Some(tag) = tag else { return }; // reported by `valid`
            checker.tag_required(&contract.schema, tag);
            for variant in variants {
                checker.variant(input, variant, &contract.schema, tag);
            }
        }
        _ => {}
    }
}

struct Checker<'a> {
    cx: &'a Ctxt,
    doc: Doc<'a>,
    view: &'a str,
}

impl<'a> Checker<'a> {
    /// The object schema a value tagged `tag = value` follows: the schema itself, or the branch
    /// of a union whose tag allows `value`. `None` when no branch allows it.
    fn object_for(
        &self,
        schema: &'a Value,
        tag: Option<&LitStr>,
        value: Option<&str>,
    ) -> Option<&'a Value> {
        let objects = self.doc.objects(schema);
        let (Some(tag), Some(value)) = (tag.map(LitStr::value), value) else {
            return objects.first().copied();
        };
        if let Some(mapping) = self.doc.discriminator(schema, &tag) {
            return mapping
                .into_iter()
                .find(|(v, _)| v == value)
                .map(|(_, branch)| self.doc.resolve(branch));
        }
        let allows = |object: &&'a Value| {
            let props = self.doc.properties(object);
            props.get(tag.as_str()).is_none_or(|prop| {
                self.doc
                    .allowed_strings(prop)
                    .is_none_or(|allowed| allowed.iter().any(|a| a == value))
            })
        };
        objects.into_iter().find(allows)
    }

    /// A tag value no object of the schema allows: an error at the value (or at `owner`).
    fn unknown_tag<T: ToTokens>(&self, schema: &'a Value, tag: &LitStr, value: &LitStr, at: T) {
        let tag = tag.value();
        let allowed: Vec<String> = self
            .doc
            .objects(schema)
            .into_iter()
            .filter_map(|object| {
                let prop = *self.doc.properties(object).get(tag.as_str())?;
                self.doc.allowed_strings(prop)
            })
            .flatten()
            .map(|v| format!("\"{v}\""))
            .collect();
        let allowed = if allowed.is_empty() {
            String::new()
        } else {
            format!(" (it allows {})", allowed.join(", "))
        };
        self.cx.error_spanned_by(
            at,
            format!(
                "`{tag}` is \"{}\" here, but {} does not allow that value{allowed}: producers never send it",
                value.value(),
                self.view
            ),
        );
    }

    /// Serde needs an internally tagged enum's tag in every event, so the schema must require it.
    fn tag_required(&self, schema: &'a Value, tag: &LitStr) {
        let name = tag.value();
        let objects = self.doc.objects(schema);
        let missing = objects
            .iter()
            .any(|object| !self.doc.required(object).contains(&name));
        if missing {
            self.cx.error_spanned_by(
                tag,
                format!(
                    "serde reads the variant from `{name}`, so it is required here, but {} does not require it: producers may leave it out",
                    self.view
                ),
            );
        }
    }

    /// A variant: its tag value among those the schema allows, then its fields.
    fn variant(&self, input: &Input, variant: &Variant, schema: &'a Value, tag: &LitStr) {
        let serde = &input.attrs.serde;
        let value = match (&variant.attrs.serde_rename, &serde.rename_all) {
            (Some(rename), _) => rename.value(),
            (None, Some(rule)) => rust::rename_variant(&rule.value(), &variant.ident().to_string()),
            (None, None) => variant.ident().to_string(),
        };
        let Some(object) = self.object_for(schema, Some(tag), Some(&value)) else {
            let shown = LitStr::new(&value, variant.ident().span());
            match &variant.attrs.serde_rename {
                Some(rename) => self.unknown_tag(schema, tag, &shown, rename),
                None => self.unknown_tag(schema, tag, &shown, variant.ident()),
            }
            return;
        };
        if variant.style != Style::Named {
            return; // a newtype's fields are another type's: the macro cannot see them
        }
        let rule = variant
            .attrs
            .serde_rename_all_rule
            .as_ref()
            .or(serde.rename_all_fields.as_ref())
            .map(LitStr::value);
        self.fields(object, &variant.fields, rule.as_deref(), serde.default);
    }

    /// Each field read from `object`.
    fn fields(&self, object: &'a Value, fields: &[Field], rule: Option<&str>, all_default: bool) {
        let properties = self.doc.properties(object);
        let required = self.doc.required(object);
        for field in fields {
            let (Some(ident), attrs) = (field.ident(), &field.attrs) else {
                continue;
            };
            // A flattened field's own fields are another type's; a skipped one is never read.
            if attrs.serde_flatten || attrs.serde_skip {
                continue;
            }
            let name = match (&attrs.serde_rename, rule) {
                (Some(rename), _) => rename.value(),
                (None, Some(rule)) => rust::rename_field(rule, &ident.unraw().to_string()),
                (None, None) => ident.unraw().to_string(),
            };
            let ty = &field.original.ty;
            let optional = matches!(shape(ty), Shape::Optional(_));
            let rust_requires = !optional && !attrs.serde_default && !all_default;
            match properties.get(name.as_str()) {
                None if rust_requires => self.cx.error_spanned_by(
                    ident,
                    format!(
                        "`{name}` is required here, but {} has no property `{name}`: producers never send it; make it `Option<_>` or `#[serde(default)]`, or remove it",
                        self.view
                    ),
                ),
                None => {}
                Some(property) => {
                    if rust_requires && !required.contains(&name) {
                        self.cx.error_spanned_by(
                            ident,
                            format!(
                                "`{name}` is required here, but {} does not require it: producers may leave it out; make it `Option<_>` or `#[serde(default)]`",
                                self.view
                            ),
                        );
                    }
                    self.value(ty, property, &format!("`{name}`"));
                }
            }
        }
    }

    /// The Rust type `ty` holds every value `schema` admits (`what` names it in messages).
    fn value(&self, ty: &Type, schema: &'a Value, what: &str) {
        let shape = shape(ty);
        if let (Some(admits), Some(holds)) = (self.doc.kinds(schema), shape.holds()) {
            let cannot = admits.minus(holds);
            if !cannot.is_empty() {
                self.cx
                    .error_spanned_by(ty, self.kind_message(ty, what, admits, cannot));
                return;
            }
        }
        match core(ty) {
            Shape::Array(Some(item)) => {
                if let Some(items) = self.doc.items(schema) {
                    self.value(item, items, &format!("the items of {what}"));
                }
            }
            Shape::Object(Some(value)) => {
                if let Some(values) = self.doc.values(schema) {
                    self.value(value, values, &format!("the values of {what}"));
                }
            }
            Shape::DateTime if !self.doc.strings_are_date_times(schema) => self.cx.error_spanned_by(
                ty,
                format!(
                    "{what} {} `{}` here, which reads only RFC 3339 date-times, but {} allows any string for it (no `format: date-time`): use `String`",
                    be(what),
                    tokens_text(&strip(ty)),
                    self.view
                ),
            ),
            _ => {}
        }
    }

    fn kind_message(&self, ty: &Type, what: &str, admits: Kinds, cannot: Kinds) -> String {
        let written = tokens_text(&strip(ty));
        let view = self.view;
        let be = be(what);
        if cannot == Kinds::NULL {
            return format!(
                "{what} {be} `{written}` here, which cannot hold null, but {view} allows null for it: make it `Option<{written}>`"
            );
        }
        let fix = if cannot == Kinds::FRACTION {
            ": use `f64`".to_owned()
        } else {
            String::new()
        };
        format!(
            "{what} {be} `{written}` here, which cannot hold {}, but {view} says {}{fix}",
            cannot.describe(),
            admits.describe(),
        )
    }
}

/// "`task_id` is", but "the items of `tags` are".
fn be(what: &str) -> &'static str {
    if what.starts_with("the ") {
        "are"
    } else {
        "is"
    }
}

/// The shape under `Option`, `Box`, `Rc`, `Arc`.
fn core(ty: &Type) -> Shape<'_> {
    match shape(ty) {
        Shape::Optional(inner) => core(inner),
        other => other,
    }
}

/// `ty` without the invisible groups a `macro_rules!` fragment adds.
fn strip(ty: &Type) -> TokenStream {
    match ty {
        Type::Group(group) => strip(&group.elem),
        other => other.to_token_stream(),
    }
}
