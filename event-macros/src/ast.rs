//! The models the macros work on. Every node keeps a reference to the user's syn tokens, so that
//! any later check can point its error at them.

use syn::ext::IdentExt;
use syn::{DeriveInput, FnArg, Ident, ItemFn, LitStr, ReturnType, Type};

use crate::attr::{ContainerAttrs, FieldAttrs, HandlerArgs, VariantAttrs};
use crate::ctxt::Ctxt;
use crate::symbol::{EVENT_ID, EVENT_VERSION, USER_ID};

/// An `#[event_handler]` function.
pub struct Handler<'a> {
    pub args: HandlerArgs,
    pub item: &'a ItemFn,
    /// The type of the first argument (the event).
    pub event: Option<&'a Type>,
    /// The event type `T` when the first argument is a batch, `Vec<T>` or `Batch<T>`.
    pub batch: Option<&'a Type>,
    /// The types of the arguments after the event (extractors).
    pub extractors: Vec<&'a Type>,
    /// The declared return type; `None` for `()`.
    pub output: Option<&'a Type>,
}

impl<'a> Handler<'a> {
    pub fn from_syn(args: HandlerArgs, item: &'a ItemFn) -> Self {
        let mut types = item.sig.inputs.iter().filter_map(|arg| match arg {
            FnArg::Typed(arg) => Some(&*arg.ty),
            FnArg::Receiver(_) => None,
        });
        let event = types.next();
        let extractors = types.collect();
        let output = match &item.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(&**ty),
        };
        Handler {
            args,
            item,
            event,
            batch: event.and_then(batch_element),
            extractors,
            output,
        }
    }
}

/// `T` of `Vec<T>` or `Batch<T>` (by the last segment of the path, as written).
fn batch_element(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Vec" && last.ident != "Batch" {
        return None;
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(args) if args.args.len() == 1 => match &args.args[0] {
            syn::GenericArgument::Type(element) => Some(element),
            _ => None,
        },
        _ => None,
    }
}

/// A `#[derive(Event)]` type.
pub struct Input<'a> {
    pub original: &'a DeriveInput,
    pub attrs: ContainerAttrs,
    pub data: Data<'a>,
}

pub enum Data<'a> {
    Struct(Style, Vec<Field<'a>>),
    Enum(Vec<Variant<'a>>),
    Union,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Named,
    Tuple,
    Unit,
}

pub struct Variant<'a> {
    pub original: &'a syn::Variant,
    pub attrs: VariantAttrs,
    pub style: Style,
    pub fields: Vec<Field<'a>>,
}

pub struct Field<'a> {
    pub original: &'a syn::Field,
    pub attrs: FieldAttrs,
}

impl<'a> Input<'a> {
    pub fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        let attrs = ContainerAttrs::from_syn(cx, &input.attrs);
        let data = match &input.data {
            syn::Data::Struct(data) => {
                Data::Struct(style(&data.fields), fields_from_syn(cx, &data.fields))
            }
            syn::Data::Enum(data) => Data::Enum(
                data.variants
                    .iter()
                    .map(|variant| Variant {
                        original: variant,
                        attrs: VariantAttrs::from_syn(cx, &variant.attrs),
                        style: style(&variant.fields),
                        fields: fields_from_syn(cx, &variant.fields),
                    })
                    .collect(),
            ),
            syn::Data::Union(_) => Data::Union,
        };
        Input {
            original: input,
            attrs,
            data,
        }
    }
}

impl Variant<'_> {
    pub fn ident(&self) -> &Ident {
        &self.original.ident
    }

    /// The type a newtype variant holds (`Created(TaskChange)`): an `#[event(body)]` struct,
    /// whose fields serde writes beside the tag.
    pub fn body(&self) -> Option<&Type> {
        match (self.style, &self.fields[..]) {
            (Style::Tuple, [only]) => Some(&only.original.ty),
            _ => None,
        }
    }

    /// The CloudEvent type: `#[event(type = "...")]`, else `#[serde(rename = "...")]`.
    pub fn event_type(&self) -> Option<&LitStr> {
        self.attrs.ty.as_ref().or(self.attrs.serde_rename.as_ref())
    }
}

impl Field<'_> {
    /// The field's Rust name (`None` for a tuple field).
    pub fn ident(&self) -> Option<&Ident> {
        self.original.ident.as_ref()
    }

    fn is_named(&self, name: &str) -> bool {
        self.ident().is_some_and(|ident| ident.unraw() == name)
    }

    /// The name the field has in the serialized event: its serde rename, else its own.
    pub fn serialized_name(&self) -> String {
        match (&self.attrs.serde_rename, self.ident()) {
            (Some(rename), _) => rename.value(),
            (None, Some(ident)) => ident.unraw().to_string(),
            (None, None) => String::new(),
        }
    }
}

