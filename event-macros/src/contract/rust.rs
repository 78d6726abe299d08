//! What a Rust type can hold, read from how it is written (a macro sees no type information):
//! the standard and well-known types by name, anything else as unknown, which is never an error.

use syn::{GenericArgument, PathArguments, Type};

use super::schema::Kinds;

/// A Rust type as serde reads it from JSON.
pub enum Shape<'a> {
    /// A type the macro cannot see into (a user's struct or enum, a generic): it may hold
    /// anything, so it is never reported.
    Unknown,
    /// `serde_json::Value`: holds anything.
    Any,
    /// A string, integer, number or boolean type.
    Scalar(Kinds),
    /// chrono's `DateTime`/`NaiveDateTime`, time's `OffsetDateTime`/`PrimitiveDateTime`:
    /// RFC 3339 strings only.
    DateTime,
    /// A sequence, with its item type when written.
    Array(Option<&'a Type>),
    /// A map, with its value type when written.
    Object(Option<&'a Type>),
    /// `Option<T>`: `T` or null, and may be missing.
    Optional(&'a Type),
    /// `()`: null.
    Unit,
}

impl Shape<'_> {
    /// The kinds of JSON value it holds; `None` for anything.
    pub fn holds(&self) -> Option<Kinds> {
        match self {
            Shape::Unknown | Shape::Any => None,
            Shape::Scalar(kinds) => Some(*kinds),
            Shape::DateTime => Some(Kinds::STRING),
            Shape::Array(_) => Some(Kinds::ARRAY),
            Shape::Object(_) => Some(Kinds::OBJECT),
            Shape::Optional(inner) => shape(inner).holds().map(|k| k.union(Kinds::NULL)),
            Shape::Unit => Some(Kinds::NULL),
        }
    }
}

/// The shape of `ty`, read syntactically.
pub fn shape(ty: &Type) -> Shape<'_> {
    match ty {
        Type::Group(group) => shape(&group.elem),
        Type::Paren(paren) => shape(&paren.elem),
        Type::Reference(reference) => shape(&reference.elem),
        Type::Slice(slice) => Shape::Array(Some(&slice.elem)),
        Type::Array(array) => Shape::Array(Some(&array.elem)),
        Type::Tuple(tuple) if tuple.elems.is_empty() => Shape::Unit,
        Type::Tuple(_) => Shape::Array(None),
        Type::Path(path) if path.qself.is_none() => named(&path.path),
        _ => Shape::Unknown,
    }
}

fn named(path: &syn::Path) -> Shape<'_> {
    let Some(last) = path.segments.last() else {
        return Shape::Unknown;
    };
    let args = type_args(&last.arguments);
    let in_module = |module: &str| path.segments.iter().any(|s| s.ident == module);
    match last.ident.to_string().as_str() {
        "String" | "str" | "char" => Shape::Scalar(Kinds::STRING),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" => Shape::Scalar(Kinds::INTEGER),
        "f32" | "f64" => Shape::Scalar(Kinds::NUMBER),
        "bool" => Shape::Scalar(Kinds::BOOLEAN),
        "Option" if args.len() == 1 => Shape::Optional(args[0]),
        "Box" | "Rc" | "Arc" if args.len() == 1 => shape(args[0]),
        "Cow" if args.len() == 1 => shape(args[0]),
        "Vec" | "VecDeque" | "HashSet" | "BTreeSet" | "LinkedList" | "BinaryHeap" | "IndexSet" => {
            Shape::Array(args.first().copied())
        }
        "HashMap" | "BTreeMap" | "IndexMap" => Shape::Object(args.get(1).copied()),
        "Map" if in_module("serde_json") => Shape::Object(args.get(1).copied()),
        "Value" if path.segments.len() == 1 || in_module("serde_json") => Shape::Any,
        "DateTime" | "NaiveDateTime" | "OffsetDateTime" | "PrimitiveDateTime" => Shape::DateTime,
        _ => Shape::Unknown,
    }
}

