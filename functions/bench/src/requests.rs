//! What the benchmarks send: API Gateway events, events shaped like the Airflow DAG's, and bearer
//! tokens signed as the functions sign them.

use std::time::Duration;

use eventstream::{
    auth::{TokenCodec, TokenKind, TokenSubject},
    config::JwtConfig,
    domain::{EventInput, Role},
};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

const REST_FIXTURE: &str = include_str!("../../../events/ingest-create-event-rest.json");

/// The REST (v1) proxy event API Gateway sends for a JSON POST with a bearer token, as JSON text:
/// the Lambda runtime hands the function text.
pub fn rest_event(path: &str, token: &str, body: &str) -> String {
    let mut event: Value = serde_json::from_str(REST_FIXTURE).expect("the fixture is JSON");
    let headers = json!({
        "Host": "abc123.execute-api.us-east-1.amazonaws.com",
        "Authorization": format!("Bearer {token}"),
        "Content-Type": "application/json",
    });
    let multi: serde_json::Map<String, Value> =
        headers.as_object().expect("an object").iter().map(|(name, value)| (name.clone(), json!([value]))).collect();
    event["httpMethod"] = json!("POST");
    event["requestContext"]["httpMethod"] = json!("POST");
    event["path"] = json!(path);
    event["requestContext"]["path"] = json!(format!("/Prod{path}"));
    event["pathParameters"] = json!({ "proxy": path.trim_start_matches('/') });
    event["headers"] = headers;
    event["multiValueHeaders"] = Value::Object(multi);
    event["body"] = json!(body);
    event["isBase64Encoded"] = json!(false);
    event.to_string()
}

/// `count` events shaped like the Airflow DAG's: `statuses` in turn, a description on all but
/// successes, ten sources named `{source}-<n>`, eight hosts and small attributes.
pub fn batch_inputs(count: usize, statuses: &[&str], source: &str) -> Vec<EventInput> {
    (0..count)
        .map(|i| {
            let status = statuses[i % statuses.len()];
            EventInput {
                title: Some(format!("Job {} finished with {status}", i % 97)),
                description: (status != "success").then(|| format!("Run {i} of the nightly export on host-{}", i % 8)),
                status: Some(status.into()),
                source: Some(format!("{source}-{}", i % 10)),
                occurred_at: None,
                attributes: Some(json!({ "host": format!("host-{}", i % 8), "sequence": i })),
            }
        })
        .collect()
}

/// The functions' token settings, with a key of the benchmarks' own.
pub fn jwt_config() -> JwtConfig {
    JwtConfig {
        secret: SecretString::from("bench-secret-of-32-bytes-or-more-for-tokens"),
        issuer: "eventstream".into(),
        audience: "eventstream-api".into(),
        access_ttl: Duration::from_secs(3_600),
        refresh_ttl: Duration::from_secs(86_400),
    }
}

/// An access token for `user` with every role.
pub fn access_token(jwt: &JwtConfig, user: Uuid, username: &str) -> String {
    let subject = TokenSubject { user_id: user, username, roles: &Role::ALL, token_version: 1 };
    TokenCodec::new(jwt).issue(subject, TokenKind::Access, Uuid::now_v7())
}
