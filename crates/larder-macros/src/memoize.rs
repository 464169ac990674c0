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
//!   serializable); by default only `Ok` is cached, and callers that waited for a failed
//!   call in the same process get a clone of its `Err` when `E: Clone`, else
//!   `E::from(LeaderFailed)` when `E` implements that, else they compute themselves (one
//!   at a time) — no bound on `E` is required;
//! * `ttl_fn = path`: a TTL chosen from each value, `fn(&V) -> Duration` (`V` the `Ok` type
//!   when only `Ok` is cached) — e.g. a short one for empty results; replaces `ttl` per value;
//! * `err_ttl = "30s"`: for a function returning `Result`, cache `Err` too (like `cache_err`:
//!   both must be serializable) but for this TTL; `Ok` keeps `ttl` (or `ttl_fn`'s);
//! * `detach`: the function may run off the request path — a value due for an early
//!   refresh (XFetch) or inside the cache's stale-while-revalidate window is returned at once
//!   and refreshed in the background, and the cache's soft/hard timeouts apply. The call's
//!   arguments must be `Send + 'static` (they move into the background computation) and an
//!   `async fn`'s future `Send`; not for methods;
//! * `soft_timeout = "200ms"`, `hard_timeout = "2s"`: this function's factory timeouts (imply
//!   `detach`; replace the cache's). Past the soft one a caller holding a fail-safe value gets
//!   it while the computation goes on and stores its value; past the hard one the call
//!   returns `E::from(FactoryTimeout)` (so `hard_timeout` needs `Result<T, E>` with
//!   `E: From<FactoryTimeout>`), nothing is cached and the next call computes again;
//! * `tags = expr`: the tags each call's entry is stored under, an expression of the arguments
//!   giving any `IntoIterator` of `Into<String>` (`tags = [format!("user:{user_id}")]`);
//!   `Cache::invalidate_tag` with one of them retires the entry everywhere. Evaluated before
//!   the call computes, never from the result (docs/cache.md, "Tags");
//! * `crate = "path"`: where to find `larder-cache` (default: found from `Cargo.toml`);
//! * `handles = "type" | "assoc" | "none"`: where the companions go (below).
//!
//! # Companions
//!
//! Beside a free function `quote(args…) -> R` whose value type is `V` (`T` for a `Result<T, E>`
//! that caches only `Ok`, else `R`), a type of the same name holding them as associated
//! functions (`handles = "type"`, the default for functions without `self`; a braced struct
//! with no fields has no value, so it does not clash with the function, and it works at
//! module level and inside function bodies alike):
//!
//! | companion | does |
//! |---|---|
//! | `quote::key(args…) -> Option<String>` | the shared-tier key text of that call |
//! | `quote::peek(args…) -> Option<V>` | the cached value, if a tier has a fresh one; computes nothing |
//! | `quote::invalidate(args…)` | removes the entry from every tier (and other processes' local tiers) |
//! | `quote::prime(args…, value: V)` | stores `value` with the function's TTL (and its `tags`) |
//! | `quote::refresh(args…) -> R` | runs the function now, stores an `Ok`/value, returns it |
//! | `quote::space() -> Option<&'static KeySpace>` | the key space (`None`: malformed `LARDER_KEY_SECRET`) |
//!
//! They take the function's arguments by value, under the same names, and use the same key
//! space (one `static`, with `LARDER_KEY_SECRET` applied once), `key = …` expression and
//! `cache = …` expression as the calls. `peek`, `invalidate`, `prime` and `refresh` are `async`
//! for an `async fn`, blocking otherwise.
//!
//! `handles = "assoc"` puts them in the surrounding inherent `impl` instead, as `quote_key`,
//! `quote_peek`, … with the method's receiver (`self.quote_peek(args…)`). Methods get none
//! by default: the macro cannot tell an inherent `impl` from a trait `impl`, where extra items
//! are not allowed. A function without `self` inside an `impl` needs `handles = "assoc"` (or
//! `"none"`): a type cannot be declared there.
// Length: one attribute's parsing, checks and the expansion of its calls and companions; the
// `quote!` templates of the sync, async, fallible and detached calls share their pieces (key
// space, TTL, tags, timeouts), so splitting them across files would scatter one generated
// function. Unit tests from `mod tests`.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
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
    handles: Option<Handles>,
    ttl_fn: Option<Expr>,
    err_ttl_ms: Option<u64>,
    detach: bool,
    soft_timeout_ms: Option<u64>,
    hard_timeout_ms: Option<u64>,
    tags: Option<Expr>,
}

