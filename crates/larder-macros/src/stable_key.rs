//! `#[derive(StableKey)]`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
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
/// `Cargo.toml` (through `proc-macro-crate`, which honours renames):
///
/// 1. a dependency on `larder-key` (also `larder-key` itself, whose root declares
///    `extern crate self as larder_key;`): `::larder_key` or the renamed name;
/// 2. else a dependency on the facade `larder`: `::larder::key` (or the renamed name);
/// 3. else `::larder_key`, so the compiler's error names the crate that is missing.
pub(crate) fn key_crate_path() -> TokenStream {
    use proc_macro_crate::{crate_name, FoundCrate};
    let ident = |name: &str| syn::Ident::new(name, proc_macro2::Span::call_site());
    match crate_name("larder-key") {
        Ok(FoundCrate::Name(name)) => {
            let id = ident(&name);
            return quote!(::#id);
        }
        Ok(FoundCrate::Itself) => return quote!(::larder_key),
        Err(_) => {}
    }
    match crate_name("larder") {
        Ok(FoundCrate::Name(name)) => {
            let id = ident(&name);
            quote!(::#id::key)
        }
        // Deriving inside the facade crate's own code.
        Ok(FoundCrate::Itself) => quote!(crate::key),
        Err(_) => quote!(::larder_key),
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
    for attr in attrs.iter().filter(|a| a.path().is_ident("stable_key")) {
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
        return Err(syn::Error::new(proc_macro2::Span::call_site(), "`skip` and `with` cannot be combined"));
    }
    Ok(out)
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
            name: f.ident.as_ref().map(|id| id.to_string().trim_start_matches("r#").to_owned()),
            access: access(i, f),
            with: attrs.with,
            span: f.ty.span(),
        });
    }
    Ok(out)
}

fn write_fields(k: &TokenStream, plans: &[FieldPlan]) -> TokenStream {
    let writes = plans.iter().map(|p| {
        let access = &p.access;
        let value = match &p.with {
            Some(path) => quote_spanned!(p.span=> &#path(#access)),
            None => quote_spanned!(p.span=> #access),
        };
        let name = p.name.as_ref().map(|n| quote!(__enc.field(#n);));
        quote_spanned! {p.span=>
            #name
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
    let name = attrs.name.clone().unwrap_or_else(|| ident.to_string());
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
            let n = plans.len();
            let writes = write_fields(&k, &plans);
            match &s.fields {
                Fields::Named(_) => quote! {
                    __enc.begin_struct(#name, #version, #n);
                    #writes
                },
                Fields::Unnamed(_) => quote! {
                    __enc.begin_tuple_struct(#name, #version, #n);
                    #writes
                },
                Fields::Unit => quote! { __enc.unit_struct(#name, #version); },
            }
        }
        Data::Enum(e) => {
            let mut arms = Vec::new();
            let mut seen: Vec<(String, &syn::Ident)> = Vec::new();
            for v in &e.variants {
                let vident = &v.ident;
                let mut vname = vident.to_string();
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
                let n = plans.len();
                let writes = write_fields(&k, &plans);
                let arm = match &v.fields {
                    Fields::Named(named) => {
                        let ids = named.named.iter().map(|f| f.ident.as_ref());
                        quote! {
                            #ident::#vident { #(#ids: #binders),* } => {
                                __enc.begin_variant(#name, #version, #vname, #k::shape::NAMED, #n);
                                #writes
                            }
                        }
                    }
                    Fields::Unnamed(_) => quote! {
                        #ident::#vident ( #(#binders),* ) => {
                            __enc.begin_variant(#name, #version, #vname, #k::shape::TUPLE, #n);
                            #writes
                        }
                    },
                    Fields::Unit => quote! {
                        #ident::#vident => __enc.begin_variant(#name, #version, #vname, #k::shape::UNIT, 0),
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
