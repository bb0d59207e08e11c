//! The OpenAPI document (docs/api.md, "The OpenAPI document"), made at
//! start-up from what the router serves: every route is registered with
//! its operation (utoipa-axum's `routes`), so a path is in the document
//! exactly when the router serves it. The control API's operations come
//! from its handlers' `#[utoipa::path]` and the types they answer with
//! (`ToSchema`); the records endpoints from the component's `describe()`:
//! its `GET` endpoints and its models' JSON Schemas, kept as declared.

use serde_json::{json, Value};
#[cfg(test)]
use std::sync::Arc;
use utoipa::openapi::path::{Parameter, PathItem, Paths};
use utoipa::openapi::OpenApi;
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::UtoipaMethodRouter;

use super::{ApiState, DEFAULT_LIMIT, MAX_LIMIT};
use crate::providers::Provider;
use crate::runs::WebhookBody;
use crate::runtime::{Endpoint, SummaryLine};

/// What every document starts from: its info, the error answer and the
/// schemas no operation names itself.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "sync-host API",
        description = "Records synced by a sync component, with change tracking in the shape of Nango's records \
                       API; and the control API of the connections the host runs unattended."
    ),
    components(schemas(super::ErrorBody, super::NangoMetadata, WebhookBodySchema), responses(super::ApiError))
)]
struct Base;

/// The name of the security scheme of the API key.
const BEARER: &str = "bearerAuth";
const ERROR: &str = "#/components/responses/Error";
const STORE_UNAVAILABLE: &str = "#/components/responses/StoreUnavailable";

/// The document, as served: `protected` is what the API key guards (its
/// operations get the security requirement and the 401 answer when the
/// server has a key), `public` the rest.
pub(super) fn document(protected: OpenApi, public: OpenApi, state: &ApiState) -> Value {
    use utoipa::OpenApi as _;
    let guarded: Vec<String> = protected.paths.paths.keys().cloned().collect();
    let mut api = Base::openapi();
    api.merge(protected);
    api.merge(public);
    let mut document = serde_json::to_value(&api).expect("an OpenAPI document serialises");
    let keyed = state.api_key_hash.is_some();
    for (path, item) in document["paths"].as_object_mut().into_iter().flatten() {
        for operation in item.as_object_mut().into_iter().flat_map(|i| i.values_mut()).filter(|o| o.is_object()) {
            if path == "/openapi.json" {
                continue;
            }
            let responses = operation["responses"].as_object_mut().expect("an operation has responses");
            if keyed && guarded.contains(path) {
                responses.insert("401".into(), json!({"$ref": ERROR}));
                operation["security"] = json!([{ BEARER: [] }]);
            }
            // Every operation but this document reads the store.
            operation["responses"]["500"] = json!({"$ref": ERROR});
            operation["responses"]["503"] = json!({"$ref": STORE_UNAVAILABLE});
        }
    }
    // The error answer, with the wait the client is told (docs/store.md,
    // "When the store fails").
    let mut unavailable = document["components"]["responses"]["Error"].clone();
    unavailable["description"] = "The store is unreachable, busy, full or read-only (`store_unavailable`); \
         the same request succeeds once it is back."
        .into();
    unavailable["headers"] = json!({"Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    }});
    document["components"]["responses"]["StoreUnavailable"] = unavailable;
    if keyed {
        document["components"]["securitySchemes"] = json!({ BEARER: {"type": "http", "scheme": "bearer"} });
    }
    // Each model as `<Model>` and `<Model>Record`, unless the API's own
    // schemas (or another model) have these names: then `model.<Model>…`.
    let mut named: Vec<(&str, String)> = Vec::new();
    for endpoint in served(&state.endpoints) {
        let schemas = document["components"]["schemas"].as_object_mut().expect("the base has schemas");
        let name = match named.iter().find(|(model, _)| *model == endpoint.model) {
            Some((_, name)) => name.clone(),
            None => {
                let plain = component_name(&endpoint.model);
                let name = std::iter::once(plain.clone())
                    .chain((1..).map(|n| if n == 1 { format!("model.{plain}") } else { format!("model.{plain}.{n}") }))
                    .find(|name| !schemas.contains_key(name) && !schemas.contains_key(&format!("{name}Record")))
                    .expect("a free name");
                let declared = endpoint.model_schema.as_deref().cloned().unwrap_or_else(|| json!({"type": "object"}));
                schemas.insert(format!("{name}Record"), record_schema(&declared, &name));
                schemas.insert(name.clone(), relocate(declared, &name));
                named.push((&endpoint.model, name.clone()));
                name
            }
        };
        let records = format!(
            "/paths/{}/get/responses/200/content/application~1json/schema/properties/records/items",
            pointer_token(&endpoint.path)
        );
        document.pointer_mut(&records).expect("the records operation")["$ref"] =
            format!("#/components/schemas/{name}Record").into();
    }
    // Nango's records route serves every model: a record of any of them.
    let any_record: Vec<Value> =
        named.iter().map(|(_, name)| json!({"$ref": format!("#/components/schemas/{name}Record")})).collect();
    for path in ["/records", "/records/"] {
        let items = format!(
            "/paths/{}/get/responses/200/content/application~1json/schema/properties/records/items",
            pointer_token(path)
        );
        if let Some(items) = document.pointer_mut(&items) {
            *items = match any_record.as_slice() {
                [one] => one.clone(),
                many => json!({ "oneOf": many }),
            };
        }
    }
    if document["paths"].get("/sync/status").is_some() {
        document["components"]["schemas"]["NangoError"] = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "additionalProperties": false,
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "errors": {"type": "array", "items": {
                        "type": "object",
                        "required": ["code", "message", "path"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "path": {"type": "array"}}
                    }}
                }
            }}
        });
    }
    document
}

