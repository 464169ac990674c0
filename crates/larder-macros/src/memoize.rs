//! `#[memoize]`: rewrites a function to look its result up in a larder cache first.
//!
//! ```ignore
//! #[memoize(namespace = "loan_calc", version = 1, ttl = "10m")]
//! async fn quote(q: LoanQuote) -> Result<Quote, CalcError> { … }
//! ```
//!
//! Options (all optional):
//! * `namespace = "…"`: default `module_path!()` + `.` + the function name, lowercased, `::`
//!   written `.`, other characters outside `[a-z0-9_.-]` written `_`;
//! * `version = N` (default 1): bump it when the function's meaning changes;
//! * `ttl = "10m"` (units `ms`, `s`, `m`, `h`, `d`, combinable: `"1h30m"`; default `"10m"`),
//!   parsed at compile time;
//! * `cache = expr`: an expression giving a `Cache` or `&Cache` (default: the process-wide
//!   `default_cache()`);
//! * `key = expr`: the key instead of the arguments (any `StableKey` expression);
//! * `receiver`: include `self` in the key (it must be `StableKey`); without it the receiver is
//!   left out;
//! * `cache_err`: for a function returning `Result`, cache `Err` too (both must be
//!   serializable); by default only `Ok` is cached and callers that wait share the `Err`
//!   (it must be `Clone`);
//! * `crate = "path"`: where to find `larder-cache` (default: found from `Cargo.toml`).

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, FnArg, ItemFn, LitInt, LitStr, Meta, Pat, ReturnType, Token, Type};

struct Opts {
    namespace: Option<String>,
    version: u32,
    ttl_ms: u64,
    cache: Option<Expr>,
    key: Option<Expr>,
    receiver: bool,
    cache_err: bool,
    krate: Option<syn::Path>,
}

/// Where the generated code finds `larder_cache`: a direct dependency (`::larder_cache`, or
/// its renamed name), else the facade (`::larder::cache`), else `::larder_cache` so the
/// compiler's error names what is missing.
fn cache_crate_path() -> TokenStream {
    use crate::manifest::{crate_name, Found as FoundCrate};
    let ident = |name: &str| syn::Ident::new(name, Span::call_site());
    match crate_name("larder-cache") {
        Some(FoundCrate::Name(name)) => {
            let id = ident(&name);
            return quote!(::#id);
        }
        // larder-cache's own tests and benches (its lib declares `extern crate self`).
        Some(FoundCrate::Itself) => return quote!(::larder_cache),
        None => {}
    }
    match crate_name("larder") {
        Some(FoundCrate::Name(name)) => {
            let id = ident(&name);
            quote!(::#id::cache)
        }
        Some(FoundCrate::Itself) => quote!(crate::cache),
        None => quote!(::larder_cache),
    }
}

/// Parses `"10m"`, `"1h30m"`, `"500ms"`, `"2d"` into milliseconds.
pub(crate) fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("expected a number at `{rest}`"));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| format!("number too large in `{s}`"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let mult: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("missing unit after `{n}` (use ms, s, m, h or d)")),
            other => return Err(format!("unknown unit `{other}` (use ms, s, m, h or d)")),
        };
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration `{s}` is too long"))?;
    }
    if total == 0 {
        return Err("a TTL of zero caches nothing".into());
    }
    Ok(total)
}

