//! `#[streamlib::processor]`: turns a struct with port and config fields into a registered
//! streamlib processor type.
//!
//! ```ignore
//! #[streamlib::processor(execution = Reactive, description = "Forwards video unchanged")]
//! pub struct SimplePassthroughProcessor {
//!     #[streamlib::input(description = "Frames in")]
//!     video: LinkInput<VideoFrame>,
//!     #[streamlib::output(name = "video", description = "The same frames")]
//!     video_out: LinkOutput<VideoFrame>,
//!     #[streamlib::config]
//!     config: PassthroughConfig,
//! }
//! impl streamlib::core::Processor for SimplePassthroughProcessor::Processor { ... }
//! ```
//!
//! The struct becomes a module of the same name holding `Processor` (the struct, fields widened
//! to the parent module), `Config`, `TYPE_NAME`, `spec(config)` and `descriptor()`, plus the
//! registry entry. Attribute arguments:
//! - `execution = Continuous | Reactive | Manual` (required), `interval_ms = N` (Continuous),
//! - `description = "..."` (required), `control_plane = true` (runs whether or not the runtime is
//!   started; for API servers).
//!
//! Field attributes: `#[streamlib::input(description, name?, count?)]`,
//! `#[streamlib::output(description, name?, count?)]`, `#[streamlib::config]`. `count = expr`
//! (an expression over `config`) declares a list of ports `name_0 .. name_{n-1}` from the
//! config; the field is then a `Vec<LinkInput<T>>` / `Vec<LinkOutput<T>>`. Every other field
//! starts as `Default::default()`.
//!
//! `#[streamlib::config]` on a config *type* (before its derives) marks the fields a running
//! processor can take without a restart: `#[streamlib(live)]` on a field becomes
//! `#[schemars(extend("x-streamlib-live" = true))]`, so the type's JSON Schema says which
//! fields are live, and the runtime reads the same mark. (Inside a processor struct,
//! `#[streamlib::config]` on a field marks the config field instead; the processor macro
//! consumes it.)

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, ExprLit, Fields, Ident, ItemStruct, Lit, Meta, MetaNameValue, Token,
    Visibility, parse_macro_input,
};

/// Declares a streamlib processor type. See the crate docs.
#[proc_macro_attribute]
pub fn processor(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as ItemStruct);
    match expand(args.into(), item) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// Marks the live fields of a processor config type. See the crate docs.
