//! The QuickBooks Online API as this sync uses it: the requests it sends and
//! how it reads answers and faults (docs/quickbooks.md). No I/O here.

use serde::Deserialize;
use std::fmt;

use crate::customer::QboCustomer;

/// QuickBooks refuses `MAXRESULTS` above this.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// The API minor version every request asks for.
pub const MINOR_VERSION: &str = "75";

/// A request the sync sends through the host's proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    /// Path relative to the provider's base URL.
    pub path: String,
    /// Query pairs, unencoded.
    pub query: Vec<(String, String)>,
    /// Headers; always `Accept: application/json` (QuickBooks answers XML without it).
    pub headers: Vec<(String, String)>,
}

impl ApiRequest {
    fn get(path: String, mut query: Vec<(String, String)>) -> Self {
        query.push(("minorversion".into(), MINOR_VERSION.into()));
        ApiRequest { path, query, headers: vec![("Accept".into(), "application/json".into())] }
    }
}

/// `SELECT * FROM Customer` over active and archived customers, from
/// `since` (inclusive) in `LastUpdatedTime` order.
pub fn customer_query(realm_id: &str, since: Option<&str>, start_position: u32, page_size: u32) -> ApiRequest {
    let mut sql = String::from("SELECT * FROM Customer WHERE Active IN (true, false)");
    if let Some(since) = since {
        sql.push_str(" AND MetaData.LastUpdatedTime >= '");
        sql.push_str(&since.replace('\'', "\\'"));
        sql.push('\'');
    }
    sql.push_str(&format!(
        " ORDERBY MetaData.LastUpdatedTime STARTPOSITION {start_position} MAXRESULTS {}",
        page_size.min(MAX_PAGE_SIZE)
    ));
    ApiRequest::get(format!("/v3/company/{}/query", encode_segment(realm_id)), vec![("query".into(), sql)])
}

/// Change data capture for customers changed or deleted since `changed_since`.
pub fn customer_changes(realm_id: &str, changed_since: &str) -> ApiRequest {
    ApiRequest::get(
        format!("/v3/company/{}/cdc", encode_segment(realm_id)),
        vec![("entities".into(), "Customer".into()), ("changedSince".into(), changed_since.into())],
    )
}

/// A realm id is digits in practice; anything else is percent-encoded so it
/// cannot change the path.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One page of the query endpoint.
#[derive(Debug)]
pub struct QueryPage {
    pub customers: Vec<QboCustomer>,
    /// The server's clock when it answered.
    pub time: Option<String>,
}

/// What CDC says of customers changed since a point in time. Only outright
/// deletions matter: every other change also shows in the query endpoint.
#[derive(Debug)]
pub struct ChangePage {
    /// Ids of customers deleted outright (merged away).
    pub deleted_ids: Vec<String>,
    /// How many changes CDC returned in all (it returns at most 1000).
    pub changes: usize,
    pub time: Option<String>,
}

/// An answer QuickBooks gave that the sync cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// QuickBooks reported an error (a fault, or an error status).
    Fault(Fault),
    /// The body is not the JSON this endpoint returns; says what and where.
    InvalidResponse(String),
}

/// QuickBooks' description of an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub detail: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QuickBooks answered HTTP {}", self.status)?;
        if !self.code.is_empty() {
            write!(f, ", code {}", self.code)?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct QueryEnvelope {
    #[serde(rename = "QueryResponse")]
    query_response: Option<QueryResponse>,
    time: Option<String>,
}

#[derive(Deserialize)]
struct QueryResponse {
    #[serde(rename = "Customer", default)]
    customers: Vec<QboCustomer>,
}

#[derive(Deserialize)]
struct CdcEnvelope {
    #[serde(rename = "CDCResponse")]
    cdc_response: Option<Vec<CdcResponse>>,
    time: Option<String>,
}

#[derive(Deserialize)]
struct CdcResponse {
    #[serde(rename = "QueryResponse", default)]
    query_responses: OneOrMany<CdcQueryResponse>,
}

#[derive(Deserialize)]
struct CdcQueryResponse {
    #[serde(rename = "Customer", default)]
    customers: Vec<CdcCustomer>,
}

#[derive(Deserialize)]
struct CdcCustomer {
    #[serde(rename = "Id")]
    id: String,
    /// `Deleted` on tombstones of customers deleted outright.
    status: Option<String>,
}

/// QuickBooks sends `QueryResponse` inside CDC as an array; accept a lone
/// object too, as some QBO-compatible servers send it.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    Many(Vec<T>),
    One(T),
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

impl<T> IntoIterator for OneOrMany<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            OneOrMany::Many(items) => items.into_iter(),
            OneOrMany::One(item) => vec![item].into_iter(),
        }
    }
}

/// Reads a query answer. A 200 without `QueryResponse` is refused: it is not
/// an empty page (that is `"QueryResponse": {}`).
pub fn parse_query_page(body: &[u8]) -> Result<QueryPage, ApiError> {
    let envelope: QueryEnvelope = parse_json(body, "query response")?;
    let response = envelope
        .query_response
        .ok_or_else(|| ApiError::InvalidResponse(format!("query response has no QueryResponse: {}", excerpt(body))))?;
    Ok(QueryPage { customers: response.customers, time: envelope.time })
}

