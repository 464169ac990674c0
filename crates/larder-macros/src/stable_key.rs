//! `#[derive(StableKey)]`.

use larder_key_format::schema::{self, VariantShape};
use larder_key_format::tag;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitInt, LitStr};

/// Where the generated code finds the `larder_key` crate. Users of the `larder` facade get a
/// re-export at `::larder::key`; `#[stable_key(crate = "path")]` overrides it.
struct TypeAttrs {
    name: Option<String>,
    version: u32,
    krate: Option<syn::Path>,
}

#[derive(Default)]
struct FieldAttrs {
    skip: bool,
    with: Option<syn::Path>,
}

/// The path of the `larder_key` crate as the crate being compiled sees it, from its
/// `Cargo.toml` (through [`crate::manifest`], which honours renames):
///
/// 1. a dependency on `larder-key` (also `larder-key` itself, whose root declares
///    `extern crate self as larder_key;`): `::larder_key` or the renamed name;
/// 2. else a dependency on the facade `larder`: `::larder::key` (or the renamed name);
/// 3. else `::larder_key`, so the compiler's error names the crate that is missing.
pub(crate) fn key_crate_path() -> TokenStream {
    use crate::manifest::{crate_name, Found as FoundCrate};
    let ident = |name: &str| syn::Ident::new(name, proc_macro2::Span::call_site());
    match crate_name("larder-key") {
        Some(FoundCrate::Name(name)) => {
            let id = ident(&name);
            return quote!(::#id);
        }
        Some(FoundCrate::Itself) => return quote!(::larder_key),
        None => {}
    }
    match crate_name("larder") {
        Some(FoundCrate::Name(name)) => {
            let id = ident(&name);
            quote!(::#id::key)
        }
        // Deriving inside the facade crate's own code.
        Some(FoundCrate::Itself) => quote!(crate::key),
        None => quote!(::larder_key),
    }
}

fn type_attrs(attrs: &[syn::Attribute]) -> syn::Result<TypeAttrs> {
    let mut out = TypeAttrs { name: None, version: 1, krate: None };
    for attr in attrs.iter().filter(|a| a.path().is_ident("stable_key")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let s: LitStr = meta.value()?.parse()?;
                if s.value().is_empty() {
                    return Err(meta.error("name must not be empty"));
                }
                out.name = Some(s.value());
            } else if meta.path.is_ident("version") {
                let v: LitInt = meta.value()?.parse()?;
                out.version = v.base10_parse()?;
            } else if meta.path.is_ident("crate") {
                let s: LitStr = meta.value()?.parse()?;
                out.krate = Some(s.parse()?);
            } else {
                return Err(meta.error("expected `name = \"..\"`, `version = N` or `crate = \"..\"`"));
            }
            Ok(())
        })?;
    }
    Ok(out)
}

fn field_attrs(attrs: &[syn::Attribute]) -> syn::Result<FieldAttrs> {
    let mut out = FieldAttrs::default();
    let mut span = proc_macro2::Span::call_site();
    for attr in attrs.iter().filter(|a| a.path().is_ident("stable_key")) {
        span = attr.span();
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                out.skip = true;
            } else if meta.path.is_ident("with") {
                out.with = Some(meta.value()?.parse()?);
            } else {
                return Err(meta.error("expected `skip` or `with = path`"));
            }
            Ok(())
        })?;
    }
    if out.skip && out.with.is_some() {
        return Err(syn::Error::new(span, "`skip` and `with` cannot be combined"));
    }
    Ok(out)
}

// Schema ids, computed here at compile time by the same code `larder_key::schema` runs at run
// time (`larder-key-format`, which both crates depend on).

/// The 17-byte header (kind tag, 16-byte schema id) of a struct or enum variant, as a
/// byte-array literal: `kind`, the type's `name` and `version`, the `variant` name for an enum,
/// then the shape and the encoded (not skipped) fields.
fn header_tokens(
    kind: u8,
    name: &str,
    version: u32,
    variant: Option<&str>,
    fields: &Fields,
    plans: &[FieldPlan],
) -> TokenStream {
    let names: Vec<&str> = plans.iter().map(|p| p.name.as_deref().unwrap_or_default()).collect();
    let header = match variant {
        Some(v) => {
            let shape = match fields {
                Fields::Unit => VariantShape::Unit,
                Fields::Unnamed(_) => VariantShape::Tuple(plans.len()),
                Fields::Named(_) => VariantShape::Named(&names),
            };
            schema::variant_header(name, version, v, shape)
        }
        None if kind == tag::TUPLE_STRUCT => schema::tuple_struct_header(name, version, plans.len()),
        None if kind == tag::UNIT_STRUCT => schema::unit_struct_header(name, version),
        None => schema::struct_header(name, version, &names),
    };
    quote!([#(#header),*])
}

struct FieldPlan {
    /// The field's name as written into the encoding (named fields only).
    name: Option<String>,
    /// An expression evaluating to a reference to the field's value.
    access: TokenStream,
    with: Option<syn::Path>,
    span: proc_macro2::Span,
}

fn plan_fields(
    fields: &Fields,
    access: impl Fn(usize, &syn::Field) -> TokenStream,
) -> syn::Result<Vec<FieldPlan>> {
    let mut out = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        let attrs = field_attrs(&f.attrs)?;
        if attrs.skip {
            continue;
        }
        out.push(FieldPlan {
            name: f.ident.as_ref().map(|id| id.unraw().to_string()),
            access: access(i, f),
            with: attrs.with,
            span: f.ty.span(),
        });
    }
    Ok(out)
}

/// `tokens` with every span set to `span`, so that an unmet `StableKey` bound is reported at
/// the field's type rather than at the `#[derive]`.
fn respan(tokens: &TokenStream, span: proc_macro2::Span) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|mut t| {
            if let proc_macro2::TokenTree::Group(g) = &t {
                let mut ng = proc_macro2::Group::new(g.delimiter(), respan(&g.stream(), span));
                ng.set_span(span);
                t = proc_macro2::TokenTree::Group(ng);
            } else {
                t.set_span(span);
            }
            t
        })
        .collect()
}