/// Where the companions of a memoized function go (`handles = "…"`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Handles {
    /// `struct name {}` beside the function (a type, so `name::key(…)` works, and no value, so
    /// it does not clash with the function), its associated functions the companions.
    Type,
    /// Associated functions `name_key`, `name_peek`, … in the same `impl` block.
    Assoc,
    /// None.
    Off,
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
        handles: None,
        ttl_fn: None,
        err_ttl_ms: None,
        detach: false,
        soft_timeout_ms: None,
        hard_timeout_ms: None,
        tags: None,
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
            ("err_ttl", Meta::NameValue(nv)) => {
                let s: LitStr = syn::parse2(nv.value.to_token_stream())
                    .map_err(|e| syn::Error::new(e.span(), "err_ttl is a string such as \"30s\""))?;
                o.err_ttl_ms = Some(parse_ttl(&s.value()).map_err(|why| syn::Error::new(s.span(), why))?);
            }
            ("ttl_fn", Meta::NameValue(nv)) => o.ttl_fn = Some(nv.value.clone()),
            ("soft_timeout" | "hard_timeout", Meta::NameValue(nv)) => {
                let s: LitStr = syn::parse2(nv.value.to_token_stream()).map_err(|e| {
                    syn::Error::new(e.span(), format!("{name} is a string such as \"500ms\""))
                })?;
                let ms = parse_ttl(&s.value()).map_err(|why| syn::Error::new(s.span(), why))?;
                if name == "soft_timeout" {
                    o.soft_timeout_ms = Some(ms);
                } else {
                    o.hard_timeout_ms = Some(ms);
                }
            }
            ("detach", Meta::Path(_)) => o.detach = true,
            ("cache", Meta::NameValue(nv)) => o.cache = Some(nv.value.clone()),
            ("key", Meta::NameValue(nv)) => o.key = Some(nv.value.clone()),
            ("tags", Meta::NameValue(nv)) => o.tags = Some(nv.value.clone()),
            ("crate", Meta::NameValue(nv)) => {
                let s: LitStr = syn::parse2(nv.value.to_token_stream())?;
                o.krate = Some(s.parse()?);
            }
            ("handles", Meta::NameValue(nv)) => {
                let s: LitStr = syn::parse2(nv.value.to_token_stream())
                    .map_err(|e| syn::Error::new(e.span(), "handles is \"type\", \"assoc\" or \"none\""))?;
                o.handles = Some(match s.value().as_str() {
                    "type" => Handles::Type,
                    "assoc" => Handles::Assoc,
                    "none" => Handles::Off,
                    _ => return Err(syn::Error::new(s.span(), "handles is \"type\", \"assoc\" or \"none\"")),
                });
            }
            ("receiver", Meta::Path(_)) => o.receiver = true,
            ("cache_err", Meta::Path(_)) => o.cache_err = true,
            _ => {
                return Err(syn::Error::new(
                    meta.span(),
                    "expected `namespace = \"..\"`, `version = N`, `ttl = \"10m\"`, `cache = expr`, \
                     `key = expr`, `tags = expr`, `receiver`, `cache_err`, `err_ttl = \"30s\"`, `ttl_fn = path`, `detach`, \
                     `soft_timeout = \"200ms\"`, `hard_timeout = \"2s\"`, \
                     `handles = \"type\"|\"assoc\"|\"none\"` or `crate = \"path\"`",
                ))
            }
        }
    }
    Ok(o)
}

use quote::ToTokens;

