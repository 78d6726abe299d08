//! Collects every error a macro finds, so that one build reports all of them.

use std::cell::RefCell;
use std::fmt::Display;
use std::thread;

use quote::ToTokens;

/// An error accumulator, threaded through parsing and validation.
///
/// [`Ctxt::check`] must be called before it is dropped: an unchecked context would swallow the
/// user's errors, so dropping one panics (outside of an unwinding panic).
pub struct Ctxt {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    /// An empty context.
    pub fn new() -> Self {
        Ctxt {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// Records an error spanning `tokens` (all of them, where the compiler can join spans).
    pub fn error_spanned_by<T: ToTokens>(&self, tokens: T, message: impl Display) {
        self.syn_error(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    /// Records an error at `span`.
    pub fn error_at(&self, span: proc_macro2::Span, message: impl Display) {
        self.syn_error(syn::Error::new(span, message));
    }

    /// Records an error that parsing returned.
    pub fn syn_error(&self, err: syn::Error) {
        self.errors
            .borrow_mut()
            .as_mut()
            .expect("Ctxt used after check")
            .push(err);
    }

    /// Consumes the context: `Ok` when nothing was recorded, else every error combined.
    pub fn check(self) -> syn::Result<()> {
        let mut errors = self
            .errors
            .borrow_mut()
            .take()
            .expect("Ctxt checked twice")
            .into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for err in errors {
            combined.combine(err);
        }
        Err(combined)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !thread::panicking() && self.errors.borrow().is_some() {
            panic!("forgot to check for errors");
        }
    }
}

/// Tokens as a person would write them in a message: `anyhow::Result<()>`, `-1`, `&'a str`.
pub fn tokens_text<T: ToTokens>(tokens: &T) -> String {
    use proc_macro2::{Delimiter, TokenTree};

    fn push(out: &mut String, stream: proc_macro2::TokenStream) {
        let mut prev_word = false;
        for tree in stream {
            let word = matches!(tree, TokenTree::Ident(_) | TokenTree::Literal(_));
            if word && prev_word {
                out.push(' ');
            }
            prev_word = word;
            match tree {
                TokenTree::Group(group) => {
                    let (open, close) = match group.delimiter() {
                        Delimiter::Parenthesis => ("(", ")"),
                        Delimiter::Bracket => ("[", "]"),
                        Delimiter::Brace => ("{ ", " }"),
                        Delimiter::None => ("", ""),
                    };
                    out.push_str(open);
                    push(out, group.stream());
                    out.push_str(close);
                }
                TokenTree::Punct(p) if matches!(p.as_char(), ',' | ';') => {
                    out.push(p.as_char());
                    out.push(' ');
                }
                TokenTree::Punct(p) if matches!(p.as_char(), '+' | '=') => {
                    out.push(' ');
                    out.push(p.as_char());
                    out.push(' ');
                }
                other => out.push_str(&other.to_string()),
            }
        }
    }

    let mut out = String::new();
    push(&mut out, tokens.to_token_stream());
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_read_like_source() {
        let ty: syn::Type = syn::parse_quote!(anyhow::Result<(), std::io::Error>);
        assert_eq!(tokens_text(&ty), "anyhow::Result<(), std::io::Error>");
        let ty: syn::Type = syn::parse_quote!(&'static dyn Send);
        assert_eq!(tokens_text(&ty), "&'static dyn Send");
        let e: syn::Expr = syn::parse_quote!(-1);
        assert_eq!(tokens_text(&e), "-1");
    }
}