#[proc_macro_attribute]
pub fn config(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = TokenStream2::from(args);
    if !args.is_empty() {
        return syn::Error::new(args.span(), "#[streamlib::config] takes no arguments")
            .to_compile_error()
            .into();
    }
    let mut item = parse_macro_input!(item as ItemStruct);
    match mark_live_fields(&mut item) {
        Ok(()) => quote!(#item).into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// The schema keyword that marks a config field as changeable while the processor runs.
const LIVE_KEYWORD: &str = "x-streamlib-live";

/// Turns each field's `#[streamlib(live)]` into the schema mark.
fn mark_live_fields(item: &mut ItemStruct) -> syn::Result<()> {
    let Fields::Named(named) = &mut item.fields else {
        return Err(syn::Error::new(
            item.span(),
            "#[streamlib::config] applies to a struct with named fields",
        ));
    };
    for field in &mut named.named {
        let mut live = false;
        let mut kept = Vec::with_capacity(field.attrs.len());
        for attr in std::mem::take(&mut field.attrs) {
            if !attr.path().is_ident("streamlib") {
                kept.push(attr);
                continue;
            }
            let Meta::List(list) = &attr.meta else {
                return Err(syn::Error::new(attr.span(), "expected #[streamlib(live)]"));
            };
            let words =
                Punctuated::<Ident, Token![,]>::parse_terminated.parse2(list.tokens.clone())?;
            for word in words {
                if word != "live" {
                    return Err(syn::Error::new(
                        word.span(),
                        "unknown streamlib field attribute; expected `live`",
                    ));
                }
                live = true;
            }
        }
        if live {
            kept.push(syn::parse_quote!(#[schemars(extend(#LIVE_KEYWORD = true))]));
        }
        field.attrs = kept;
    }
    Ok(())
}

enum ExecutionKind {
    Continuous,
    Reactive,
    Manual,
}

struct ProcessorArgs {
    execution: ExecutionKind,
    interval_ms: Option<u64>,
    description: String,
    control_plane: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Input,
    Output,
    Config,
}

struct PortArgs {
    name: String,
    description: String,
    count: Option<Expr>,
}

fn parse_processor_args(args: TokenStream2) -> syn::Result<ProcessorArgs> {
    let metas = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(args)?;
    let mut execution = None;
    let mut interval_ms = None;
    let mut description = None;
    let mut control_plane = false;
    for meta in metas {
        let key = meta
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        match key.as_str() {
            "execution" => {
                let Expr::Path(p) = &meta.value else {
                    return Err(syn::Error::new(
                        meta.value.span(),
                        "execution must be Continuous, Reactive or Manual",
                    ));
                };
                let name = p
                    .path
                    .segments
                    .last()
                    .map(|s| s.ident.to_string())
                    .unwrap_or_default();
                execution = Some(match name.as_str() {
                    "Continuous" => ExecutionKind::Continuous,
                    "Reactive" => ExecutionKind::Reactive,
                    "Manual" => ExecutionKind::Manual,
                    _ => {
                        return Err(syn::Error::new(
                            p.span(),
                            "execution must be Continuous, Reactive or Manual",
                        ));
                    }
                });
            }
            "interval_ms" => interval_ms = Some(lit_int(&meta.value)?),
            "description" => description = Some(lit_str(&meta.value)?),
            "control_plane" => control_plane = lit_bool(&meta.value)?,
            _ => {
                return Err(syn::Error::new(
                    meta.path.span(),
                    "unknown argument; expected execution, description, interval_ms or control_plane",
                ));
            }
        }
    }
    let execution = execution.ok_or_else(|| {
        syn::Error::new(
            Span::call_site(),
            "missing `execution = Continuous | Reactive | Manual`",
        )
    })?;
    let description = description
        .ok_or_else(|| syn::Error::new(Span::call_site(), "missing `description = \"...\"`"))?;
    if interval_ms.is_some() && !matches!(execution, ExecutionKind::Continuous) {
        return Err(syn::Error::new(
            Span::call_site(),
            "interval_ms only applies to execution = Continuous",
        ));
    }
    Ok(ProcessorArgs {
        execution,
        interval_ms,
        description,
        control_plane,
    })
}

fn lit_str(expr: &Expr) -> syn::Result<String> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.value()),
        other => Err(syn::Error::new(other.span(), "expected a string literal")),
    }
}

fn lit_int(expr: &Expr) -> syn::Result<u64> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse(),
        other => Err(syn::Error::new(other.span(), "expected an integer literal")),
    }
}

fn lit_bool(expr: &Expr) -> syn::Result<bool> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Ok(b.value),
        other => Err(syn::Error::new(other.span(), "expected true or false")),
    }
}

/// Recognises `#[streamlib::input(..)]`, `#[input(..)]` and friends.
fn field_role(attr: &Attribute) -> Option<Role> {
    let segments: Vec<String> = attr
        .path()
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    let last = match segments.as_slice() {
        [one] => one.as_str(),
        [krate, one] if krate == "streamlib" => one.as_str(),
        _ => return None,
    };
    match last {
        "input" => Some(Role::Input),
        "output" => Some(Role::Output),
        "config" => Some(Role::Config),
        _ => None,
    }
}

fn parse_port_args(attr: &Attribute, field: &Ident) -> syn::Result<PortArgs> {
    let mut args = PortArgs {
        name: field.to_string(),
        description: String::new(),
        count: None,
    };
    if let Meta::List(list) = &attr.meta {
        let metas =
            Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(list.tokens.clone())?;
        for meta in metas {
            let key = meta
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            match key.as_str() {
                "description" => args.description = lit_str(&meta.value)?,
                "name" => args.name = lit_str(&meta.value)?,
                "count" => args.count = Some(meta.value.clone()),
                _ => {
                    return Err(syn::Error::new(
                        meta.path.span(),
                        "unknown port argument; expected description, name or count",
                    ));
                }
            }
        }
    }
    Ok(args)
}