/// `/customers` as `Customers`, a provider `acme-books` as `AcmeBooks`: for operation ids.
fn camel(text: &str) -> String {
    let words = text.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty());
    words.map(|w| w[..1].to_ascii_uppercase() + &w[1..]).collect()
}

/// `text` as one token of a JSON pointer.
fn pointer_token(text: &str) -> String {
    text.replace('~', "~0").replace('/', "~1")
}

/// The endpoints the router serves: the component's `GET` ones.
pub(super) fn served(endpoints: &[Endpoint]) -> impl Iterator<Item = &Endpoint> {
    endpoints.iter().filter(|e| e.method.eq_ignore_ascii_case("GET"))
}

/// A model's name as a component's (letters, digits, `.`, `-`, `_`).
fn component_name(model: &str) -> String {
    model.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
}

/// A model's schema moved into `#/components/schemas/<name>`: its own
/// references (`#`, `#/$defs/…`) made to point there, and `$schema` and
/// `$id`, which only a schema document's root may have, dropped.
fn relocate(mut schema: Value, name: &str) -> Value {
    fn walk(value: &mut Value, base: &str) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get_mut("$ref") {
                    if let Some(pointer) = reference.strip_prefix('#') {
                        *reference = format!("{base}{pointer}");
                    }
                }
                map.values_mut().for_each(|v| walk(v, base));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, base)),
            _ => {}
        }
    }
    if let Some(map) = schema.as_object_mut() {
        map.remove("$schema");
        map.remove("$id");
    }
    walk(&mut schema, &format!("#/components/schemas/{name}"));
    schema
}

/// A record as the API shows it: the model's fields and `_nango_metadata`.
/// An object schema with `properties` gains the property (so that an
/// `additionalProperties: false` still holds); any other schema is combined
/// with it.
fn record_schema(declared: &Value, model: &str) -> Value {
    let metadata = json!({"$ref": format!("#/components/schemas/{}", super::NangoMetadata::name())});
    match relocate(declared.clone(), model) {
        Value::Object(mut map) if map.get("properties").is_some_and(Value::is_object) => {
            map.remove("title");
            map["properties"].as_object_mut().expect("an object").insert("_nango_metadata".into(), metadata);
            match map.get_mut("required") {
                Some(Value::Array(required)) => required.push("_nango_metadata".into()),
                _ => {
                    map.insert("required".into(), json!(["_nango_metadata"]));
                }
            }
            Value::Object(map)
        }
        _ => json!({
            "allOf": [
                {"$ref": format!("#/components/schemas/{model}")},
                {"type": "object", "required": ["_nango_metadata"], "properties": {"_nango_metadata": metadata}}
            ]
        }),
    }
}

