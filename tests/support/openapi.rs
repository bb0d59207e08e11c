//! Checking answers against the OpenAPI document the server serves.

#[allow(unused_imports)]
use super::*;

/// The OpenAPI document `serve` serves at `/openapi.json` (made from the
/// code at start-up: host/src/api/openapi.rs).
pub fn served_openapi(api: &ApiClient) -> Value {
    let (status, document) = api.get("/openapi.json", &[]);
    assert_eq!(status, 200, "{document}");
    assert_eq!(document["openapi"], "3.1.0", "an OpenAPI 3.1 document");
    document
}

/// Validates a response body against the OpenAPI document's `response`
/// (following a `$ref` to `components/responses`).
pub fn assert_openapi_response(document: &Value, response: &Value, body: &Value) {
    let response = match response.get("$ref") {
        Some(reference) => {
            let name = reference.as_str().unwrap().rsplit('/').next().unwrap();
            &document["components"]["responses"][name]
        }
        None => response,
    };
    assert!(response.is_object(), "the document describes no such response for {body}");
    let mut schema = response["content"]["application/json"]["schema"].clone();
    schema["components"] = document["components"].clone();
    let validator =
        jsonschema::options().with_draft(jsonschema::Draft::Draft202012).build(&schema).expect("a valid schema");
    let errors: Vec<String> = validator.iter_errors(body).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "the answer does not match the document: {errors:?}\n{body}");
}