fn widen(vis: &Visibility) -> TokenStream2 {
    match vis {
        Visibility::Inherited => quote!(pub(super)),
        Visibility::Restricted(r) if r.path.is_ident("self") => quote!(pub(super)),
        Visibility::Restricted(r) if r.path.is_ident("super") => quote!(pub(crate)),
        other => quote!(#other),
    }
}

fn expand(args: TokenStream2, item: ItemStruct) -> syn::Result<TokenStream2> {
    let args = parse_processor_args(args)?;
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new(
            item.generics.span(),
            "processor structs cannot be generic",
        ));
    }
    let Fields::Named(named) = &item.fields else {
        return Err(syn::Error::new(
            item.span(),
            "a processor must be a struct with named fields",
        ));
    };

    let type_name = item.ident.to_string();
    let module = &item.ident;
    let vis = &item.vis;
    // Items inside the generated module are as visible as the struct was (one level out).
    let item_vis = widen(vis);
    let outer_attrs = &item.attrs;
    let description = &args.description;
    let control_plane = args.control_plane;

    let mut fields = Vec::new();
    let mut pre_inits = Vec::new();
    let mut inits = Vec::new();
    let mut input_descs = Vec::new();
    let mut output_descs = Vec::new();
    let mut collects = Vec::new();
    let mut config_field: Option<(Ident, syn::Type)> = None;

    for field in &named.named {
        let Some(ident) = field.ident.clone() else {
            continue;
        };
        let ty = &field.ty;
        let mut role = None;
        let mut port_args = None;
        let mut kept_attrs = Vec::new();
        for attr in &field.attrs {
            match field_role(attr) {
                Some(r) => {
                    if role.is_some() {
                        return Err(syn::Error::new(
                            attr.span(),
                            "a field can have only one of input, output, config",
                        ));
                    }
                    role = Some(r);
                    if r != Role::Config {
                        port_args = Some(parse_port_args(attr, &ident)?);
                    }
                }
                None => kept_attrs.push(attr),
            }
        }
        let field_vis = widen(&field.vis);
        fields.push(quote! { #(#kept_attrs)* #field_vis #ident: #ty });

        match (role, port_args) {
            (Some(Role::Config), _) => {
                if config_field.is_some() {
                    return Err(syn::Error::new(
                        field.span(),
                        "only one field can be #[streamlib::config]",
                    ));
                }
                config_field = Some((ident.clone(), ty.clone()));
                inits.push(quote! { #ident: config });
            }
            (Some(r @ (Role::Input | Role::Output)), Some(p)) => {
                let (port_ty, field_trait, descs) = if r == Role::Input {
                    (
                        quote!(::streamlib::core::LinkInput),
                        quote!(::streamlib::__private::InputPortField),
                        &mut input_descs,
                    )
                } else {
                    (
                        quote!(::streamlib::core::LinkOutput),
                        quote!(::streamlib::__private::OutputPortField),
                        &mut output_descs,
                    )
                };
                let name = &p.name;
                let desc = &p.description;
                let count_text = p.count.as_ref().map(|c| quote!(#c).to_string());
                let count_tokens = match &count_text {
                    Some(t) => quote!(::core::option::Option::Some(#t.to_string())),
                    None => quote!(::core::option::Option::None),
                };
                descs.push(quote! {
                    ::streamlib::core::PortDescriptor {
                        name: #name.to_string(),
                        frame_type: <#ty as #field_trait>::FRAME_TYPE,
                        description: #desc.to_string(),
                        count_from: #count_tokens,
                    }
                });
                collects.push(quote! { #field_trait::collect(&self.#ident, &mut set); });
                match &p.count {
                    Some(count) => {
                        let tmp = format_ident!("__ports_{}", ident);
                        pre_inits.push(quote! {
                            let #tmp = {
                                let config = &config;
                                let count: usize = (#count) as usize;
                                (0..count)
                                    .map(|i| #port_ty::new(format!("{}_{}", #name, i), #desc))
                                    .collect::<::std::vec::Vec<_>>()
                            };
                        });
                        inits.push(quote! { #ident: #tmp });
                    }
                    None => inits.push(quote! { #ident: #port_ty::new(#name, #desc) }),
                }
            }
            _ => inits.push(quote! { #ident: ::core::default::Default::default() }),
        }
    }

    let (config_ty, config_access, config_access_mut, config_holder) = match &config_field {
        Some((ident, ty)) => (
            quote!(#ty),
            quote!(&self.#ident),
            quote!(::core::option::Option::Some(&mut self.#ident)),
            quote!(),
        ),
        None => (
            quote!(::streamlib::core::NoConfig),
            quote!(&NO_CONFIG),
            quote!(::core::option::Option::None),
            quote! {
                static NO_CONFIG: ::streamlib::core::NoConfig = ::streamlib::core::NoConfig {};
            },
        ),
    };
    let unused_config = if config_field.is_none() {
        quote!(let _ = config;)
    } else {
        quote!()
    };

    let execution = match args.execution {
        ExecutionKind::Continuous => {
            let interval = match args.interval_ms {
                Some(ms) => quote!(::core::option::Option::Some(#ms)),
                None => quote!(::core::option::Option::None),
            };
            quote!(::streamlib::core::Execution::Continuous { interval_ms: #interval })
        }
        ExecutionKind::Reactive => quote!(::streamlib::core::Execution::Reactive),
        ExecutionKind::Manual => quote!(::streamlib::core::Execution::Manual),
    };

    let module_doc = format!("The `{type_name}` processor: {description}");

    Ok(quote! {
        #[doc = #module_doc]
        #[allow(non_snake_case)]
        #vis mod #module {
            #[allow(unused_imports)]
            use super::*;

            #(#outer_attrs)*
            #item_vis struct Processor {
                #(#fields,)*
            }

            /// The name this type is registered under.
            #item_vis const TYPE_NAME: &str = #type_name;

            /// This processor's config type.
            #item_vis type Config = #config_ty;

            #config_holder

            impl Processor {
                /// Builds the processor from its config, with unconnected ports.
                #item_vis fn from_config(config: Config) -> Self {
                    #unused_config
                    #(#pre_inits)*
                    Self {
                        #(#inits,)*
                    }
                }
            }

            /// A spec for `StreamRuntime::add_processor` / `RuntimeService::add_processor`.
            #item_vis fn spec(config: Config) -> ::streamlib::core::ProcessorSpec {
                ::streamlib::core::ProcessorSpec::new(Processor::from_config(config))
            }

            /// This type's descriptor: ports, execution mode, config schema.
            #item_vis fn descriptor() -> ::streamlib::core::ProcessorDescriptor {
                <Processor as ::streamlib::__private::ProcessorMeta>::descriptor()
            }

            impl ::streamlib::__private::ProcessorMeta for Processor {
                type Config = Config;
                const TYPE_NAME: &'static str = #type_name;
                const DESCRIPTION: &'static str = #description;
                const EXECUTION: ::streamlib::core::Execution = #execution;
                const CONTROL_PLANE: bool = #control_plane;

                fn port_descriptors() -> (
                    ::std::vec::Vec<::streamlib::core::PortDescriptor>,
                    ::std::vec::Vec<::streamlib::core::PortDescriptor>,
                ) {
                    (::std::vec![#(#input_descs),*], ::std::vec![#(#output_descs),*])
                }

                fn from_config(config: Config) -> Self {
                    Processor::from_config(config)
                }

                fn config(&self) -> &Config {
                    #config_access
                }

                fn config_mut(&mut self) -> ::core::option::Option<&mut Config> {
                    #config_access_mut
                }

                fn ports(&self) -> ::streamlib::__private::PortSet {
                    #[allow(unused_mut)]
                    let mut set = ::streamlib::__private::PortSet::default();
                    #(#collects)*
                    set
                }
            }

            ::streamlib::__private::inventory::submit! {
                ::streamlib::__private::ProcessorRegistration::of::<Processor>()
            }
        }
    })
}