/// A query parameter.
fn query(name: &str, schema: Value, description: Option<&str>) -> Value {
    let mut parameter = json!({"name": name, "in": "query", "required": false, "schema": schema});
    if let Some(description) = description {
        parameter["description"] = description.into();
    }
    parameter
}

/// `GET <endpoint>`: the records of its model, routed to `handler`.
/// The query parameters of a page of records, besides the model.
pub(super) fn record_parameters() -> Vec<Value> {
    vec![
        query(
            "modified_after",
            json!({"type": "string", "format": "date-time"}),
            Some("Only records with last_modified_at >= this RFC 3339 timestamp."),
        ),
        query("limit", json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}), None),
        query(
            "cursor",
            json!({"type": "string", "minLength": 1}),
            Some("Opaque; from next_cursor or a record's _nango_metadata.cursor. Records strictly after it."),
        ),
        query(
            "filter",
            json!({"type": "string", "pattern": "^(added|updated|deleted)(,(added|updated|deleted))*$"}),
            Some("Last actions to include; `added,updated` is every live record."),
        ),
        json!({
            "name": "ids", "in": "query", "required": false, "style": "form", "explode": true,
            "schema": {"type": "array", "maxItems": super::MAX_IDS,
                       "items": {"type": "string", "minLength": 1, "maxLength": super::MAX_ID_LENGTH}},
            "description": "Only these records (repeat the parameter)."
        }),
    ]
}

/// The answer of a page of records: its records (of any model: each
/// endpoint's own operation names its model's schema), next_cursor.
pub(super) fn records_page_response() -> Value {
    records_page("#/components/schemas/Record")
}

fn records_page(record: &str) -> Value {
    json!({
        "description": "A page of records. next_cursor is null exactly when nothing more follows.",
        "content": {"application/json": {"schema": {
            "type": "object",
            "additionalProperties": false,
            "required": ["records", "next_cursor"],
            "properties": {
                "records": {"type": "array", "items": {"$ref": record}},
                "next_cursor": {"type": ["string", "null"]}
            }
        }}}
    })
}

/// A route and its operation written as OpenAPI JSON (`{method: operation}`).
pub(super) fn operation(
    path: &str,
    item: Value,
    handler: axum::routing::MethodRouter<ApiState>,
) -> UtoipaMethodRouter<ApiState> {
    (Vec::new(), single(path, item), handler)
}

pub(super) fn records(
    endpoint: &Endpoint,
    handler: axum::routing::MethodRouter<ApiState>,
) -> UtoipaMethodRouter<ApiState> {
    // The records' schema is named with the others' (`document`).
    let record = "#/components/schemas/Record";
    let mut parameters = vec![json!({
        "name": "Connection-Id",
        "in": "header",
        "required": false,
        "schema": {"type": "string", "minLength": 1},
        "description": "The connection; `default` when absent. An unknown connection is a 400."
    })];
    parameters.extend(record_parameters());
    let item = json!({
        "get": {
            "operationId": format!("list{}", camel(&endpoint.path)),
            "summary": format!(
                "The {} records of a connection, ordered by (last_modified_at, id), keyset-paginated.",
                endpoint.model
            ),
            "parameters": parameters,
            "responses": {
                "200": records_page(record),
                "400": {"$ref": ERROR}
            }
        }
    });
    (Vec::new(), single(&endpoint.path, item), handler)
}

