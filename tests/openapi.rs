//! Checks that the OpenAPI document (src/web/openapi.json) agrees with the code.
//!
//! The server sends the document as it is, so nothing regenerates it when a
//! parameter, a default, a limit or an error code changes. These tests fail
//! when the two drift apart.

use std::collections::BTreeSet;

use imgflux::error::ApiError;
use imgflux::options::{parse_query, FormatRequest, ProcessOptions, Rgba, PARAMETER_NAMES};
use imgflux::pipeline::Limits;
use serde_json::Value;

const DOCUMENT: &str = include_str!("../src/web/openapi.json");

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("src/web/openapi.json is not valid JSON")
}

/// Follows a local `$ref` such as `#/components/parameters/w`, if there is one.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("reference {reference} is not local"));
            document
                .pointer(pointer)
                .unwrap_or_else(|| panic!("reference {reference} points at nothing"))
        }
        None => value,
    }
}

fn process_operation(document: &Value) -> &Value {
    document
        .pointer("/paths/~1process/post")
        .expect("the document has no POST /process")
}

fn query_parameters(document: &Value) -> Vec<&Value> {
    process_operation(document)["parameters"]
        .as_array()
        .expect("POST /process has no parameter list")
        .iter()
        .map(|parameter| resolve(document, parameter))
        .filter(|parameter| parameter["in"] == "query")
        .collect()
}

fn query_parameter<'a>(document: &'a Value, name: &str) -> &'a Value {
    query_parameters(document)
        .into_iter()
        .find(|parameter| parameter["name"] == name)
        .unwrap_or_else(|| panic!("query parameter {name} is not documented"))
}

/// Returns every variant once, with placeholder payloads, because only the
/// status and the code matter here.
fn all_errors() -> Vec<ApiError> {
    vec![
        ApiError::InvalidParameter {
            name: "w".into(),
            message: "must be a positive integer".into(),
        },
        ApiError::MalformedMultipart("no closing boundary".into()),
        ApiError::MissingImage("no 'image' field".into()),
        ApiError::IncompleteBody("ended early".into()),
        ApiError::Unauthorized,
        ApiError::NotFound,
        ApiError::MethodNotAllowed { allow: "POST" },
        ApiError::BodyTooLarge { limit: 10 },
        ApiError::UnsupportedMediaType("not multipart".into()),
        ApiError::UnsupportedImageFormat { detected: None },
        ApiError::UndecodableImage("truncated".into()),
        ApiError::ImageTooLarge("too many pixels".into()),
        ApiError::OutputTooLarge("too wide".into()),
        ApiError::RequestTimeout,
        ApiError::Overloaded {
            retry_after_secs: 1,
        },
        ApiError::ShuttingDown,
        ApiError::Internal("panic".into()),
    ]
}

/// Collects every `$ref` in the document.
fn collect_references<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child.as_str()) {
                    ("$ref", Some(reference)) => found.push(reference),
                    _ => collect_references(child, found),
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|child| collect_references(child, found)),
        _ => {}
    }
}

#[test]
fn query_parameters_match_parameter_names() {
    let document = document();
    let documented: Vec<&str> = query_parameters(&document)
        .iter()
        .map(|parameter| parameter["name"].as_str().expect("a parameter has no name"))
        .collect();

    assert_eq!(
        documented, PARAMETER_NAMES,
        "the query parameters of POST /process in openapi.json differ from options::PARAMETER_NAMES"
    );
}

#[test]
fn query_parameters_are_described() {
    let document = document();
    for parameter in query_parameters(&document) {
        let name = &parameter["name"];
        assert_eq!(parameter["required"], false, "{name} must be optional");
        assert!(
            parameter["description"]
                .as_str()
                .is_some_and(|text| text.len() > 20),
            "{name} has no real description"
        );
        assert!(
            parameter["schema"]["type"].is_string(),
            "{name} has no schema type"
        );
    }
}

#[test]
fn parameter_defaults_match_process_options() {
    let document = document();
    let defaults = ProcessOptions::default();
    let default_of = |name: &str| query_parameter(&document, name)["schema"]["default"].clone();

    assert_eq!(default_of("q"), u64::from(defaults.quality));
    assert_eq!(default_of("enlarge"), defaults.enlarge);
    assert_eq!(default_of("fit"), "inside");
    assert_eq!(defaults.fit, imgflux::options::Fit::Inside);
    assert_eq!(default_of("gravity"), "center");
    assert_eq!(defaults.gravity, imgflux::options::Gravity::Center);
    assert_eq!(default_of("format"), "png");
    assert_eq!(defaults.format, FormatRequest::Png);
    assert_eq!(default_of("bg"), "ffffff");
    assert_eq!(defaults.background, Rgba::WHITE);
    assert!(
        default_of("w").is_null(),
        "w has no default: it follows the aspect ratio"
    );
    assert!(
        default_of("h").is_null(),
        "h has no default: it follows the aspect ratio"
    );
}

#[test]
fn parameter_ranges_match_limits() {
    let document = document();
    let max_side = u64::from(Limits::default().max_output_side);

    for name in ["w", "h"] {
        let schema = &query_parameter(&document, name)["schema"];
        assert_eq!(schema["type"], "integer", "{name}");
        assert_eq!(schema["minimum"], 1, "{name}");
        assert_eq!(schema["maximum"], max_side, "{name}");
    }
    let quality = &query_parameter(&document, "q")["schema"];
    assert_eq!(quality["minimum"], 1);
    assert_eq!(quality["maximum"], 100);
}