fn parse_opts(attr: TokenStream) -> syn::Result<Opts> {
    let mut o = Opts {
        namespace: None,
        version: 1,
        ttl_ms: 600_000,
        cache: None,
        key: None,
        receiver: false,
        cache_err: false,
        krate: None,
    };
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr)?;
    for meta in metas {
        let name = meta.path().get_ident().map(|i| i.to_string()).unwrap_or_default();
        match (name.as_str(), &meta) {
            ("namespace", Meta::NameValue(nv)) => {
                let s: LitStr = syn::parse2(nv.value.to_token_stream())?;
                let v = s.value();
                check_namespace(&v).map_err(|why| syn::Error::new(s.span(), why))?;
                o.namespace = Some(v);
            }
            ("version", Meta::NameValue(nv)) => {
                let n: LitInt = syn::parse2(nv.value.to_token_stream())?;
                o.version = n.base10_parse()?;
            }
            ("ttl", Meta::NameValue(nv)) => {
                let s: LitStr = syn::parse2(nv.value.to_token_stream()).map_err(|e| {
                    syn::Error::new(e.span(), "ttl is a string such as \"10m\", \"30s\" or \"1h30m\"")
                })?;
                o.ttl_ms = parse_ttl(&s.value()).map_err(|why| syn::Error::new(s.span(), why))?;
            }
            ("cache", Meta::NameValue(nv)) => o.cache = Some(nv.value.clone()),
            ("key", Meta::NameValue(nv)) => o.key = Some(nv.value.clone()),
            ("crate", Meta::NameValue(nv)) => {
                let s: LitStr = syn::parse2(nv.value.to_token_stream())?;
                o.krate = Some(s.parse()?);
            }
            ("receiver", Meta::Path(_)) => o.receiver = true,
            ("cache_err", Meta::Path(_)) => o.cache_err = true,
            _ => {
                return Err(syn::Error::new(
                    meta.span(),
                    "expected `namespace = \"..\"`, `version = N`, `ttl = \"10m\"`, `cache = expr`, \
                     `key = expr`, `receiver`, `cache_err` or `crate = \"path\"`",
                ))
            }
        }
    }
    Ok(o)
}

use quote::ToTokens;

fn check_namespace(ns: &str) -> Result<(), String> {
    if ns.is_empty() || ns.len() > 64 {
        return Err("namespace must be 1 to 64 bytes".into());
    }
    if !ns.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')) {
        return Err("namespace may only contain lowercase ASCII letters, digits, '_', '.' and '-'".into());
    }
    Ok(())
}