/// Reads a CDC answer.
pub fn parse_change_page(body: &[u8]) -> Result<ChangePage, ApiError> {
    let envelope: CdcEnvelope = parse_json(body, "CDC response")?;
    let responses = envelope
        .cdc_response
        .ok_or_else(|| ApiError::InvalidResponse(format!("CDC response has no CDCResponse: {}", excerpt(body))))?;
    let mut changes = 0;
    let mut deleted_ids = Vec::new();
    for customer in responses.into_iter().flat_map(|r| r.query_responses).flat_map(|q| q.customers) {
        changes += 1;
        if customer.status.as_deref() == Some("Deleted") {
            deleted_ids.push(customer.id);
        }
    }
    Ok(ChangePage { deleted_ids, changes, time: envelope.time })
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::InvalidResponse(format!(
            "{what} is not valid: {e} (body of {} bytes{})",
            body.len(),
            if body.is_empty() { String::new() } else { format!(", starting {}", excerpt(body)) }
        ))
    })
}

/// Turns a non-2xx answer into a [`Fault`], reading QuickBooks' error body in
/// each of its shapes: JSON `Fault.Error[]`, the gateway's lower-case
/// `fault.error[]` (401, 429), and XML `<Fault><Error code>` (what throttled
/// answers can be even when JSON was asked for). A body in none of them is
/// quoted, never dumped.
pub fn fault_from_response(status: u16, body: &[u8]) -> Fault {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(alias = "fault", rename = "Fault")]
        fault: Option<FaultBody>,
    }
    #[derive(Deserialize)]
    struct FaultBody {
        #[serde(alias = "error", rename = "Error", default)]
        errors: Vec<FaultError>,
        #[serde(rename = "type", default)]
        kind: String,
    }
    #[derive(Deserialize)]
    struct FaultError {
        #[serde(alias = "message", rename = "Message", default)]
        message: String,
        #[serde(alias = "detail", rename = "Detail", default)]
        detail: String,
        #[serde(alias = "Code", default)]
        code: String,
    }

    if let Ok(Envelope { fault: Some(fault) }) = serde_json::from_slice::<Envelope>(body) {
        if let Some(first) = fault.errors.into_iter().next() {
            return Fault { status, code: first.code, message: unpack_message(&first.message), detail: first.detail };
        }
        return Fault { status, code: String::new(), message: fault.kind, detail: String::new() };
    }
    if let Some(fault) = xml_fault(status, body) {
        return fault;
    }
    Fault {
        status,
        code: String::new(),
        message: match status {
            401 => "unauthorized".into(),
            403 => "forbidden".into(),
            429 => "throttled".into(),
            500..=599 => "server error".into(),
            _ => "unexpected status".into(),
        },
        detail: excerpt(body),
    }
}

/// `<IntuitResponse><Fault type=".."><Error code=".."><Message>..</Message>
/// <Detail>..</Detail></Error></Fault></IntuitResponse>`, namespaced or not.
fn xml_fault(status: u16, body: &[u8]) -> Option<Fault> {
    let text = std::str::from_utf8(body).ok()?;
    let document = roxmltree::Document::parse(text.trim_start_matches('\u{feff}')).ok()?;
    let fault = document.descendants().find(|n| n.has_tag_name("Fault"))?;
    let child_text = |node: roxmltree::Node<'_, '_>, name: &str| {
        node.children().find(|c| c.has_tag_name(name)).and_then(|c| c.text()).unwrap_or("").trim().to_owned()
    };
    match fault.children().find(|c| c.has_tag_name("Error")) {
        Some(error) => Some(Fault {
            status,
            code: error.attribute("code").unwrap_or("").to_owned(),
            message: unpack_message(&child_text(error, "Message")),
            detail: child_text(error, "Detail"),
        }),
        None => Some(Fault {
            status,
            code: String::new(),
            message: fault.attribute("type").unwrap_or("fault").to_owned(),
            detail: String::new(),
        }),
    }
}

/// The gateway packs its faults' messages as
/// `message=ThrottleExceeded; errorCode=003001; statusCode=429`; the code and
/// status are already said elsewhere, so only the message is kept.
fn unpack_message(message: &str) -> String {
    match message.trim().strip_prefix("message=") {
        Some(rest) => rest.split(';').next().unwrap_or(rest).trim().to_owned(),
        None => message.trim().to_owned(),
    }
}

