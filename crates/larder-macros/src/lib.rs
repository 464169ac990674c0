//! Procedural macros for larder. Use them through the `larder` facade (or `larder-key` for
//! the derive alone); this crate's paths are not a stable interface of their own.
//!
//! * `#[derive(StableKey)]` writes a canonical, injective encoding of a struct or enum for
//!   cache keys. The type's name and a schema version are part of it:
//!   `#[stable_key(name = "LoanQuote", version = 2)]` (defaults: the Rust ident and 1), so a
//!   Rust rename need not change keys and a change of meaning can. Field attributes:
//!   `#[stable_key(skip)]` and `#[stable_key(with = path)]`, where `path` is a function
//!   `fn(&FieldType) -> impl StableKey` that normalizes the field first.
//! * `#[memoize]` caches a function's results in a larder cache (see `larder-cache`).
//!
//! This crate does not do anything at run time; all behaviour lives in the crates the
//! generated code calls.
#![forbid(unsafe_code)]

use proc_macro::TokenStream;

mod manifest;
mod memoize;
mod stable_key;

/// Derives `StableKey` (see the crate docs for the attributes).
#[proc_macro_derive(StableKey, attributes(stable_key))]
pub fn derive_stable_key(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    stable_key::expand(input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Memoizes a function through a larder cache (see `larder-cache` for the options).
#[proc_macro_attribute]
pub fn memoize(attr: TokenStream, item: TokenStream) -> TokenStream {
    memoize::expand(attr.into(), item.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}