/// `Result<T, E>` → `Some((T, E))`.
fn result_parts(ty: &Type) -> Option<(Type, Type)> {
    let Type::Path(tp) = ty else { return None };
    let last = tp.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    let mut tys = args.args.iter().filter_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    let t = tys.next()?;
    let e = tys.next()?;
    Some((t, e))
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let opts = parse_opts(attr)?;
    let func: ItemFn = syn::parse2(item)?;
    let cache_crate = match &opts.krate {
        Some(p) => quote!(#p),
        None => cache_crate_path(),
    };
    let ItemFn { attrs, vis, sig, block } = &func;
    let is_async = sig.asyncness.is_some();
    let fn_name = sig.ident.to_string();

    let ret_ty: Type = match &sig.output {
        ReturnType::Default => {
            return Err(syn::Error::new_spanned(sig, "#[memoize] needs a function that returns a value"))
        }
        ReturnType::Type(_, t) => (**t).clone(),
    };

    // Key parts: the arguments (by reference), the receiver when opted in.
    let mut key_parts: Vec<TokenStream> = Vec::new();
    let mut checks: Vec<TokenStream> = Vec::new();
    let mut has_receiver = false;
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                has_receiver = true;
                if opts.receiver && opts.key.is_none() {
                    key_parts.push(quote!(&self));
                    checks.push(
                        quote_spanned! {r.span()=> #cache_crate::__private::assert_stable_key(&self); },
                    );
                }
            }
            FnArg::Typed(pt) => {
                let Pat::Ident(pi) = &*pt.pat else {
                    return Err(syn::Error::new_spanned(
                        &pt.pat,
                        "#[memoize] needs plain argument names (no patterns) to build the key",
                    ));
                };
                let id = &pi.ident;
                if opts.key.is_none() {
                    key_parts.push(quote!(&#id));
                    let ty = &pt.ty;
                    checks.push(
                        quote_spanned! {ty.span()=> #cache_crate::__private::assert_stable_key(&#id); },
                    );
                }
            }
        }
    }
    if opts.receiver && !has_receiver {
        return Err(syn::Error::new_spanned(sig, "`receiver` given, but the function has no `self`"));
    }

    let key_expr = match &opts.key {
        Some(k) => {
            checks.push(
                quote_spanned! {k.span()=> #cache_crate::__private::assert_stable_key(&__larder_key); },
            );
            quote!(#k)
        }
        None if key_parts.is_empty() => quote!(()),
        None if key_parts.len() == 1 => {
            let p = &key_parts[0];
            quote!(#p)
        }
        None => quote!((#(#key_parts,)*)),
    };

    let namespace = match &opts.namespace {
        Some(ns) => quote!(#ns),
        None => quote!(::core::concat!(::core::module_path!(), ".", #fn_name)),
    };
    let sanitize = opts.namespace.is_none();
    let version = opts.version;
    let ttl_ms = opts.ttl_ms;
    let cache_expr = match &opts.cache {
        Some(c) => quote!(::core::borrow::Borrow::<#cache_crate::Cache>::borrow(&(#c))),
        None => quote!(#cache_crate::default_cache()),
    };

    let fallible = if opts.cache_err { None } else { result_parts(&ret_ty) };
    let value_ty = match &fallible {
        Some((t, _)) => t.clone(),
        None => ret_ty.clone(),
    };
    let hit = if fallible.is_some() { quote!(::core::result::Result::Ok(__v)) } else { quote!(__v) };

    let body = if is_async {
        let finish = if fallible.is_some() {
            quote!(__p.try_compute(move || async move { let __out: #ret_ty = #block; __out }).await)
        } else {
            quote!(__p.compute(move || async move { let __out: #ret_ty = #block; __out }).await)
        };
        let uncached = quote!({
            let __f = async move { let __out: #ret_ty = #block; __out };
            __f.await
        });
        (finish, uncached)
    } else {
        let finish = if fallible.is_some() {
            quote!(__p.try_compute_blocking(move || -> #ret_ty #block))
        } else {
            quote!(__p.compute_blocking(move || -> #ret_ty #block))
        };
        let uncached = quote!({
            let __f = move || -> #ret_ty #block;
            __f()
        });
        (finish, uncached)
    };
    let (finish, uncached) = body;

    let out = quote! {
        #(#attrs)*
        #vis #sig {
            static __LARDER_SPACE: ::std::sync::OnceLock<::core::option::Option<#cache_crate::__private::KeySpace>> =
                ::std::sync::OnceLock::new();
            let __larder_space = #cache_crate::__private::memo_space(&__LARDER_SPACE, #namespace, #sanitize, #version);
            match __larder_space {
                ::core::option::Option::Some(__space) => {
                    let __larder_key = #key_expr;
                    #(#checks)*
                    let __lookup = #cache_expr.lookup::<_, #value_ty>(
                        __space,
                        &__larder_key,
                        ::core::time::Duration::from_millis(#ttl_ms),
                    );
                    match __lookup {
                        #cache_crate::Lookup::Hit(__v) => #hit,
                        #cache_crate::Lookup::Miss(__p) => #finish,
                    }
                }
                ::core::option::Option::None => #uncached,
            }
        }
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_strings() {
        assert_eq!(parse_ttl("10m"), Ok(600_000));
        assert_eq!(parse_ttl("1h30m"), Ok(5_400_000));
        assert_eq!(parse_ttl("500ms"), Ok(500));
        assert_eq!(parse_ttl("2d"), Ok(172_800_000));
        assert!(parse_ttl("10").is_err());
        assert!(parse_ttl("10y").is_err());
        assert!(parse_ttl("").is_err());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("99999999999999999999s").is_err());
    }

    #[test]
    fn namespaces_checked_at_compile_time() {
        assert!(check_namespace("loan_calc").is_ok());
        assert!(check_namespace("Loan").is_err());
        assert!(check_namespace("").is_err());
    }
}