#[test]
fn parameter_enums_list_the_contract_values() {
    let document = document();
    let enum_of = |name: &str| -> Vec<String> {
        query_parameter(&document, name)["schema"]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no enum"))
            .iter()
            .map(|value| value.as_str().expect("enum values are strings").to_string())
            .collect()
    };

    assert_eq!(enum_of("fit"), ["inside", "cover", "fill", "contain"]);
    assert_eq!(
        enum_of("gravity"),
        [
            "center",
            "north",
            "south",
            "east",
            "west",
            "northeast",
            "northwest",
            "southeast",
            "southwest"
        ]
    );
    assert_eq!(
        enum_of("format"),
        ["png", "jpeg", "jpg", "webp", "gif", "auto"]
    );
}

/// Returns the query that makes `name=value` valid on its own: `fit` other
/// than `inside` needs `w` and `h`, and `gravity` needs `fit=cover`.
fn query_with(name: &str, value: &str) -> String {
    match name {
        "fit" => format!("fit={value}&w=10&h=10"),
        "gravity" => format!("fit=cover&w=10&h=10&gravity={value}"),
        _ => format!("{name}={value}"),
    }
}

#[test]
fn documented_values_parse() {
    let document = document();

    for parameter in query_parameters(&document) {
        let name = parameter["name"].as_str().unwrap();
        let schema = &parameter["schema"];
        let mut values: Vec<String> = Vec::new();
        for key in ["default", "minimum", "maximum"] {
            if !schema[key].is_null() {
                values.push(schema[key].to_string().trim_matches('"').to_string());
            }
        }
        if let Some(keywords) = schema["enum"].as_array() {
            values.extend(keywords.iter().map(|v| v.as_str().unwrap().to_string()));
        }
        if let Some(example) = parameter.get("example") {
            values.push(example.to_string().trim_matches('"').to_string());
        }
        assert!(!values.is_empty(), "{name} documents no value to try");

        for value in values {
            let query = query_with(name, &value);
            assert!(
                parse_query(&query).is_ok(),
                "documented value rejected: {query} -> {:?}",
                parse_query(&query)
            );
        }
    }
}

#[test]
fn values_outside_schema_are_rejected() {
    let rejected = [
        "w=0",
        "h=0",
        "q=0",
        "q=101",
        "fit=stretch&w=10&h=10",
        "fit=cover&w=10&h=10&gravity=middle",
        "format=avif",
        "enlarge=yes",
        "bg=ggg",
        "bg=12345",
        "width=10",
    ];

    for query in rejected {
        let error = parse_query(query).expect_err(query);
        assert_eq!(error.code(), "invalid_parameter", "{query}");
    }
}

#[test]
fn error_codes_match_api_error() {
    let document = document();
    let documented: BTreeSet<&str> = document
        .pointer("/components/schemas/ErrorCode/enum")
        .and_then(Value::as_array)
        .expect("the document has no ErrorCode enum")
        .iter()
        .map(|code| code.as_str().expect("error codes are strings"))
        .collect();
    let errors = all_errors();
    let actual: BTreeSet<&str> = errors.iter().map(ApiError::code).collect();

    assert_eq!(documented, actual);
}

#[test]
fn each_error_status_has_a_documented_response() {
    let document = document();
    let responses = &process_operation(&document)["responses"];

    for error in all_errors() {
        let status = error.status().to_string();
        // 404 and 405 come from routing, not from an operation, so they are
        // documented as shared responses only.
        let response = match error.status() {
            404 => &document["components"]["responses"]["NotFound"],
            405 => &document["components"]["responses"]["MethodNotAllowed"],
            _ => resolve(&document, &responses[&status]),
        };
        let schema = &response["content"]["application/json"]["schema"];
        let narrowed = &schema["allOf"][1]["properties"]["error"]["properties"];

        assert_eq!(
            narrowed["status"]["const"],
            error.status(),
            "{}",
            error.code()
        );
        let code_allowed = narrowed["code"]["const"] == error.code()
            || narrowed["code"]["enum"]
                .as_array()
                .is_some_and(|codes| codes.iter().any(|code| code == error.code()));
        assert!(
            code_allowed,
            "the {status} response does not allow code {}",
            error.code()
        );
    }
}

#[test]
fn every_response_has_request_id_header() {
    let document = document();
    let paths = document["paths"]
        .as_object()
        .expect("the document has no paths");

    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item is an object") {
            let responses = operation["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path} has no responses"));
            for (status, response) in responses {
                let response = resolve(&document, response);
                assert!(
                    !response["headers"]["X-Request-Id"].is_null(),
                    "{method} {path} {status} does not document X-Request-Id"
                );
            }
        }
    }
}

#[test]
fn paths_are_the_service_endpoints() {
    let document = document();
    let paths: BTreeSet<&str> = document["paths"]
        .as_object()
        .expect("the document has no paths")
        .keys()
        .map(String::as_str)
        .collect();

    let expected = BTreeSet::from([
        "/",
        "/health",
        "/metrics",
        "/openapi.json",
        "/process",
        "/ready",
    ]);
    assert_eq!(paths, expected);
}

#[test]
fn references_resolve() {
    let document = document();
    let mut references = Vec::new();
    collect_references(&document, &mut references);

    assert!(!references.is_empty());
    for reference in references {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("reference {reference} is not local"));
        assert!(
            document.pointer(pointer).is_some(),
            "reference {reference} points at nothing"
        );
    }
}

#[test]
fn version_matches_crate() {
    let document = document();

    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn api_key_scheme_is_the_header() {
    let document = document();
    let scheme = &document["components"]["securitySchemes"]["apiKey"];

    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["in"], "header");
    assert_eq!(scheme["name"], "x-api-key");
    assert_eq!(
        process_operation(&document)["security"][0]["apiKey"],
        serde_json::json!([])
    );
}
