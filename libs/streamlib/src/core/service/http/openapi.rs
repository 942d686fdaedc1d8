//! The OpenAPI 3.1 document: paths from the route table (`api_routes`), the responses every
//! route can give because of the layers around it (access guard, limits, timeout), and the
//! bearer scheme, required only when the server has a token ([`openapi_for`]).

use std::sync::LazyLock;

use utoipa::OpenApi;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

/// The document's fixed parts; the paths come from the route table.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "streamlib API",
        description = "Control a streamlib runtime: processors, connections, lifecycle, events. Errors are {\"error\":{\"code\",\"message\"}}.",
        license(name = "MIT OR Apache-2.0"),
        version = env!("CARGO_PKG_VERSION")
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "processors", description = "Create, inspect and remove processors"),
        (name = "connections", description = "Link output ports to input ports"),
        (name = "runtime", description = "Start, stop and inspect the runtime"),
        (name = "graph", description = "The whole graph as a document: export, plan, apply"),
        (name = "events", description = "Runtime events over WebSocket"),
        (name = "meta", description = "Registry and API description"),
        (name = "metrics", description = "Prometheus metrics of the runtime and the API")
    )
)]
pub(super) struct ApiDoc;

/// The document of a server without a token: no route asks for credentials.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(|| {
        let mut doc = super::api_routes().into_openapi();
        // After the routes are in: modifiers of `ApiDoc` run before there are any paths.
        utoipa::Modify::modify(&LayerResponses, &mut doc);
        doc
    });
    &DOC
}

/// The document of a server as it runs: with `token`, every route requires the bearer scheme.
pub fn openapi_for(token: bool) -> utoipa::openapi::OpenApi {
    let mut doc = openapi().clone();
    if token {
        doc.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
    doc
}

/// Declares the bearer token scheme (required only by [`openapi_for`] with a token).
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// Adds to every operation the statuses the layers around the handlers can answer with, so
/// each route documents all it can return (a route's own entry wins when it has one).
struct LayerResponses;

impl utoipa::Modify for LayerResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let has_path_params = path.contains('{');
            for (method, operation) in [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
            ] {
                if let Some(operation) = operation {
                    add_layer_responses(operation, &method, has_path_params);
                }
            }
        }
    }
}

fn add_layer_responses(operation: &mut Operation, method: &HttpMethod, has_path_params: bool) {
    let changes = matches!(method, HttpMethod::Post | HttpMethod::Delete);
    let has_body = operation.request_body.is_some();
    let mut add = |status: &str, description: &str| {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description));
    };
    add(
        "401",
        "unauthorized: the server has a token and the request did not present it",
    );
    add("403", "forbidden: the Host or Origin header is not allowed");
    add(
        "429",
        "rate_limited: too many changes, or failed token attempts, from this client (see Retry-After)",
    );
    add("503", "runtime_unavailable: the runtime has shut down");
    add("504", "timeout: the runtime did not answer in time");
    if has_path_params {
        add("400", "invalid_path: the path parameter is malformed");
    }
    if changes && has_body {
        add("400", "invalid_json: the body is not valid JSON");
        add(
            "413",
            "payload_too_large: the body exceeds the server's limit",
        );
        add(
            "415",
            "unsupported_media_type: the body is not application/json",
        );
        add(
            "422",
            "invalid_request: the JSON does not have the expected shape",
        );
    }
}

fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}