/// `POST /webhooks/<provider>`: its change notifications, routed to `handler`.
pub(super) fn notifications(
    provider: &dyn Provider,
    handler: axum::routing::MethodRouter<ApiState>,
) -> UtoipaMethodRouter<ApiState> {
    let header = provider.signature_header();
    let item = json!({
        "post": {
            "operationId": format!("notify{}", camel(provider.name())),
            "summary": format!(
                "{}'s change notifications, verified with {header}; the notified accounts' connections run soon, \
                 once per burst.",
                provider.name()
            ),
            "parameters": [{
                "name": header,
                "in": "header",
                "required": true,
                "schema": {"type": "string"},
                "description": "The notification's signature under the verifier token."
            }],
            "requestBody": {
                "required": true,
                "description": "The notification as the provider sends it (its module reads it once it verifies).",
                "content": {"application/json": {"schema": {"type": ["object", "array"]}}}
            },
            "responses": {
                "200": {
                    "description": "Accepted (or ignored: no connection syncs that account).",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}
                },
                "400": {"$ref": ERROR},
                "401": {"$ref": ERROR},
                "413": {"$ref": ERROR}
            }
        }
    });
    let mut schemas = vec![(super::webhooks::Accepted::name().into_owned(), super::webhooks::Accepted::schema())];
    <super::webhooks::Accepted as ToSchema>::schemas(&mut schemas);
    (schemas, single(&format!("/webhooks/{}", provider.name()), item), handler)
}

fn single(path: &str, item: Value) -> Paths {
    let item: PathItem = serde_json::from_value(item).expect("a valid path item");
    let mut paths = Paths::new();
    paths.paths.insert(path.to_owned(), item);
    paths
}

/// Adds `parameters` to every operation of `routes`.
pub(super) fn with_parameters<S>(mut routes: UtoipaMethodRouter<S>, parameters: &[Value]) -> UtoipaMethodRouter<S> {
    let parameters: Vec<Parameter> =
        parameters.iter().map(|p| serde_json::from_value(p.clone()).expect("a valid parameter")).collect();
    for item in routes.1.paths.values_mut() {
        let operations = [&mut item.get, &mut item.post, &mut item.patch, &mut item.put, &mut item.delete];
        for operation in operations.into_iter().flatten() {
            operation.parameters.get_or_insert_with(Vec::new).extend(parameters.iter().cloned());
        }
    }
    routes
}

/// Makes the request body of every operation of `routes` optional (the
/// handlers read an empty body as `{}`).
pub(super) fn optional_body<S>(mut routes: UtoipaMethodRouter<S>) -> UtoipaMethodRouter<S> {
    for item in routes.1.paths.values_mut() {
        for operation in [&mut item.post, &mut item.patch, &mut item.put].into_iter().flatten() {
            if let Some(body) = &mut operation.request_body {
                body.required = Some(utoipa::openapi::Required::False);
            }
        }
    }
    routes
}

/// `limit` and `cursor` of a history's page.
pub(super) fn page_query(default: u32, max: u32) -> [Value; 2] {
    [
        query("limit", json!({"type": "integer", "minimum": 1, "maximum": max, "default": default}), None),
        query("cursor", json!({"type": "string", "minLength": 1}), Some("From the previous page's next_cursor.")),
    ]
}

/// The counts of a run: what the store counted (added, updated, deleted,
/// unchanged) and what the component did (pages, requests, retries).
// SummaryLine's fields, mirrored: `mirrors` stops compiling when they differ.
#[derive(serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Summary)]
pub(super) struct SummarySchema {
    added: u32,
    updated: u32,
    deleted: u32,
    unchanged: u32,
    pages: u32,
    requests: u32,
    retries: u32,
}

/// What the host POSTs to the webhook URL after a run that changed
/// something, or failed; signed in X-Sync-Signature: sha256=<hex
/// HMAC-SHA256 of the raw body>.
// WebhookBody's fields, mirrored: `mirrors` stops compiling when they differ.
#[derive(serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookBody)]
pub(super) struct WebhookBodySchema {
    connection_id: String,
    sync: String,
    model: String,
    added: u32,
    updated: u32,
    deleted: u32,
    /// Read GET <endpoint>?modified_after= this to get the run's changes.
    #[schema(format = DateTime)]
    modified_after: String,
    success: bool,
    #[schema(required)]
    error: Option<String>,
}