fn write_fields(k: &TokenStream, plans: &[FieldPlan]) -> TokenStream {
    let writes = plans.iter().map(|p| {
        let k = respan(k, p.span);
        let access = respan(&p.access, p.span);
        let value = match &p.with {
            Some(path) => quote_spanned!(p.span=> &#path(#access)),
            None => quote_spanned!(p.span=> #access),
        };
        quote_spanned! {p.span=>
            #k::StableKey::encode(#value, __enc);
        }
    });
    quote!(#(#writes)*)
}

pub(crate) fn expand(input: DeriveInput) -> syn::Result<TokenStream> {
    let attrs = type_attrs(&input.attrs)?;
    let k = match &attrs.krate {
        Some(p) => quote!(#p),
        None => key_crate_path(),
    };
    let ident = &input.ident;
    // `r#type` is named `type`: the raw-identifier prefix is Rust syntax, not part of a name.
    let name = attrs.name.clone().unwrap_or_else(|| ident.unraw().to_string());
    let version = attrs.version;

    let mut generics = input.generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.push(syn::parse_quote!(#k::StableKey));
    }
    let (impl_g, ty_g, where_g) = generics.split_for_impl();

    let body = match &input.data {
        Data::Struct(s) => {
            let plans = plan_fields(&s.fields, |i, f| match &f.ident {
                Some(id) => quote!(&self.#id),
                None => {
                    let idx = syn::Index::from(i);
                    quote!(&self.#idx)
                }
            })?;
            let writes = write_fields(&k, &plans);
            let kind = match &s.fields {
                Fields::Named(_) => tag::STRUCT,
                Fields::Unnamed(_) => tag::TUPLE_STRUCT,
                Fields::Unit => tag::UNIT_STRUCT,
            };
            let header = header_tokens(kind, &name, version, None, &s.fields, &plans);
            quote! {
                __enc.header(&#header);
                #writes
            }
        }
        Data::Enum(e) => {
            let mut arms = Vec::new();
            let mut seen: Vec<(String, &syn::Ident)> = Vec::new();
            for v in &e.variants {
                let vident = &v.ident;
                let mut vname = vident.unraw().to_string();
                for attr in v.attrs.iter().filter(|a| a.path().is_ident("stable_key")) {
                    attr.parse_nested_meta(|meta| {
                        if meta.path.is_ident("name") {
                            let s: LitStr = meta.value()?.parse()?;
                            vname = s.value();
                            Ok(())
                        } else {
                            Err(meta.error("expected `name = \"..\"` on a variant"))
                        }
                    })?;
                }
                // Two variants written under one name would encode alike: refuse it.
                if let Some((_, first)) = seen.iter().find(|(n, _)| *n == vname) {
                    return Err(syn::Error::new(
                        vident.span(),
                        format!(
                            "variant name {vname:?} is already used by `{first}`: each variant needs its own name in the key encoding"
                        ),
                    ));
                }
                seen.push((vname.clone(), vident));
                let binders: Vec<syn::Ident> =
                    (0..v.fields.len()).map(|i| quote::format_ident!("__f{}", i)).collect();
                let plans = plan_fields(&v.fields, |i, _| {
                    let b = &binders[i];
                    quote!(#b)
                })?;
                let writes = write_fields(&k, &plans);
                let header = header_tokens(tag::ENUM, &name, version, Some(&vname), &v.fields, &plans);
                let arm = match &v.fields {
                    Fields::Named(named) => {
                        let ids = named.named.iter().map(|f| f.ident.as_ref());
                        quote! {
                            #ident::#vident { #(#ids: #binders),* } => {
                                __enc.header(&#header);
                                #writes
                            }
                        }
                    }
                    Fields::Unnamed(_) => quote! {
                        #ident::#vident ( #(#binders),* ) => {
                            __enc.header(&#header);
                            #writes
                        }
                    },
                    Fields::Unit => quote! {
                        #ident::#vident => __enc.header(&#header),
                    },
                };
                arms.push(arm);
            }
            if arms.is_empty() {
                quote! { match *self {} }
            } else {
                quote! {
                    #[allow(unused_variables)]
                    match self { #(#arms)* }
                }
            }
        }
        Data::Union(u) => {
            return Err(syn::Error::new(
                u.union_token.span,
                "StableKey cannot be derived for unions: which field is live is not known",
            ))
        }
    };

    Ok(quote! {
        #[automatically_derived]
        impl #impl_g #k::StableKey for #ident #ty_g #where_g {
            fn encode(&self, __enc: &mut #k::Encoder) {
                #body
            }
        }
    })
}
