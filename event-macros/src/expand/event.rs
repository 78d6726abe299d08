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

fn generate(input: &Input) -> TokenStream {
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
    // `contract = "..."`: the file is part of the build, so that a change to it rebuilds the
    // crate. (A missing file is already an error, and a failed build is rebuilt anyway.)
    if let Some(path) = input.attrs.contract.as_ref().map(contract::path) {
        if path.is_file() {
            let path = path.display().to_string();
            beside.extend(quote!(
                const _: &[u8] = ::core::include_bytes!(#path);
            ));
        }
    }
    // A generic type has no one registry entry (validation rejects `schema` on one).
    if !generic {
        beside.extend(registration(input));
    }
    implement(input.original, body, beside)
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
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        const _: () = {
            use ::event_runtime::__private as _er;

            #[automatically_derived]
            impl #impl_generics _er::Event for #ident #ty_generics #where_clause {
                #body
            }

            #beside
        };
    }
}

fn struct_body(input: &Input, ty: &LitStr, version: &LitStr, fields: &[Field]) -> TokenStream {
    let names = fields.iter().map(Field::serialized_name);
    let partition_key = match ast::partition_key(fields).filter(|_| !input.attrs.unkeyed) {
        Some(field) => {
            let field = field.ident();
            quote!(::core::option::Option::Some(::std::string::ToString::to_string(&self.#field)))
        }
        None => quote!(::core::option::Option::None),
    };
    let event_id = ast::event_id(fields).map(|field| {
        let field = field.ident();
        quote! {
            fn event_id(&self) -> ::core::option::Option<::std::string::String> {
                ::core::option::Option::Some(::std::string::ToString::to_string(&self.#field))
            }
        }
    });
    let data_version = ast::event_version(fields, input.attrs.serde_rename_all)
        .and_then(|field| Some((field.ident()?, field.version_text()?)))
        .map(|(field, text)| {
            data_version_fn(read_version(
                text,
                quote!(self.#field),
                quote!(&self.#field),
            ))
        });
    quote! {
        const TYPES: &'static [&'static str] = &[#ty];
        const VERSION: &'static str = #version;
        const FIELDS: &'static [&'static str] = &[#(#names),*];

        fn event_type(&self) -> &'static str {
            #ty
        }

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

    // The fields a key template may name: the tag, and the fields every variant has.
    let common = variants.first().map_or(Vec::new(), |first| {
        first
            .fields
            .iter()
            .map(Field::serialized_name)
            .filter(|name| {
                variants
                    .iter()
                    .all(|v| v.fields.iter().any(|f| f.serialized_name() == *name))
            })
            .collect()
    });

    let partition_key = if input.attrs.unkeyed {
        quote!(::core::option::Option::None)
    } else {
        let keys = variants
            .iter()
            .map(|v| ast::partition_key(&v.fields).and_then(Field::ident));
        let arms = idents.iter().zip(keys).map(|(variant, key)| {
            quote!(Self::#variant { #key, .. } => ::core::option::Option::Some(::std::string::ToString::to_string(#key)),)
        });
        quote! {
            match self {
                #(#arms)*
            }
        }
    };

    let event_ids: Option<Vec<&Ident>> = variants
        .iter()
        .map(|v| ast::event_id(&v.fields).and_then(Field::ident))
        .collect();
    let event_id = event_ids.filter(|ids| !ids.is_empty()).map(|ids| {
        quote! {
            fn event_id(&self) -> ::core::option::Option<::std::string::String> {
                match self {
                    #(Self::#idents { #ids, .. } => ::core::option::Option::Some(::std::string::ToString::to_string(#ids)),)*
                }
            }
        }
    });

    let versions: Vec<Option<(&Ident, VersionText)>> = variants
        .iter()
        .map(|v| {
            let renames_all = input.attrs.serde_rename_all || v.attrs.serde_rename_all;
            let field = ast::event_version(&v.fields, renames_all)?;
            Some((field.ident()?, field.version_text()?))
        })
        .collect();
    let data_version = versions.iter().any(Option::is_some).then(|| {
        let arms = idents
            .iter()
            .zip(&versions)
            .map(|(variant, field)| match field {
                Some((field, text)) => {
                    let version = read_version(*text, quote!(#field), quote!(#field));
                    quote!(Self::#variant { #field, .. } => #version,)
                }
                None => quote!(Self::#variant { .. } => _er::DataVersion::NotRead,),
            });
        data_version_fn(quote! {
            match self {
                #(#arms)*
            }
        })
    });

    quote! {
        const TYPES: &'static [&'static str] = &[#(#types),*];
        const VERSION: &'static str = #version;
        const TAG: ::core::option::Option<&'static str> = ::core::option::Option::Some(#tag);
        const FIELDS: &'static [&'static str] = &[#tag #(, #common)*];

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