/// The namespace rule is `larder_key_format::namespace::check` (the one `KeySpace::new` runs);
/// the messages are the macro's own.
fn check_namespace(ns: &str) -> Result<(), String> {
    use larder_key_format::namespace::{check, Problem};
    match check(ns) {
        Ok(()) => Ok(()),
        Err(Problem::Empty | Problem::TooLong) => Err("namespace must be 1 to 64 bytes".into()),
        Err(Problem::Character) => {
            Err("namespace may only contain lowercase ASCII letters, digits, '_', '.' and '-'".into())
        }
    }
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
    let ItemFn { attrs, vis, modifiers, sig, block } = &func;
    // `default fn` (specialization) has no meaning for a memoized function.
    modifiers.require_empty()?;
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
    // For the companions: the receiver (without a `mut` binding), `name: Type` of each
    // argument (without `mut`), and the names in order.
    let mut handle_receiver: Option<TokenStream> = None;
    let mut handle_params: Vec<TokenStream> = Vec::new();
    let mut arg_names: Vec<syn::Ident> = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                has_receiver = true;
                let mut r2 = r.clone();
                if !matches!(r2.kind, syn::ReceiverKind::Reference(..)) {
                    r2.mutability = None;
                }
                handle_receiver = Some(quote!(#r2));
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
                let ty = &pt.ty;
                handle_params.push(quote!(#id: #ty));
                arg_names.push(id.clone());
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
    let ttl = quote!(::core::time::Duration::from_millis(#ttl_ms));
    let cache_expr = match &opts.cache {
        Some(c) => quote!(::core::borrow::Borrow::<#cache_crate::Cache>::borrow(&(#c))),
        None => quote!(#cache_crate::default_cache()),
    };

    if opts.err_ttl_ms.is_some() && result_parts(&ret_ty).is_none() {
        return Err(syn::Error::new_spanned(&ret_ty, "`err_ttl` needs a function that returns `Result`"));
    }
    // `err_ttl` caches errors too (like `cache_err`), for their own TTL.
    let caches_err = opts.cache_err || opts.err_ttl_ms.is_some();
    let fallible = if caches_err { None } else { result_parts(&ret_ty) };
    let value_ty = match &fallible {
        Some((t, _)) => t.clone(),
        None => ret_ty.clone(),
    };
    let hit = if fallible.is_some() { quote!(::core::result::Result::Ok(__v)) } else { quote!(__v) };

    // A TTL chosen from the value: `ttl_fn` for values (the `Ok` side when errors are cached),
    // `err_ttl` for errors.
    let ttl_of_ok = |v: TokenStream| match &opts.ttl_fn {
        Some(f) => quote!((#f)(#v)),
        None => quote!(#ttl),
    };
    let ttl_by = match (opts.err_ttl_ms, &opts.ttl_fn) {
        (Some(err_ms), _) => {
            let ok = ttl_of_ok(quote!(__v));
            quote!(.ttl_by(|__r: &#ret_ty| match __r {
                ::core::result::Result::Ok(__v) => #ok,
                ::core::result::Result::Err(_) => ::core::time::Duration::from_millis(#err_ms),
            }))
        }
        (None, Some(f)) => quote!(.ttl_by(|__v: &#value_ty| (#f)(__v))),
        (None, None) => quote!(),
    };
    // Tags: read by the cache before the computation (so evaluated before the call's
    // arguments move into it).
    let tags_by = match &opts.tags {
        Some(t) => quote!(.tags(#t)),
        None => quote!(),
    };
    let prime_ttl = |v: &syn::Ident| match (opts.err_ttl_ms, &opts.ttl_fn) {
        (Some(err_ms), _) => {
            let ok = ttl_of_ok(quote!(__v));
            quote!(match &#v {
                ::core::result::Result::Ok(__v) => #ok,
                ::core::result::Result::Err(_) => ::core::time::Duration::from_millis(#err_ms),
            })
        }
        (None, Some(f)) => quote!((#f)(&#v)),
        (None, None) => quote!(#ttl),
    };

    // Companions: a module beside a free function by default; none for methods unless asked
    // (`#[memoize]` cannot tell an inherent impl from a trait impl, where extra associated
    // functions are not allowed).
    let handles = opts.handles.unwrap_or(if has_receiver { Handles::Off } else { Handles::Type });
    if handles == Handles::Type && has_receiver {
        return Err(syn::Error::new_spanned(
            sig,
            "a method's companions cannot go in a type of their own: use `handles = \"assoc\"` (or \"none\")",
        ));
    }

    // The key space: ONE expression, used by the call path and by every companion.
    let space_init = quote! {
        static __LARDER_SPACE: ::std::sync::OnceLock<::core::option::Option<#cache_crate::__private::KeySpace>> =
            ::std::sync::OnceLock::new();
        #cache_crate::__private::memo_space(&__LARDER_SPACE, #namespace, #sanitize, #version)
    };

    let ident = &sig.ident;
    let space_fn = format_ident!("__larder_memo_{}_space", ident);
    let compute_fn = format_ident!("__larder_memo_{}_compute", ident);
    let cfgs: Vec<&syn::Attribute> = attrs.iter().filter(|a| a.path().is_ident("cfg")).collect();
    let await_tok = if is_async { quote!(.await) } else { quote!() };

    // How the wrapper reaches the space, and runs the body.
    let (space_expr, compute_call, siblings) = if handles == Handles::Off {
        let compute_call = if is_async {
            quote!(async move { let __out: #ret_ty = #block; __out })
        } else {
            quote!((move || -> #ret_ty #block)())
        };
        (quote!({ #space_init }), compute_call, quote!())
    } else {
        let (generics, where_clause) = (&sig.generics, &sig.generics.where_clause);
        let asyncness = &sig.asyncness;
        let inputs = &sig.inputs;
        let (space_path, compute_call) = match (handles, has_receiver) {
            (Handles::Assoc, true) => (quote!(Self::#space_fn), quote!(self.#compute_fn(#(#arg_names),*))),
            (Handles::Assoc, false) => (quote!(Self::#space_fn), quote!(Self::#compute_fn(#(#arg_names),*))),
            _ => (quote!(#space_fn), quote!(#compute_fn(#(#arg_names),*))),
        };
        let siblings = quote! {
            #(#cfgs)*
            #[doc(hidden)]
            #[allow(non_snake_case)]
            fn #space_fn() -> ::core::option::Option<&'static #cache_crate::__private::KeySpace> {
                #space_init
            }
            #(#cfgs)*
            #[doc(hidden)]
            #[allow(non_snake_case, clippy::too_many_arguments, clippy::needless_pass_by_value)]
            #asyncness fn #compute_fn #generics (#inputs) -> #ret_ty #where_clause #block
        };
        (quote!(#space_path()), compute_call, siblings)
    };

    // How a caller that waited for a failed leader gets its error: cloned if `E: Clone`, else
    // `E::from(LeaderFailed)` if that exists, else it computes itself (chosen at compile time).
    let share = match &fallible {
        Some((_, e)) => quote! {{
            #[allow(unused_imports)]
            use #cache_crate::__private::{ShareByClone as _, ShareByFrom as _, ShareNot as _};
            #[allow(clippy::needless_borrow)]
            let __share = (&&&#cache_crate::__private::ShareOf::<#e>::new()).share_fn();
            __share
        }},
        None => quote!(),
    };
    // Detached (`detach`, or a timeout given): the function may finish after the call, so it
    // is moved into a `Send + 'static` closure — it cannot borrow `self`.
    let detach = opts.detach || opts.soft_timeout_ms.is_some() || opts.hard_timeout_ms.is_some();
    if detach && has_receiver {
        return Err(syn::Error::new_spanned(
            sig,
            "`detach`, `soft_timeout` and `hard_timeout` need a function without `self`: its computation may \
             outlive the call, so it cannot borrow the receiver",
        ));
    }
    if opts.hard_timeout_ms.is_some() && fallible.is_none() {
        return Err(syn::Error::new_spanned(
            &ret_ty,
            "`hard_timeout` needs a function returning `Result<T, E>` (only `Ok` cached) with \
             `E: From<FactoryTimeout>`: past the hard timeout the call returns that error",
        ));
    }
    let timeouts = {
        let soft =
            opts.soft_timeout_ms.map(|ms| quote!(.soft_timeout(::core::time::Duration::from_millis(#ms))));
        let hard =
            opts.hard_timeout_ms.map(|ms| quote!(.hard_timeout(::core::time::Duration::from_millis(#ms))));
        quote!(#soft #hard)
    };
    // How a hard timeout becomes the function's error: `E::from(FactoryTimeout)` (required when
    // `hard_timeout` is given; else used when `E` implements it, otherwise the cache's hard
    // timeout does not apply to this function).
    let on_timeout = match &fallible {
        Some((_, e)) if opts.hard_timeout_ms.is_some() => quote! {
            |__t: #cache_crate::FactoryTimeout| ::core::option::Option::Some(
                <#e as ::core::convert::From<#cache_crate::FactoryTimeout>>::from(__t))
        },
        Some((_, e)) => quote! {{
            #[allow(unused_imports)]
            use #cache_crate::__private::{TimeoutByFrom as _, TimeoutNot as _};
            #[allow(clippy::needless_borrow)]
            let __on_timeout = (&&#cache_crate::__private::TimeoutOf::<#e>::new()).on_timeout_fn();
            __on_timeout
        }},
        None => quote!(),
    };
    let (finish, uncached) = if detach && is_async {
        let finish = if fallible.is_some() {
            quote!(__p #ttl_by #tags_by #timeouts .try_compute_detached_with(move || #compute_call, #share, #on_timeout).await)
        } else {
            quote!(__p #ttl_by #tags_by #timeouts .compute_detached(move || #compute_call).await)
        };
        (finish, quote!(#compute_call.await))
    } else if detach {
        let finish = if fallible.is_some() {
            quote!(__p #ttl_by #tags_by #timeouts .try_compute_blocking_detached_with(move || #compute_call, #share, #on_timeout))
        } else {
            quote!(__p #ttl_by #tags_by #timeouts .compute_blocking_detached(move || #compute_call))
        };
        (finish, compute_call.clone())
    } else if is_async {
        let finish = if fallible.is_some() {
            quote!(__p #ttl_by #tags_by .try_compute_with(move || #compute_call, #share).await)
        } else {
            quote!(__p #ttl_by #tags_by .compute(move || #compute_call).await)
        };
        (finish, quote!(#compute_call.await))
    } else {
        let finish = if fallible.is_some() {
            quote!(__p #ttl_by #tags_by .try_compute_blocking_with(move || #compute_call, #share))
        } else {
            quote!(__p #ttl_by #tags_by .compute_blocking(move || #compute_call))
        };
        (finish, compute_call.clone())
    };

    let wrapper = quote! {
        #(#attrs)*
        #vis #sig {
            let __larder_space = #space_expr;
            match __larder_space {
                ::core::option::Option::Some(__space) => {
                    let __larder_key = #key_expr;
                    #(#checks)*
                    let __lookup = #cache_expr.lookup::<_, #value_ty>(__space, &__larder_key, #ttl);
                    match __lookup {
                        #cache_crate::Lookup::Hit(__v) => #hit,
                        #cache_crate::Lookup::Miss(__p) => #finish,
                    }
                }
                ::core::option::Option::None => #uncached,
            }
        }
    };
    if handles == Handles::Off {
        return Ok(wrapper);
    }

    // The companions.
    let value_param = if arg_names.iter().any(|a| a == "value") {
        format_ident!("__larder_value")
    } else {
        format_ident!("value")
    };
    let (generics, where_clause) = (&sig.generics, &sig.generics.where_clause);
    let mut all_params: Vec<TokenStream> = handle_receiver.iter().cloned().collect();
    all_params.extend(handle_params.iter().cloned());
    let recv_params = quote!(#(#all_params),*);
    all_params.push(quote!(#value_param: #value_ty));
    let prime_params = quote!(#(#all_params),*);
    let prime_ttl_tok = prime_ttl(&value_param);
    // In a module: plain names, reached through `super::`; in the impl: `quote_key`, … on `Self`.
    let (name_prefix, space_call, compute_from_handle, head) = match handles {
        Handles::Assoc => {
            (format!("{ident}_"), quote!(Self::#space_fn()), compute_call.clone(), quote!(#vis))
        }
        _ => (String::new(), quote!(#space_fn()), quote!(#compute_fn(#(#arg_names),*)), quote!(#vis)),
    };
    let name_of = |s: &str| format_ident!("{}{}", name_prefix, s);
    let (key_name, peek_name, inv_name, prime_name, refresh_name, space_name) = (
        name_of("key"),
        name_of("peek"),
        name_of("invalidate"),
        name_of("prime"),
        name_of("refresh"),
        name_of("space"),
    );
    let (asyncness, get, invalidate, set, refresh) = if is_async {
        (
            quote!(async),
            quote!(get),
            quote!(invalidate),
            quote!(set),
            if fallible.is_some() { quote!(try_refresh) } else { quote!(refresh) },
        )
    } else {
        (
            quote!(),
            quote!(get_blocking),
            quote!(invalidate_blocking),
            quote!(set_blocking),
            if fallible.is_some() { quote!(try_refresh_blocking) } else { quote!(refresh_blocking) },
        )
    };
    // `prime` of a tagged function stores through a `Pending` so the value carries its tags'
    // current tokens (a plain `set` would store it untagged, out of reach of invalidate_tag).
    let prime_store = match &opts.tags {
        None => quote!(#cache_expr.#set(__space, &__larder_key, #value_param, __ttl) #await_tok),
        Some(_) => {
            let (store, value) = if is_async {
                (quote!(refresh), quote!(async move { #value_param }))
            } else {
                (quote!(refresh_blocking), quote!(#value_param))
            };
            quote! {
                let __pending = #cache_expr.pending(__space, &__larder_key, __ttl) #tags_by;
                let _ = __pending.#store(move || #value) #await_tok;
            }
        }
    };
    let name_str = ident.to_string();
    let doc_space = format!("The key space of `{name_str}`'s calls (`None` when `LARDER_KEY_SECRET` is malformed: the calls then run uncached).");
    let doc_key = format!("The shared-tier key text `{{namespace}}:v{{version}}:{{digest}}` a call of `{name_str}` with these arguments uses (`None`: the arguments cannot be a key, the call runs uncached).");
    let doc_peek = format!("The value cached for a call of `{name_str}` with these arguments, if a tier has a fresh one; computes nothing.");
    let doc_inv = format!("Removes the entry of `{name_str}` for these arguments from every tier (other processes' local tiers through the backplane).");
    let doc_prime = format!("Stores `{value_param}` as the result of `{name_str}` for these arguments in every tier, with the function's TTL.");
    let doc_refresh = format!("Runs `{name_str}` for these arguments now, whatever is cached, stores the result in every tier (only `Ok` when the function returns `Result`) and returns it.");
    let items = quote! {
        #(#cfgs)*
        #[doc = #doc_space]
        #head fn #space_name() -> ::core::option::Option<&'static #cache_crate::__private::KeySpace> {
            #space_call
        }

        #(#cfgs)*
        #[doc = #doc_key]
        #[allow(clippy::too_many_arguments, clippy::needless_pass_by_value, unused_variables)]
        #head fn #key_name #generics (#recv_params) -> ::core::option::Option<::std::string::String> #where_clause {
            let __space = #space_call?;
            let __larder_key = #key_expr;
            __space.key(&__larder_key).ok().map(|k| ::std::borrow::ToOwned::to_owned(k.as_str()))
        }

        #(#cfgs)*
        #[doc = #doc_peek]
        #[allow(clippy::too_many_arguments, clippy::needless_pass_by_value, unused_variables)]
        #head #asyncness fn #peek_name #generics (#recv_params) -> ::core::option::Option<#value_ty> #where_clause {
            let __space = #space_call?;
            let __larder_key = #key_expr;
            #cache_expr.#get::<_, #value_ty>(__space, &__larder_key) #await_tok
        }

        #(#cfgs)*
        #[doc = #doc_inv]
        #[allow(clippy::too_many_arguments, clippy::needless_pass_by_value, unused_variables)]
        #head #asyncness fn #inv_name #generics (#recv_params) #where_clause {
            let ::core::option::Option::Some(__space) = #space_call else { return };
            let __larder_key = #key_expr;
            #cache_expr.#invalidate(__space, &__larder_key) #await_tok
        }

        #(#cfgs)*
        #[doc = #doc_prime]
        #[allow(clippy::too_many_arguments, clippy::needless_pass_by_value, unused_variables)]
        #head #asyncness fn #prime_name #generics (#prime_params) #where_clause {
            let ::core::option::Option::Some(__space) = #space_call else { return };
            let __larder_key = #key_expr;
            let __ttl = #prime_ttl_tok;
            #prime_store
        }

        #(#cfgs)*
        #[doc = #doc_refresh]
        #[allow(clippy::too_many_arguments, clippy::needless_pass_by_value)]
        #head #asyncness fn #refresh_name #generics (#recv_params) -> #ret_ty #where_clause {
            match #space_call {
                ::core::option::Option::Some(__space) => {
                    let __pending = {
                        let __larder_key = #key_expr;
                        #cache_expr.pending(__space, &__larder_key, #ttl) #ttl_by #tags_by
                    };
                    __pending.#refresh(move || #compute_from_handle) #await_tok
                }
                ::core::option::Option::None => #compute_from_handle #await_tok,
            }
        }
    };
    let out = match handles {
        Handles::Assoc => quote! {
            #siblings
            #wrapper
            #items
        },
        _ => {
            let doc_type = format!(
                "Companions of the memoized `{name_str}`: its key, cached value, invalidation, priming and refresh \
                 (`{name_str}::key(…)`, …), with the key space, secret and cache its calls use. A type only to \
                 hold them: it has no value."
            );
            quote! {
                #siblings
                #wrapper
                #(#cfgs)*
                #[doc = #doc_type]
                #[allow(non_camel_case_types, dead_code)]
                #vis struct #ident {}
                #(#cfgs)*
                #[allow(dead_code)]
                impl #ident {
                    #items
                }
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