/// The start of a body, for error messages: never the whole thing.
fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let text = text.trim();
    if body.len() > MAX {
        format!("`{text}…`")
    } else {
        format!("`{text}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_asks_for_archived_customers_in_timestamp_order() {
        let request = customer_query("123", Some("2026-03-31T16:49:28-07:00"), 5, 1000);
        assert_eq!(request.path, "/v3/company/123/query");
        assert_eq!(
            request.query,
            vec![
                (
                    "query".to_string(),
                    "SELECT * FROM Customer WHERE Active IN (true, false) AND MetaData.LastUpdatedTime >= \
                     '2026-03-31T16:49:28-07:00' ORDERBY MetaData.LastUpdatedTime STARTPOSITION 5 MAXRESULTS 1000"
                        .to_string()
                ),
                ("minorversion".to_string(), "75".to_string()),
            ]
        );
        assert!(request.headers.contains(&("Accept".into(), "application/json".into())));
    }

    #[test]
    fn never_asks_for_more_than_a_thousand() {
        let request = customer_query("1", None, 1, 5000);
        assert!(request.query[0].1.ends_with("MAXRESULTS 1000"));
    }

    #[test]
    fn realm_id_cannot_change_the_path() {
        assert_eq!(customer_query("../x", None, 1, 10).path, "/v3/company/..%2Fx/query");
    }

    #[test]
    fn empty_page_is_a_page() {
        let page = parse_query_page(br#"{"QueryResponse": {}, "time": "2026-05-05T05:15:24.356-07:00"}"#).unwrap();
        assert!(page.customers.is_empty());
        assert_eq!(page.time.as_deref(), Some("2026-05-05T05:15:24.356-07:00"));
    }

    #[test]
    fn truncated_json_says_where() {
        let err = parse_query_page(br#"{"QueryResponse": {"Customer": [{"Id": "1""#).unwrap_err();
        let ApiError::InvalidResponse(message) = err else { panic!() };
        assert!(message.contains("line 1 column"), "{message}");
    }

    #[test]
    fn faults_in_both_shapes() {
        let fault = fault_from_response(
            400,
            br#"{"Fault":{"Error":[{"Message":"Error parsing query","Detail":"QueryParserError: x","code":"4000"}],"type":"ValidationFault"},"time":"t"}"#,
        );
        assert_eq!(fault.code, "4000");
        assert_eq!(fault.message, "Error parsing query");
        assert_eq!(fault.detail, "QueryParserError: x");
        let fault = fault_from_response(
            401,
            br#"{"fault":{"error":[{"message":"message=AuthenticationFailed; errorCode=003200; statusCode=401","detail":"Token expired","code":"3200"}],"type":"AUTHENTICATION"}}"#,
        );
        assert_eq!(fault.code, "3200");
        assert_eq!(fault.message, "AuthenticationFailed");
        assert_eq!(fault.detail, "Token expired");
        let fault = fault_from_response(503, b"<html>down</html>");
        assert_eq!(fault.to_string(), "QuickBooks answered HTTP 503: server error (`<html>down</html>`)");
    }

    #[test]
    fn throttled_answers_in_xml_are_read_like_json_faults() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2026-05-05T05:00:00.000-07:00"><Fault type="SERVICE"><Error code="3001"><Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message><Detail>The request limit was reached.  Try again later</Detail></Error></Fault></IntuitResponse>"#;
        let fault = fault_from_response(429, xml);
        assert_eq!(
            fault,
            Fault {
                status: 429,
                code: "3001".into(),
                message: "ThrottleExceeded".into(),
                detail: "The request limit was reached.  Try again later".into()
            }
        );
        assert_eq!(
            fault.to_string(),
            "QuickBooks answered HTTP 429, code 3001: ThrottleExceeded (The request limit was reached.  Try again later)"
        );
        let bare = fault_from_response(400, br#"<IntuitResponse><Fault type="ValidationFault"/></IntuitResponse>"#);
        assert_eq!((bare.message.as_str(), bare.code.as_str()), ("ValidationFault", ""));
        let html = fault_from_response(502, b"<html><body>Bad gateway</body></html>");
        assert_eq!(html.message, "server error", "markup that is not a fault is quoted, not parsed");
    }

    #[test]
    fn cdc_collects_tombstones() {
        let page = parse_change_page(
            br#"{"CDCResponse":[{"QueryResponse":[{"Customer":[{"Id":"5","status":"Deleted","domain":"QBO","MetaData":{"LastUpdatedTime":"2026-05-05T05:00:00-07:00"}},{"Id":"6","Active":false,"MetaData":{"CreateTime":"2026-05-05T05:00:00-07:00","LastUpdatedTime":"2026-05-05T05:00:00-07:00"}}],"startPosition":1,"maxResults":2}]}],"time":"2026-05-05T05:15:24.356-07:00"}"#,
        )
        .unwrap();
        assert_eq!(page.deleted_ids, vec!["5".to_string()]);
        assert_eq!(page.changes, 2);

        let lone = parse_change_page(
            br#"{"CDCResponse":[{"QueryResponse":{"Customer":[{"Id":"9","status":"Deleted"}]}}],"time":"t"}"#,
        )
        .unwrap();
        assert_eq!(lone.deleted_ids, vec!["9".to_string()]);
        let empty = parse_change_page(br#"{"CDCResponse":[{"QueryResponse":[{}]}],"time":"t"}"#).unwrap();
        assert_eq!(empty.changes, 0);
    }
}
