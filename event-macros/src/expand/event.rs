//! `#[derive(Event)]`: an `impl Event` inside `const _: () = { ... };`, where `_er` names the
//! runtime's paths for generated code (`::event_runtime::__private`).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident, LitStr};

use crate::ast::{self, Data, Field, Input, Variant, VersionText};
use crate::contract;
use crate::ctxt::{tokens_text, Ctxt};
use crate::valid;

/// Parse, validate, generate.
///
/// A type that only breaks its contract is still a valid event type: its `impl` is generated
/// beside the contract's errors, so that handlers taking it report nothing more.
pub fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let event = Input::from_syn(&cx, input);
    valid::event(&cx, &event);
    let contract_cx = Ctxt::new();
    contract::check(&contract_cx, &event);
    match (cx.check(), contract_cx.check()) {
        (Ok(()), Ok(())) => Ok(generate(&event)),
        (Ok(()), Err(drift)) => {
            let mut out = drift.into_compile_error();
            out.extend(generate(&event));
            Ok(out)
        }
        (Err(mut errors), drift) => {
            errors.extend(drift.err());
            Err(errors)
        }
    }
}

/// What is emitted when the type has errors: the errors, and an `impl` whose methods are never
/// called, so that handlers taking the type do not pile up "does not implement `Event`" errors
/// on top of the real ones.
pub fn fallback(input: &DeriveInput, errors: syn::Error) -> TokenStream {
    let errors = errors.into_compile_error();
    if is_body(input) {
        let body = quote! {
            const KEYED: bool = true;
            const FIELDS: &'static [&'static str] = &[];

            fn partition_key(&self) -> ::core::option::Option<::std::string::String> {
                ::core::unreachable!()
            }
        };
        let imp = implement_trait(input, quote!(_er::EventBody), body, TokenStream::new());
        return quote!(#errors #imp);
    }
    let body = quote! {
        const TYPES: &'static [&'static str] = &[];
        const VERSION: &'static str = "";

        fn event_type(&self) -> &'static str {
            ::core::unreachable!()
        }

        fn partition_key(&self) -> ::core::option::Option<::std::string::String> {
            ::core::unreachable!()
        }
    };
    let imp = implement(input, body, TokenStream::new());
    quote!(#errors #imp)
}

/// Whether the type says `#[event(body)]`, read without the other attributes (for the fallback).
fn is_body(input: &DeriveInput) -> bool {
    input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("event"))
        .any(|attr| {
            let mut body = false;
            let _ = attr.parse_nested_meta(|meta| {
                body |= meta.path.is_ident("body");
                if meta.input.peek(syn::Token![=]) {
                    meta.value()?.parse::<proc_macro2::TokenStream>()?;
                }
                Ok(())
            });
            body
        })
}

fn generate(input: &Input) -> TokenStream {
    if input.attrs.body.is_some() {
        return generate_body(input);
    }
    let version = input
        .attrs
        .version
        .as_ref()
        .expect("validated: `version` is required");
    let body = match &input.data {
        Data::Struct(_, fields) => {
            let ty = input
                .attrs
                .ty
                .as_ref()
                .expect("validated: a struct has `type`");
            struct_body(input, ty, version, fields)
        }
        Data::Enum(variants) => enum_body(input, version, variants),
        Data::Union => unreachable!("validated: not a union"),
    };
    let generic = !input.original.generics.params.is_empty();
    let mut body = body;
    let mut beside = TokenStream::new();
    if let Some(older) = &input.attrs.upcast_from {
        body.extend(upcast(older));
        beside.extend(upcast_checks(&input.original.ident, older, version));
    }
    // `#[event(schema)]`: the schema comes from `schemars`, so the type must implement
    // `JsonSchema` (an error at `schema` otherwise); without it the trait's permissive default.
    if let Some(schema) = &input.attrs.schema {
        let schema_of = quote_spanned!(schema.span()=> _er::json_schema_of::<Self>());
        body.extend(quote! {
            fn json_schema() -> _er::serde_json::Value {
                #schema_of
            }
        });
    }
    match &input.data {
        Data::Enum(variants) => beside.extend(keyed_bodies(input, variants)),
        Data::Struct(_, fields) => beside.extend(keyed_struct_body(input, fields)),
        Data::Union => {}
    }
    beside.extend(contract_dependency(input));
    // A generic type has no one registry entry (validation rejects `schema` on one).
    if !generic {
        beside.extend(registration(input));
    }
    implement(input.original, body, beside)
}

