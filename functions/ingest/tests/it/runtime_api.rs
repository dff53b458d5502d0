//! The `ingest` binary as Lambda runs it: started with the Lambda environment, polling a real
//! Lambda Runtime API (cargo-lambda's emulator) and answering the API Gateway events kept in `events/`.

use std::process::Command;

use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{RunningFunction, access_token, create_user, fixture, with_bearer, with_credentials};

#[sqlx::test(migrations = "../../migrations")]
async fn the_function_answers_the_sample_events_through_the_runtime_api(pool: PgPool) {
    let user = create_user(&pool).await;
    let function = RunningFunction::start(&pool);
    // Tokens come from the login function; this one is signed with the key the function was given.
    let access = &access_token(user);

    let (status, not_here) = function.invoke(&with_credentials(fixture("login-obtain-token-rest.json")));
    assert_eq!((status, &not_here["error"]["code"]), (404, &json!("not_found")), "login is the login function's");

    let (status, created) = function.invoke(&with_bearer(fixture("ingest-create-event-rest.json"), access));
    assert_eq!(status, 201, "{created}");
    let (status, created_v2) = function.invoke(&with_bearer(fixture("ingest-create-event-http.json"), access));
    assert_eq!(status, 201, "{created_v2}");
    let (status, batch) = function.invoke(&with_bearer(fixture("ingest-create-batch-rest.json"), access));
    assert_eq!(status, 201, "{batch}");
    let (status, listed) = function.invoke(&with_bearer(fixture("ingest-list-events-rest.json"), access));
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["events"].as_array().unwrap().len(), 1, "one warning among the five: {listed}");
    assert_eq!(listed["events"][0]["id"], created["id"]);

    let (status, refused) = function.invoke(&fixture("ingest-create-event-rest.json"));
    assert_eq!((status, &refused["error"]["code"]), (401, &json!("invalid_token")));

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.unwrap();
    assert_eq!(stored, 5);
    function.delete_topology().await;
}

#[test]
fn a_missing_variable_stops_the_function_at_start_naming_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_ingest"))
        .env_clear()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/none")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("neither environment variable JWT_SECRET nor JWT_SECRET_ARN is set"), "{stderr}");
}

/// lambda_http alone fails the invocation on a header the `http` crate refuses, and API Gateway
/// then answers 502 on every route, before any token is looked at.
#[sqlx::test(migrations = "../../migrations")]
async fn a_control_character_in_a_header_is_answered_with_a_400_not_an_invocation_error(pool: PgPool) {
    let function = RunningFunction::start(&pool);

    for name in ["ingest-create-event-rest.json", "ingest-create-event-http.json"] {
        for value in ["a\u{1}b", "a\r\nX-Injected: 1", "a\u{0}b"] {
            let mut event = fixture(name);
            event["headers"]["X-Note"] = json!(value);
            if event.get("multiValueHeaders").is_some() {
                event["multiValueHeaders"]["X-Note"] = json!([value]);
            }
            let (status, body) = function.invoke(&event);
            assert_eq!(
                (status, &body["error"]["code"]),
                (400, &json!("malformed_request")),
                "{name} {value:?}: {body}"
            );
        }
    }

    let (status, refused) = function.invoke(&fixture("ingest-create-event-rest.json"));
    assert_eq!((status, &refused["error"]["code"]), (401, &json!("invalid_token")), "the function still serves");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.unwrap();
    assert_eq!(stored, 0);
}