/// The types the mirrors above describe, field for field: a field added to
/// or removed from either side is a compile error here.
#[allow(dead_code)]
fn mirrors(summary: SummaryLine, body: WebhookBody) -> (SummarySchema, WebhookBodySchema) {
    let SummaryLine { added, updated, deleted, unchanged, pages, requests, retries } = summary;
    let summary = SummarySchema { added, updated, deleted, unchanged, pages, requests, retries };
    let WebhookBody { connection_id, sync, model, added, updated, deleted, modified_after, success, error } = body;
    let body =
        WebhookBodySchema { connection_id, sync, model, added, updated, deleted, modified_after, success, error };
    (summary, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{self, OpenMode};
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt as _;

    const KEY: &str = "k3y";

    fn endpoint(method: &str, path: &str, model: &str, schema: Option<Value>) -> Endpoint {
        Endpoint { method: method.into(), path: path.into(), model: model.into(), model_schema: schema.map(Arc::new) }
    }

    /// Two models (one without a schema) and an endpoint the router does not
    /// serve (not a GET), over an empty database.
    fn state(dir: &tempfile::TempDir, key: Option<&str>) -> ApiState {
        let db = store::open(dir.path().join("api.sqlite").to_str().unwrap(), OpenMode::Create).unwrap();
        let customer = json!({"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}});
        let endpoints = vec![
            endpoint("GET", "/customers", "Customer", Some(customer)),
            endpoint("get", "/invoices", "Invoice", None),
            endpoint("POST", "/customers", "Customer", None),
        ];
        ApiState::new(db, key.map(str::to_owned), endpoints)
    }

    async fn call(router: &axum::Router, method: &Method, path: &str, key: bool) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if key {
            request = request.header("authorization", format!("Bearer {KEY}"));
        }
        let response = router.clone().oneshot(request.body(Body::from("{}")).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// The router's own answers for what it does not serve.
    fn unrouted(status: StatusCode, body: &Value) -> bool {
        status == StatusCode::METHOD_NOT_ALLOWED
            || (status == StatusCode::NOT_FOUND && body["error"]["message"] == "no such endpoint")
    }

    const METHODS: [Method; 5] = [Method::GET, Method::POST, Method::PATCH, Method::PUT, Method::DELETE];

    #[tokio::test]
    async fn the_document_lists_exactly_what_the_router_serves() {
        let dir = tempfile::tempdir().unwrap();
        let document = super::super::openapi_document(state(&dir, Some(KEY)));
        let router = super::super::router(state(&dir, Some(KEY)));
        let mut expected: Vec<String> = ["/customers", "/invoices", "/connections", "/connections/{id}"]
            .into_iter()
            .map(str::to_owned)
            .chain(["sync", "pause", "resume", "runs", "deliveries"].map(|p| format!("/connections/{{id}}/{p}")))
            .chain(["/metrics".to_owned(), "/openapi.json".to_owned()])
            .chain(
                ["/records", "/records/", "/sync/trigger", "/sync/pause", "/sync/start", "/sync/status"]
                    .map(str::to_owned),
            )
            .chain(crate::providers::all().iter().map(|p| format!("/webhooks/{}", p.name())))
            .collect();
        let mut paths: Vec<String> = document["paths"].as_object().unwrap().keys().cloned().collect();
        expected.sort();
        paths.sort();
        assert_eq!(paths, expected);
        for (path, item) in document["paths"].as_object().unwrap() {
            let concrete = path.replace("{id}", "nobody");
            for method in METHODS {
                let documented = item.get(method.as_str().to_ascii_lowercase()).is_some();
                let (status, body) = call(&router, &method, &concrete, true).await;
                assert_eq!(!unrouted(status, &body), documented, "{method} {path}: {status} {body}");
            }
        }
        for (method, path) in
            [(Method::GET, "/webhooks/nobody"), (Method::GET, "/orders"), (Method::POST, "/openapi.json")]
        {
            let (status, body) = call(&router, &method, path, true).await;
            assert!(unrouted(status, &body), "{method} {path} is not served: {status} {body}");
        }
    }

    #[tokio::test]
    async fn the_api_key_is_documented_where_it_is_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        for key in [Some(KEY), None] {
            let document = super::super::openapi_document(state(&dir, key));
            let router = super::super::router(state(&dir, key));
            assert_eq!(document["components"]["securitySchemes"].is_object(), key.is_some());
            for (path, item) in document["paths"].as_object().unwrap() {
                for (method, operation) in item.as_object().unwrap() {
                    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
                    let (status, _) = call(&router, &method, &path.replace("{id}", "nobody"), false).await;
                    let asked = status == StatusCode::UNAUTHORIZED && !path.starts_with("/webhooks/");
                    assert_eq!(operation.get("security").is_some(), asked, "{method} {path} with key {key:?}");
                    assert_eq!(operation["responses"].get("401").is_some(), asked || path.starts_with("/webhooks/"));
                }
            }
        }
    }

    #[test]
    fn a_model_named_like_an_api_schema_gets_names_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let db = store::open(dir.path().join("api.sqlite").to_str().unwrap(), OpenMode::Create).unwrap();
        let run = json!({"type": "object", "properties": {"id": {"type": "string"}, "lap": {"type": "integer"}}});
        let endpoints = vec![endpoint("GET", "/runs", "Run", Some(run.clone())), endpoint("GET", "/laps", "Run", None)];
        let document = super::super::openapi_document(ApiState::new(db, None, endpoints));
        let schemas = &document["components"]["schemas"];
        assert_eq!(schemas["model.Run"], run);
        assert_eq!(document["paths"]["/laps"]["get"]["operationId"], "listLaps");
        assert!(schemas["Run"]["properties"]["trigger"].is_object(), "the API's own Run stays");
        for path in ["/runs", "/laps"] {
            let page = &document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
            assert_eq!(page["properties"]["records"]["items"]["$ref"], "#/components/schemas/model.RunRecord");
        }
    }

    #[test]
    fn every_reference_resolves_and_models_are_kept_as_declared() {
        let dir = tempfile::tempdir().unwrap();
        let document = super::super::openapi_document(state(&dir, None));
        fn references<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        found.push(r);
                    }
                    map.values().for_each(|v| references(v, found));
                }
                Value::Array(items) => items.iter().for_each(|v| references(v, found)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(found.len() > 20, "{found:?}");
        for reference in found {
            assert!(document.pointer(reference.trim_start_matches('#')).is_some(), "{reference} resolves");
        }
        let schemas = &document["components"]["schemas"];
        assert_eq!(schemas["Customer"]["properties"]["id"], json!({"type": "string"}));
        assert_eq!(schemas["CustomerRecord"]["required"], json!(["id", "_nango_metadata"]));
        assert_eq!(schemas["Invoice"], json!({"type": "object"}), "a model without a schema: any object");
        let customers = &document["paths"]["/customers"]["get"]["responses"]["200"]["content"]["application/json"];
        assert_eq!(
            customers["schema"]["properties"]["records"]["items"]["$ref"],
            "#/components/schemas/CustomerRecord"
        );
        let mut ids: Vec<&str> = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .map(|operation| operation["operationId"].as_str().expect("an operation id"))
            .collect();
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "operation ids are unique: {ids:?}");
        let limit = &document["paths"]["/customers"]["get"]["parameters"][2]["schema"];
        assert_eq!(
            (limit["maximum"].as_u64(), limit["default"].as_u64()),
            (Some(MAX_LIMIT.into()), Some(DEFAULT_LIMIT.into()))
        );
    }

    #[test]
    fn a_model_schema_keeps_its_references_where_it_is_put() {
        let declared = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "required": ["id"],
            "properties": {"id": {"type": "string"}, "tags": {"$ref": "#/$defs/tags"}, "parent": {"$ref": "#"}},
            "$defs": {"tags": {"type": "array", "items": {"type": "string"}}}
        });
        let moved = relocate(declared.clone(), "Item");
        assert_eq!(moved.get("$schema"), None);
        assert_eq!(moved["properties"]["tags"]["$ref"], "#/components/schemas/Item/$defs/tags");
        assert_eq!(moved["properties"]["parent"]["$ref"], "#/components/schemas/Item");
        let record = record_schema(&declared, "Item");
        assert_eq!(record["required"], json!(["id", "_nango_metadata"]));
        assert_eq!(record["additionalProperties"], false);
        assert_eq!(record["properties"]["_nango_metadata"]["$ref"], "#/components/schemas/NangoMetadata");
        assert_eq!(record["properties"]["parent"]["$ref"], "#/components/schemas/Item", "the model, not the record");
        let any = record_schema(&json!(true), "Any");
        assert_eq!(any["allOf"][0]["$ref"], "#/components/schemas/Any");
    }
}