/// The type arguments of `Name<A, B>`, lifetimes left out.
fn type_args(arguments: &PathArguments) -> Vec<&Type> {
    match arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Serde's `rename_all` rules, applied to a field (written in snake_case) or a variant (written
/// in PascalCase). An unknown rule is serde's own error; the name is then left as written.
pub fn rename_field(rule: &str, field: &str) -> String {
    match rule {
        "UPPERCASE" | "SCREAMING_SNAKE_CASE" => field.to_ascii_uppercase(),
        "PascalCase" => pascal(field),
        "camelCase" => {
            let pascal = pascal(field);
            let mut chars = pascal.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_lowercase().to_string() + chars.as_str()
            })
        }
        "kebab-case" => field.replace('_', "-"),
        "SCREAMING-KEBAB-CASE" => field.to_ascii_uppercase().replace('_', "-"),
        _ => field.to_owned(),
    }
}

/// See [`rename_field`].
pub fn rename_variant(rule: &str, variant: &str) -> String {
    let snake = || {
        let mut out = String::new();
        for (i, c) in variant.char_indices() {
            if c.is_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    };
    match rule {
        "lowercase" => variant.to_ascii_lowercase(),
        "UPPERCASE" => variant.to_ascii_uppercase(),
        "camelCase" => {
            let mut chars = variant.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_lowercase().to_string() + chars.as_str()
            })
        }
        "snake_case" => snake(),
        "SCREAMING_SNAKE_CASE" => snake().to_ascii_uppercase(),
        "kebab-case" => snake().replace('_', "-"),
        "SCREAMING-KEBAB-CASE" => snake().to_ascii_uppercase().replace('_', "-"),
        _ => variant.to_owned(),
    }
}

fn pascal(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds(ty: syn::Type) -> Option<Kinds> {
        shape(&ty).holds()
    }

    #[test]
    fn types_by_name() {
        assert_eq!(holds(syn::parse_quote!(String)), Some(Kinds::STRING));
        assert_eq!(holds(syn::parse_quote!(&'a str)), Some(Kinds::STRING));
        assert_eq!(holds(syn::parse_quote!(u8)), Some(Kinds::INTEGER));
        assert_eq!(holds(syn::parse_quote!(f64)), Some(Kinds::NUMBER));
        assert_eq!(
            holds(syn::parse_quote!(Option<i64>)),
            Some(Kinds::INTEGER.union(Kinds::NULL))
        );
        assert_eq!(holds(syn::parse_quote!([u8; 4])), Some(Kinds::ARRAY));
        assert_eq!(
            holds(syn::parse_quote!(std::collections::HashMap<String, i64>)),
            Some(Kinds::OBJECT)
        );
        assert_eq!(holds(syn::parse_quote!(serde_json::Value)), None);
        assert_eq!(holds(syn::parse_quote!(Task)), None);
        assert_eq!(holds(syn::parse_quote!(Option<Task>)), None);
        assert_eq!(
            holds(syn::parse_quote!(chrono::DateTime<chrono::Utc>)),
            Some(Kinds::STRING)
        );
    }

    #[test]
    fn serde_rename_rules() {
        assert_eq!(rename_field("camelCase", "task_id"), "taskId");
        assert_eq!(rename_field("PascalCase", "task_id"), "TaskId");
        assert_eq!(rename_field("kebab-case", "task_id"), "task-id");
        assert_eq!(rename_field("SCREAMING_SNAKE_CASE", "task_id"), "TASK_ID");
        assert_eq!(rename_variant("snake_case", "TaskCreated"), "task_created");
        assert_eq!(rename_variant("kebab-case", "TaskCreated"), "task-created");
        assert_eq!(rename_variant("lowercase", "TaskCreated"), "taskcreated");
        assert_eq!(rename_variant("camelCase", "TaskCreated"), "taskCreated");
    }
}