/// How a field holds the event's version, as its written type tells: the derive reads the
/// version from a `String` or an `Option<String>` and leaves any other type to the runtime.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VersionText {
    /// `String`.
    Text,
    /// `Option<String>`.
    OptionalText,
}

impl Field<'_> {
    /// How the field holds the version, when its type is written as `String` or
    /// `Option<String>` (also by their full paths).
    pub fn version_text(&self) -> Option<VersionText> {
        let ty = &self.original.ty;
        if is_string(ty) {
            Some(VersionText::Text)
        } else if option_of(ty).is_some_and(is_string) {
            Some(VersionText::OptionalText)
        } else {
            None
        }
    }
}

/// The segments of a plain type path (no `<T as Trait>::`), with a type passed through a
/// `macro_rules!` fragment unwrapped.
fn path_of(ty: &Type) -> Option<&syn::Path> {
    match ty {
        Type::Group(group) => path_of(&group.elem),
        Type::Path(path) if path.qself.is_none() => Some(&path.path),
        _ => None,
    }
}

/// Whether `path` names the standard type `module::name`: `name` alone, or by its full path
/// (`std::`, `core::` or `alloc::`, with or without a leading `::`).
fn names(path: &syn::Path, module: &str, name: &str) -> bool {
    let mut leading = path.segments.iter().rev().skip(1);
    if leading.any(|s| !s.arguments.is_none()) {
        return false;
    }
    let segments: Vec<&Ident> = path.segments.iter().map(|s| &s.ident).collect();
    match segments[..] {
        [last] => path.leading_colon.is_none() && last == name,
        [krate, m, last] => {
            ["std", "core", "alloc"].iter().any(|k| krate == k) && m == module && last == name
        }
        _ => false,
    }
}

fn is_string(ty: &Type) -> bool {
    path_of(ty).is_some_and(|path| {
        names(path, "string", "String")
            && path.segments.last().is_some_and(|s| s.arguments.is_none())
    })
}

/// `T` of `Option<T>`.
fn option_of(ty: &Type) -> Option<&Type> {
    let path = path_of(ty).filter(|path| names(path, "option", "Option"))?;
    match &path.segments.last()?.arguments {
        syn::PathArguments::AngleBracketed(args) if args.args.len() == 1 => match &args.args[0] {
            syn::GenericArgument::Type(inner) => Some(inner),
            _ => None,
        },
        _ => None,
    }
}

/// The partition key of a set of fields: the one marked `#[event(partition_key)]`, else `user_id`.
pub fn partition_key<'f, 'a>(fields: &'f [Field<'a>]) -> Option<&'f Field<'a>> {
    fields
        .iter()
        .find(|f| f.attrs.partition_key.is_some())
        .or_else(|| fields.iter().find(|f| f.is_named(USER_ID)))
}

/// The field serde reads the data's `event_version` member into, when it reads it as written
/// (`renames_all`: the container or variant renames its fields, so no field can be trusted).
pub fn event_version<'f, 'a>(fields: &'f [Field<'a>], renames_all: bool) -> Option<&'f Field<'a>> {
    fields.iter().find(|f| {
        !renames_all
            && f.ident().is_some()
            && f.attrs.serde_plain
            && f.serialized_name() == EVENT_VERSION
    })
}

/// A struct event's `#[event(body)]` field: a flattened body, whose key, id, version and fields
/// serve the event where its own fields give none.
pub fn body_field<'f, 'a>(fields: &'f [Field<'a>]) -> Option<&'f Field<'a>> {
    fields.iter().find(|f| f.attrs.body.is_some())
}

/// The `event_id` field, if there is one.
pub fn event_id<'f, 'a>(fields: &'f [Field<'a>]) -> Option<&'f Field<'a>> {
    fields.iter().find(|f| f.is_named(EVENT_ID))
}

fn style(fields: &syn::Fields) -> Style {
    match fields {
        syn::Fields::Named(_) => Style::Named,
        syn::Fields::Unnamed(_) => Style::Tuple,
        syn::Fields::Unit => Style::Unit,
    }
}

fn fields_from_syn<'a>(cx: &Ctxt, fields: &'a syn::Fields) -> Vec<Field<'a>> {
    fields
        .iter()
        .map(|field| Field {
            original: field,
            attrs: FieldAttrs::from_syn(cx, &field.attrs),
        })
        .collect()
}
