//! Checking answers against the OpenAPI document.

#[allow(unused_imports)]
use super::*;

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