/// `#[event(body)]`: the fields of an enum event's newtype variants, as `EventBody`.
fn generate_body(input: &Input) -> TokenStream {
    let Data::Struct(_, fields) = &input.data else {
        unreachable!("validated: a body is a struct")
    };
    let keyed = !input.attrs.unkeyed;
    let mut body = quote!(const KEYED: bool = #keyed;);
    body.extend(field_items(input, fields));
    let beside = contract_dependency(input);
    implement_trait(input.original, quote!(_er::EventBody), body, beside)
}

/// `contract = "..."`: the file is part of the build, so that a change to it rebuilds the crate.
/// (A missing file is already an error, and a failed build is rebuilt anyway.)
fn contract_dependency(input: &Input) -> TokenStream {
    match input.attrs.contract.as_ref().map(contract::path) {
        Some(path) if path.is_file() => {
            let path = path.display().to_string();
            quote!(
                const _: &[u8] = ::core::include_bytes!(#path);
            )
        }
        _ => TokenStream::new(),
    }
}

/// A keyed enum's bodies have a partition key: checked where the variant names its body.
fn keyed_bodies(input: &Input, variants: &[Variant]) -> TokenStream {
    if input.attrs.unkeyed {
        return TokenStream::new();
    }
    variants
        .iter()
        .filter_map(|variant| {
            let ty = variant.body()?;
            let message = format!(
                "variant `{}` holds `{}`, which is `#[event(unkeyed)]`, but `{}` is keyed: give the body a partition key, or make the enum unkeyed",
                variant.ident(),
                tokens_text(ty),
                input.original.ident,
            );
            Some(quote_spanned! {ty.span()=>
                const _: () = ::core::assert!(<#ty as _er::EventBody>::KEYED, #message);
            })
        })
        .collect()
}

/// A keyed struct event whose key is its body's: the body has one.
fn keyed_struct_body(input: &Input, fields: &[Field]) -> TokenStream {
    let body = ast::body_field(fields).map(|f| &f.original.ty);
    let Some(ty) = body.filter(|_| !input.attrs.unkeyed && ast::partition_key(fields).is_none())
    else {
        return TokenStream::new();
    };
    let message = format!(
        "`{}` takes its partition key from its body `{}`, which is `#[event(unkeyed)]`: give one of them a partition key, or make the event unkeyed",
        input.original.ident,
        tokens_text(ty),
    );
    quote_spanned! {ty.span()=>
        const _: () = ::core::assert!(<#ty as _er::EventBody>::KEYED, #message);
    }
}

/// `upcast`: an event of the older type's major version is read as that type and converted with
/// `From`; one older still goes down the older type's own chain first.
fn upcast(older: &syn::Path) -> TokenStream {
    let from = quote_spanned!(older.span()=> <Self as ::core::convert::From<#older>>::from);
    quote! {
        fn upcast(
            major: u64,
            event: &_er::CloudEvent,
        ) -> ::core::option::Option<::core::result::Result<Self, _er::serde_json::Error>> {
            let older = if major == _er::major_of::<#older>() {
                _er::decode_event::<#older>(event)
            } else {
                <#older as _er::Event>::upcast(major, event)?
            };
            ::core::option::Option::Some(older.map(#from))
        }
    }
}

/// The versions along an upcast chain increase, and it stays one event type.
fn upcast_checks(ident: &Ident, older: &syn::Path, version: &LitStr) -> TokenStream {
    let name = tokens_text(older);
    let older_msg = format!(
        "upcast_from: `{name}` must have an older major version than {}",
        version.value()
    );
    let same_msg = format!(
        "upcast_from: `{name}` must be the same event type (its `type`s must be this type's)"
    );
    quote_spanned! {older.span()=>
        const _: () = _er::require_older(
            <#older as _er::Event>::VERSION,
            #version,
            #older_msg,
        );
        const _: () = _er::require_same_types(
            <#older as _er::Event>::TYPES,
            <#ident as _er::Event>::TYPES,
            #same_msg,
        );
    }
}

/// The schema-registry entry.
fn registration(input: &Input) -> TokenStream {
    let ident = &input.original.ident;
    let name = ident.to_string();
    let upcast_from = match &input.attrs.upcast_from {
        Some(older) => {
            let older = tokens_text(older);
            quote!(::core::option::Option::Some(#older))
        }
        None => quote!(::core::option::Option::None),
    };
    quote! {
        _er::inventory::submit! {
            _er::EventDef {
                rust_name: #name,
                module: ::core::module_path!(),
                types: <#ident as _er::Event>::TYPES,
                version: <#ident as _er::Event>::VERSION,
                schema: <#ident as _er::Event>::json_schema,
                upcast_from: #upcast_from,
            }
        }
    }
}

fn implement(input: &DeriveInput, body: TokenStream, beside: TokenStream) -> TokenStream {
    implement_trait(input, quote!(_er::Event), body, beside)
}

fn implement_trait(
    input: &DeriveInput,
    tr: TokenStream,
    body: TokenStream,
    beside: TokenStream,
) -> TokenStream {
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        const _: () = {
            use ::event_runtime::__private as _er;

            #[automatically_derived]
            impl #impl_generics #tr for #ident #ty_generics #where_clause {
                #body
            }

            #beside
        };
    }
}

fn struct_body(input: &Input, ty: &LitStr, version: &LitStr, fields: &[Field]) -> TokenStream {
    let items = field_items(input, fields);
    quote! {
        const TYPES: &'static [&'static str] = &[#ty];
        const VERSION: &'static str = #version;

        fn event_type(&self) -> &'static str {
            #ty
        }

        #items
    }
}

/// What a struct's fields give, as an event or as a body: `FIELDS`, the partition key, the
/// event id and the data's version. A struct event's `#[event(body)]` field gives what its own
/// fields do not, and its fields follow the struct's own in `FIELDS`.
fn field_items(input: &Input, fields: &[Field]) -> TokenStream {
    let body = ast::body_field(fields).and_then(|f| Some((f.ident()?, &f.original.ty)));
    let body_call = |method: &str| {
        body.map(|(field, ty)| {
            let method = Ident::new(method, ty.span());
            quote_spanned!(ty.span()=> <#ty as _er::EventBody>::#method(&self.#field))
        })
    };
    let names = fields
        .iter()
        .filter(|f| f.attrs.body.is_none())
        .map(Field::serialized_name);
    let names = match body {
        None => quote!(&[#(#names),*]),
        Some((_, ty)) => quote! {{
            const OWN: &[&str] = &[#(#names),*];
            const BODY: &[&str] = <#ty as _er::EventBody>::FIELDS;
            const ALL: &[&str; OWN.len() + BODY.len()] = &_er::concat_fields(OWN, BODY);
            ALL
        }},
    };
    let own_key = ast::partition_key(fields).and_then(Field::ident);
    let partition_key = match (own_key, body_call("partition_key")) {
        _ if input.attrs.unkeyed => quote!(::core::option::Option::None),
        (Some(field), _) => {
            quote!(::core::option::Option::Some(::std::string::ToString::to_string(&self.#field)))
        }
        (None, Some(call)) => call,
        (None, None) => quote!(::core::option::Option::None),
    };
    let event_id = match ast::event_id(fields).and_then(Field::ident) {
        Some(field) => Some(
            quote!(::core::option::Option::Some(::std::string::ToString::to_string(&self.#field))),
        ),
        None => body_call("event_id"),
    }
    .map(|id| {
        quote! {
            fn event_id(&self) -> ::core::option::Option<::std::string::String> {
                #id
            }
        }
    });
    let data_version = ast::event_version(fields, input.attrs.serde_rename_all)
        .and_then(|field| Some((field.ident()?, field.version_text()?)))
        .map(|(field, text)| read_version(text, quote!(self.#field), quote!(&self.#field)))
        .or_else(|| body_call("data_version"))
        .map(data_version_fn);
    quote! {
        const FIELDS: &'static [&'static str] = #names;

        fn partition_key(&self) -> ::core::option::Option<::std::string::String> {
            #partition_key
        }

        #event_id
        #data_version
    }
}

/// `data_version`: the version the decoded event read from its data's `event_version`, so the
/// runtime need not look for it in the text first. Only emitted when a field holds it as text;
/// the trait's default answers `NotRead`.
fn data_version_fn(body: TokenStream) -> TokenStream {
    quote! {
        fn data_version(&self) -> _er::DataVersion<'_> {
            #body
        }
    }
}

/// The `DataVersion` of the `event_version` field, held as `text`: `field` is the field itself
/// (`self.event_version`) and `by_ref` a reference to it (`&self.event_version`, or the binding
/// of a `match self` arm).
fn read_version(text: VersionText, field: TokenStream, by_ref: TokenStream) -> TokenStream {
    match text {
        VersionText::Text => quote!(_er::DataVersion::Is(#by_ref)),
        VersionText::OptionalText => quote!(_er::DataVersion::from_option(#field.as_deref())),
    }
}

fn enum_body(input: &Input, version: &LitStr, variants: &[Variant]) -> TokenStream {
    let tag = input
        .attrs
        .serde_tag
        .as_ref()
        .expect("validated: an enum has `#[serde(tag)]`");
    let types: Vec<&LitStr> = variants
        .iter()
        .map(|v| v.event_type().expect("validated: each variant has a type"))
        .collect();
    let idents: Vec<&Ident> = variants.iter().map(Variant::ident).collect();
    let fields = enum_fields(tag, variants);

    let partition_key = enum_partition_key(input, variants);
    let event_id = enum_event_id(variants);
    let data_version = enum_data_version(input, variants);

    quote! {
        const TYPES: &'static [&'static str] = &[#(#types),*];
        const VERSION: &'static str = #version;
        const TAG: ::core::option::Option<&'static str> = ::core::option::Option::Some(#tag);
        const FIELDS: &'static [&'static str] = #fields;

        fn event_type(&self) -> &'static str {
            match self {
                #(Self::#idents { .. } => #types,)*
            }
        }

        fn partition_key(&self) -> ::core::option::Option<::std::string::String> {
            #partition_key
        }

        #event_id
        #data_version
    }
}

/// The arm of a variant that holds a body `ty`: the body's answer to `method`.
fn body_arm(variant: &Ident, ty: &syn::Type, method: &str) -> TokenStream {
    let method = Ident::new(method, ty.span());
    let call = quote_spanned!(ty.span()=> <#ty as _er::EventBody>::#method(body));
    quote!(Self::#variant(body) => #call,)
}

/// `partition_key`: each variant's key field, or its body's key.
fn enum_partition_key(input: &Input, variants: &[Variant]) -> TokenStream {
    if input.attrs.unkeyed {
        return quote!(::core::option::Option::None);
    }
    let arms = variants.iter().map(|v| {
        let variant = v.ident();
        if let Some(ty) = v.body() {
            return body_arm(variant, ty, "partition_key");
        }
        let key = ast::partition_key(&v.fields).and_then(Field::ident);
        quote!(Self::#variant { #key, .. } => ::core::option::Option::Some(::std::string::ToString::to_string(#key)),)
    });
    quote! {
        match self {
            #(#arms)*
        }
    }
}

/// `event_id`, when every variant gives one: its `event_id` field, or its body's.
fn enum_event_id(variants: &[Variant]) -> Option<TokenStream> {
    let arms: Vec<TokenStream> = variants
        .iter()
        .map(|v| {
            let variant = v.ident();
            if let Some(ty) = v.body() {
                return Some(body_arm(variant, ty, "event_id"));
            }
            let id = ast::event_id(&v.fields).and_then(Field::ident)?;
            Some(quote!(Self::#variant { #id, .. } => ::core::option::Option::Some(::std::string::ToString::to_string(#id)),))
        })
        .collect::<Option<_>>()?;
    (!arms.is_empty()).then(|| {
        quote! {
            fn event_id(&self) -> ::core::option::Option<::std::string::String> {
                match self {
                    #(#arms)*
                }
            }
        }
    })
}

/// `data_version`, when some variant reads its version as text (or holds a body, which may).
fn enum_data_version(input: &Input, variants: &[Variant]) -> Option<TokenStream> {
    let arms: Vec<Option<TokenStream>> = variants
        .iter()
        .map(|v| {
            let variant = v.ident();
            if let Some(ty) = v.body() {
                return Some(body_arm(variant, ty, "data_version"));
            }
            let renames_all = input.attrs.serde_rename_all || v.attrs.serde_rename_all;
            let field = ast::event_version(&v.fields, renames_all)?;
            let (field, text) = (field.ident()?, field.version_text()?);
            let version = read_version(text, quote!(#field), quote!(#field));
            Some(quote!(Self::#variant { #field, .. } => #version,))
        })
        .collect();
    arms.iter().any(Option::is_some).then(|| {
        let arms = variants.iter().zip(arms).map(|(v, arm)| {
            let variant = v.ident();
            arm.unwrap_or_else(|| quote!(Self::#variant { .. } => _er::DataVersion::NotRead,))
        });
        data_version_fn(quote! {
            match self {
                #(#arms)*
            }
        })
    })
}

/// The fields a key template may name: the tag, and the fields every variant has. A body's
/// fields are known only to the compiler, so with bodies the list is made in a `const`.
fn enum_fields(tag: &LitStr, variants: &[Variant]) -> TokenStream {
    let named: Vec<&Variant> = variants.iter().filter(|v| v.body().is_none()).collect();
    let common: Vec<String> = named.first().map_or(Vec::new(), |first| {
        first
            .fields
            .iter()
            .map(Field::serialized_name)
            .filter(|name| {
                named
                    .iter()
                    .all(|v| v.fields.iter().any(|f| f.serialized_name() == *name))
            })
            .collect()
    });
    let mut bodies: Vec<&syn::Type> = Vec::new();
    for ty in variants.iter().filter_map(Variant::body) {
        if !bodies
            .iter()
            .any(|seen| tokens_text(*seen) == tokens_text(ty))
        {
            bodies.push(ty);
        }
    }
    if bodies.is_empty() {
        return quote!(&[#tag #(, #common)*]);
    }
    let named_list = (!named.is_empty()).then(|| quote!(&[#(#common),*],));
    let bodies = bodies
        .iter()
        .map(|ty| quote_spanned!(ty.span()=> <#ty as _er::EventBody>::FIELDS));
    quote! {{
        const LISTS: &[&[&str]] = &[
            #named_list
            #(#bodies,)*
        ];
        const COMMON: ([&str; LISTS[0].len() + 1], usize) = _er::common_fields(#tag, LISTS);
        const ALL: &[&str; LISTS[0].len() + 1] = &COMMON.0;
        ALL.split_at(COMMON.1).0
    }}
}
