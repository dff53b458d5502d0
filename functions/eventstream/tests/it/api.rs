//! The REST API end to end inside the function: API Gateway events in, real PostgreSQL behind.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{HTTP_FIXTURE, PASSWORD, REST_FIXTURE, Reply, Rest, SECRET, TestApi, count, event_json};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// ---------- fixtures from events/, as API Gateway sends them ----------

#[sqlx::test(migrations = "../../migrations")]
async fn the_rest_fixture_with_its_stage_stores_the_event(pool: PgPool) {
    let api = TestApi::new(pool);
    let user = api.user("alice").await;
    let mut event: Value = serde_json::from_str(REST_FIXTURE).unwrap();
    let bearer = format!("Bearer {}", api.access_token(user));
    event["headers"]["Authorization"] = json!(bearer);
    event["multiValueHeaders"]["Authorization"] = json!([bearer]);

    let reply = api.call_event(&event).await;

    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["title"], "Disk usage above 90%");
    assert_eq!(reply.body["status"], "warning");
    assert_eq!(reply.body["source"], "web-1");
    assert_eq!(reply.body["occurred_at"], "2026-11-29T09:59:30Z");
    assert_eq!(reply.body["attributes"], json!({ "mount": "/var", "percent": 93 }));
    assert_eq!(reply.body["pipeline_state"], "received");
    assert_eq!(reply.body["posted_by"], json!(user));
    assert_eq!(api.event_count().await, 1);
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_http_api_fixture_with_a_named_stage_in_its_raw_path_is_routed(pool: PgPool) {
    let api = TestApi::new(pool);
    let user = api.user("alice").await;
    let mut event: Value = serde_json::from_str(HTTP_FIXTURE).unwrap();
    event["headers"]["authorization"] = json!(format!("Bearer {}", api.access_token(user)));

    let reply = api.call_event(&event).await;

    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["title"], "Payment failed");
    assert_eq!(reply.body["status"], "error");
    assert_eq!(api.event_count().await, 1);
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_stage_named_like_the_first_path_segment_still_routes(pool: PgPool) {
    let api = TestApi::new(pool);
    let user = api.user("alice").await;
    let mut request = Rest::get("/api/events").bearer(&api.access_token(user));
    request.event["requestContext"]["stage"] = json!("api");
    assert_eq!(api.call(request).await.status, StatusCode::OK);
}

// ---------- tokens ----------

#[sqlx::test(migrations = "../../migrations")]
async fn valid_credentials_get_an_access_and_a_refresh_token(pool: PgPool) {
    let api = TestApi::new(pool);
    api.user("alice").await;

    let reply = api.call(Rest::login("alice", PASSWORD)).await;

    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let access = reply.body["access"].as_str().unwrap();
    let created = api.call(Rest::post("/api/events").bearer(access).json(&event_json("t", "info"))).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let refreshed = api.call(Rest::refresh(&reply.body["refresh"])).await;
    assert_eq!(refreshed.status, StatusCode::OK);
    let listed = api.call(Rest::get("/api/events").bearer(refreshed.body["access"].as_str().unwrap())).await;
    assert_eq!(listed.status, StatusCode::OK);
}

#[sqlx::test(migrations = "../../migrations")]
async fn wrong_unknown_or_inactive_credentials_get_the_same_401(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    api.user("alice").await;
    api.user("bob").await;
    sqlx::query("UPDATE users SET is_active = false WHERE username = 'bob'").execute(&pool).await.unwrap();

    for (username, password) in [("alice", "wrong password"), ("nobody", PASSWORD), ("bob", PASSWORD)] {
        let reply = api.call(Rest::login(username, password)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{username}");
        assert_eq!(reply.error(), ("invalid_credentials", None), "{username}");
        assert_eq!(reply.headers["www-authenticate"], "Bearer");
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_login_without_a_password_names_the_field(pool: PgPool) {
    let api = TestApi::new(pool);
    let reply = api.call(Rest::post("/api/token").json(&json!({ "username": "alice" }))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), ("invalid_field", Some("password")));
}

#[sqlx::test(migrations = "../../migrations")]
async fn an_access_token_cannot_refresh_and_a_deactivated_user_cannot_refresh(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    api.user("alice").await;
    let pair = api.call(Rest::login("alice", PASSWORD)).await.body;

    let reply = api.call(Rest::refresh(&pair["access"])).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error().0, "invalid_token");

    sqlx::query("UPDATE users SET is_active = false").execute(&pool).await.unwrap();
    let reply = api.call(Rest::refresh(&pair["refresh"])).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

/// Claims of a well-formed access token for `user`, to be spoiled one way or another.
fn claims(user: Uuid) -> Value {
    json!({ "sub": user, "name": "alice", "iss": "eventstream", "aud": "eventstream-api",
            "iat": now(), "exp": now() + 300, "jti": Uuid::now_v7(), "typ": "access" })
}

fn sign(header: Header, claims: &Value, secret: &str) -> String {
    encode(&header, claims, &EncodingKey::from_secret(secret.as_bytes()).unwrap()).unwrap()
}

#[sqlx::test(migrations = "../../migrations")]
async fn every_token_attack_gets_401_and_stores_nothing(pool: PgPool) {
    let api = TestApi::new(pool);
    let user = api.user("alice").await;
    let good = api.access_token(user);
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(user).to_string())
    );
    let mut tampered: Vec<String> = good.split('.').map(str::to_string).collect();
    tampered[1] = URL_SAFE_NO_PAD.encode(claims(Uuid::now_v7()).to_string());
    let with = |changes: Value| {
        let mut spoiled = claims(user);
        for (key, value) in changes.as_object().unwrap() {
            spoiled[key] = value.clone();
        }
        sign(Header::new(Algorithm::HS256), &spoiled, SECRET)
    };
    let attacks: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("alg none", Some(format!("Bearer {unsigned}"))),
        (
            "HS512 with the same secret",
            Some(format!("Bearer {}", sign(Header::new(Algorithm::HS512), &claims(user), SECRET))),
        ),
        ("tampered payload", Some(format!("Bearer {}", tampered.join(".")))),
        (
            "another key",
            Some(format!("Bearer {}", sign(Header::default(), &claims(user), "some-other-secret-that-is-long-enough"))),
        ),
        ("expired", Some(format!("Bearer {}", with(json!({ "iat": now() - 900, "exp": now() - 600 }))))),
        ("wrong issuer", Some(format!("Bearer {}", with(json!({ "iss": "evil" }))))),
        ("wrong audience", Some(format!("Bearer {}", with(json!({ "aud": "other-api" }))))),
        ("issued in the future", Some(format!("Bearer {}", with(json!({ "iat": now() + 3600 }))))),
        ("refresh token as access", Some(format!("Bearer {}", with(json!({ "typ": "refresh" }))))),
        ("not bearer", Some(format!("Basic {good}"))),
        ("garbage", Some("Bearer not.a.jwt".to_string())),
    ];

    for (attack, authorization) in attacks {
        let mut request = Rest::post("/api/events").json(&event_json("t", "error"));
        if let Some(value) = &authorization {
            request = request.header("Authorization", value);
        }
        let reply = api.call(request).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{attack}: {:?}", reply.body);
        assert!(["missing_token", "invalid_token"].contains(&reply.error().0), "{attack}");
    }
    assert_eq!(api.event_count().await, 0);
    let reply = api.call(Rest::post("/api/events").bearer(&good).json(&event_json("t", "error"))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "the good token works: {:?}", reply.body);
}

// ---------- creating events ----------

#[sqlx::test(migrations = "../../migrations")]
async fn each_bad_input_gets_its_status_and_stores_nothing(pool: PgPool) {
    let api = TestApi::new(pool);
    let token = api.access_token(api.user("alice").await);
    let huge = "x".repeat(300 * 1024);
    let cases: Vec<(&str, Rest, StatusCode, &str, Option<&str>)> = vec![
        (
            "truncated JSON",
            Rest::post("/api/events").raw_body("application/json", "{\"title\": "),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            Some("title"),
        ),
        (
            "not JSON",
            Rest::post("/api/events").raw_body("application/json", "title=t&status=info"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
        (
            "empty body",
            Rest::post("/api/events").raw_body("application/json", ""),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
        (
            "wrong type",
            Rest::post("/api/events").json(&json!({ "title": 5, "status": "info" })),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            Some("title"),
        ),
        (
            "unknown field",
            Rest::post("/api/events").json(&json!({ "title": "t", "status": "info", "colour": "red" })),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            Some("colour"),
        ),
        (
            "unknown status",
            Rest::post("/api/events").json(&event_json("t", "critical")),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("status"),
        ),
        (
            "missing title",
            Rest::post("/api/events").json(&json!({ "status": "info" })),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("title"),
        ),
        (
            "title too long",
            Rest::post("/api/events").json(&event_json(&"t".repeat(201), "info")),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("title"),
        ),
        (
            "description too long",
            Rest::post("/api/events")
                .json(&json!({ "title": "t", "status": "info", "description": "d".repeat(10_001) })),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("description"),
        ),
        (
            "source too long",
            Rest::post("/api/events").json(&json!({ "title": "t", "status": "info", "source": "s".repeat(101) })),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("source"),
        ),
        (
            "bad occurred_at",
            Rest::post("/api/events").json(&json!({ "title": "t", "status": "info", "occurred_at": "yesterday" })),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            Some("occurred_at"),
        ),
        (
            "attributes not an object",
            Rest::post("/api/events").json(&json!({ "title": "t", "status": "info", "attributes": [1] })),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("attributes"),
        ),
        (
            "attributes over 16 KiB",
            Rest::post("/api/events")
                .json(&json!({ "title": "t", "status": "info", "attributes": { "a": "x".repeat(17_000) } })),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("attributes"),
        ),
        (
            "NUL in title",
            Rest::post("/api/events").json(&event_json("a\u{0}b", "info")),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("title"),
        ),
        (
            "body over 256 KiB",
            Rest::post("/api/events").json(&json!({ "title": "t", "status": "info", "description": huge })),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            None,
        ),
        (
            "text/plain",
            Rest::post("/api/events").raw_body("text/plain", &event_json("t", "info").to_string()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        (
            "no content type",
            Rest::post("/api/events").json(&event_json("t", "info")).header("Content-Type", ""),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        (
            "batch with one bad event",
            Rest::post("/api/events/batch")
                .json(&json!({ "events": [event_json("ok", "info"), { "status": "info" }] })),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("events[1].title"),
        ),
        (
            "batch with a mistyped event",
            Rest::post("/api/events/batch")
                .json(&json!({ "events": [event_json("ok", "info"), { "title": [], "status": "info" }] })),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            Some("events[1].title"),
        ),
        (
            "empty batch",
            Rest::post("/api/events/batch").json(&json!({ "events": [] })),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("events"),
        ),
        (
            "batch of 501",
            Rest::post("/api/events/batch").json(&json!({ "events": vec![event_json("t", "info"); 501] })),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("events"),
        ),
        (
            "batch without events",
            Rest::post("/api/events/batch").json(&json!({})),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("events"),
        ),
        (
            "bad Idempotency-Key",
            Rest::post("/api/events").json(&event_json("t", "info")).header("Idempotency-Key", &"k".repeat(256)),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("Idempotency-Key"),
        ),
    ];

    for (case, request, status, code, field) in cases {
        let reply = api.call(request.bearer(&token)).await;
        assert_eq!(reply.status, status, "{case}: {:?}", reply.body);
        assert_eq!(reply.error(), (code, field), "{case}: {:?}", reply.body);
        assert!(reply.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{case}");
        assert_eq!(reply.headers["content-type"], "application/json", "{case}");
    }
    assert_eq!(api.event_count().await, 0);
    assert_eq!(count(&api.pool, "idempotency_keys").await, 0);
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_batch_of_500_is_stored_in_the_order_sent(pool: PgPool) {
    let api = TestApi::new(pool);
    let token = api.access_token(api.user("alice").await);
    let statuses = ["success", "info", "warning", "error"];
    let events: Vec<Value> = (0..500).map(|i| event_json(&format!("event {i}"), statuses[i % 4])).collect();

    let reply = api.call(Rest::post("/api/events/batch").bearer(&token).json(&json!({ "events": events }))).await;

    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body["error"]);
    let stored = reply.body["events"].as_array().unwrap();
    assert_eq!(stored.len(), 500);
    for (i, event) in stored.iter().enumerate() {
        assert_eq!(event["title"], format!("event {i}"));
        assert_eq!(event["status"], statuses[i % 4]);
    }
    assert_eq!(api.event_count().await, 500);
}

// ---------- publishing to the dispatcher ----------

#[sqlx::test(migrations = "../../migrations")]
async fn stored_events_are_published_to_dispatch_once_and_replays_publish_nothing(pool: PgPool) {
    let api = TestApi::new(pool);
    let token = api.access_token(api.user("alice").await);
    let batch = json!({ "events": [event_json("a", "warning"), event_json("b", "error")] });
    let post = || Rest::post("/api/events/batch").bearer(&token).json(&batch).header("Idempotency-Key", "k");

    let created = api.call(post()).await;
    let replayed = api.call(post()).await;

    assert_eq!((created.status, replayed.status), (StatusCode::CREATED, StatusCode::OK));
    let bodies = api.drain_bodies(eventstream::bus::Queue::Dispatch).await;
    assert_eq!(bodies.len(), 1, "a request's events travel to dispatch in one message");
    let published = eventstream::bus::EventMessage::parse_batch(&bodies[0]).unwrap();
    let ids: Vec<Value> = created.body["events"].as_array().unwrap().iter().map(|e| e["id"].clone()).collect();
    assert_eq!(published.iter().map(|m| json!(m.event_id)).collect::<Vec<_>>(), ids);
    assert_eq!(published[1].status, eventstream::domain::Status::Error);
    assert_eq!(published[1].title, "b");
}

#[sqlx::test(migrations = "../../migrations")]
async fn with_rabbitmq_unreachable_the_event_is_stored_and_left_received(pool: PgPool) {
    // Nothing listens on port 1: the connection is refused, as when RabbitMQ is down.
    let api = TestApi::with_amqp(pool, "amqp://guest:guest@127.0.0.1:1/%2f");
    let token = api.access_token(api.user("alice").await);

    let reply = api.call(Rest::post("/api/events").bearer(&token).json(&event_json("t", "error"))).await;

    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["pipeline_state"], "received");
    assert_eq!(api.event_count().await, 1);
}

// ---------- Idempotency-Key ----------

#[sqlx::test(migrations = "../../migrations")]
async fn a_retry_with_the_same_key_and_body_returns_the_original_with_200(pool: PgPool) {
    let api = TestApi::new(pool);
    let token = api.access_token(api.user("alice").await);
    let post = |body: &str| {
        Rest::post("/api/events").bearer(&token).raw_body("application/json", body).header("Idempotency-Key", "run-42")
    };

    let first = api.call(post(r#"{"title":"t","status":"error"}"#)).await;
    let retry = api.call(post("{ \"status\": \"error\",\n  \"title\": \"t\" }")).await;

    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(retry.status, StatusCode::OK, "{:?}", retry.body);
    assert_eq!(retry.body, first.body);
    assert_eq!(api.event_count().await, 1);
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_same_key_with_another_body_or_endpoint_is_a_409_and_stores_nothing(pool: PgPool) {
    let api = TestApi::new(pool);
    let token = api.access_token(api.user("alice").await);
    let keyed = |path: &str, body: Value| Rest::post(path).bearer(&token).json(&body).header("Idempotency-Key", "k1");

    assert_eq!(api.call(keyed("/api/events", event_json("t", "error"))).await.status, StatusCode::CREATED);
    let other_body = api.call(keyed("/api/events", event_json("t", "warning"))).await;
    let other_endpoint = api.call(keyed("/api/events/batch", json!({ "events": [event_json("t", "error")] }))).await;

    for reply in [other_body, other_endpoint] {
        assert_eq!(reply.status, StatusCode::CONFLICT, "{:?}", reply.body);
        assert_eq!(reply.error(), ("idempotency_conflict", None));
    }
    assert_eq!(api.event_count().await, 1);
}

#[sqlx::test(migrations = "../../migrations")]
async fn keys_are_per_user_and_a_batch_replays_whole(pool: PgPool) {
    let api = TestApi::new(pool);
    let alice = api.access_token(api.user("alice").await);
    let bob = api.access_token(api.user("bob").await);
    let batch = json!({ "events": [event_json("a", "info"), event_json("b", "warning"), event_json("c", "error")] });
    let post =
        |token: &str| Rest::post("/api/events/batch").bearer(token).json(&batch).header("Idempotency-Key", "nightly");

    let first = api.call(post(&alice)).await;
    let replay = api.call(post(&alice)).await;
    let bobs = api.call(post(&bob)).await;

    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.body, first.body, "same events, same order");
    assert_eq!(bobs.status, StatusCode::CREATED, "another user's key is another key");
    assert_eq!(api.event_count().await, 6);
}

#[sqlx::test(migrations = "../../migrations")]
async fn concurrent_retries_with_one_key_store_one_event(pool: PgPool) {
    let api = TestApi::new(pool);
    let token = api.access_token(api.user("alice").await);
    let post =
        || Rest::post("/api/events").bearer(&token).json(&event_json("t", "error")).header("Idempotency-Key", "race");

    let replies = futures_join(&api, (0..8).map(|_| post()).collect()).await;

    let created = replies.iter().filter(|r| r.status == StatusCode::CREATED).count();
    let replayed = replies.iter().filter(|r| r.status == StatusCode::OK).count();
    assert_eq!((created, replayed), (1, 7), "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_eq!(api.event_count().await, 1);
}

async fn futures_join(api: &TestApi, requests: Vec<Rest>) -> Vec<Reply> {
    let mut handles = tokio::task::JoinSet::new();
    for (index, request) in requests.into_iter().enumerate() {
        let api = TestApi::new(api.pool.clone());
        handles.spawn(async move { (index, api.call(request).await) });
    }
    let mut replies: Vec<_> = handles.join_all().await;
    replies.sort_by_key(|(index, _)| *index);
    replies.into_iter().map(|(_, reply)| reply).collect()
}

// ---------- reading events ----------

async fn seed(api: &TestApi, token: &str) {
    let events = json!({ "events": [
        { "title": "Backup done", "status": "success", "source": "cron" },
        { "title": "Cache warm", "status": "info", "source": "cdn", "description": "50% of keys" },
        { "title": "Disk 91% full", "status": "warning", "source": "web-1" },
        { "title": "Payment FAILED", "status": "error", "source": "billing", "description": "card declined" },
        { "title": "Latency high", "status": "warning", "source": "cdn" },
    ]});
    let reply = api.call(Rest::post("/api/events/batch").bearer(token).json(&events)).await;
    assert_eq!(reply.status, StatusCode::CREATED);
}

fn titles(reply: &Reply) -> Vec<String> {
    reply.body["events"].as_array().unwrap().iter().map(|e| e["title"].as_str().unwrap().to_string()).collect()
}

#[sqlx::test(migrations = "../../migrations")]
async fn the_list_filters_by_status_source_text_and_time(pool: PgPool) {
    let api = TestApi::new(pool);
    let token = api.access_token(api.user("alice").await);
    seed(&api, &token).await;
    let list = |query: &[(&str, &str)]| api.call(Rest::get("/api/events").bearer(&token).query(query));

    assert_eq!(
        titles(&list(&[]).await),
        ["Latency high", "Payment FAILED", "Disk 91% full", "Cache warm", "Backup done"]
    );
    assert_eq!(titles(&list(&[("status", "warning")]).await), ["Latency high", "Disk 91% full"]);
    assert_eq!(titles(&list(&[("source", "cdn")]).await), ["Latency high", "Cache warm"]);
    assert_eq!(titles(&list(&[("status", "warning"), ("source", "cdn")]).await), ["Latency high"]);
    assert_eq!(titles(&list(&[("q", "payment failed")]).await), ["Payment FAILED"], "case-insensitive");
    assert_eq!(titles(&list(&[("q", "DECLINED")]).await), ["Payment FAILED"], "searches the description");
    assert_eq!(titles(&list(&[("q", "50%")]).await), ["Cache warm"], "% is literal");
    assert_eq!(titles(&list(&[("q", "9_%")]).await), Vec::<String>::new(), "_ is literal");
    assert_eq!(titles(&list(&[("since", "2000-01-01T00:00:00Z")]).await).len(), 5);
    assert_eq!(titles(&list(&[("until", "2000-01-01T00:00:00Z")]).await).len(), 0);
    assert_eq!(titles(&list(&[("since", "2999-01-01T00:00:00+02:00")]).await).len(), 0);
}

#[sqlx::test(migrations = "../../migrations")]
async fn pages_cover_every_event_once_newest_first(pool: PgPool) {
    let api = TestApi::new(pool);
    let token = api.access_token(api.user("alice").await);
    for batch in 0..3 {
        let events: Vec<Value> = (0..7).map(|i| event_json(&format!("{batch}-{i}"), "info")).collect();
        api.call(Rest::post("/api/events/batch").bearer(&token).json(&json!({ "events": events }))).await;
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "4")];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor));
        }
        let reply = api.call(Rest::get("/api/events").bearer(&token).query(&query)).await;
        assert_eq!(reply.status, StatusCode::OK);
        seen.extend(titles(&reply));
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }

    let expected: Vec<String> = (0..3).rev().flat_map(|b| (0..7).rev().map(move |i| format!("{b}-{i}"))).collect();
    assert_eq!(seen, expected);
}

#[sqlx::test(migrations = "../../migrations")]
async fn bad_list_parameters_are_400s_naming_them(pool: PgPool) {
    let api = TestApi::new(pool);
    let token = api.access_token(api.user("alice").await);
    // (query, expected error code, expected field)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (vec![("limit", "0")], "invalid_field", Some("limit")),
        (vec![("limit", "501")], "invalid_field", Some("limit")),
        (vec![("limit", "ten")], "invalid_field", Some("limit")),
        (vec![("status", "fatal")], "invalid_field", Some("status")),
        (vec![("since", "last tuesday")], "invalid_field", Some("since")),
        (vec![("until", "2026-13-01T00:00:00Z")], "invalid_field", Some("until")),
        (vec![("cursor", "bm9wZQ")], "invalid_field", Some("cursor")),
        (vec![("colour", "red")], "invalid_query", None),
    ];
    for (query, code, field) in cases {
        let reply = api.call(Rest::get("/api/events").bearer(&token).query(&query)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query:?}");
        assert_eq!(reply.error(), (code, field), "{query:?}: {:?}", reply.body);
    }
    let reply = api.call(Rest::get("/api/events").bearer(&token).query(&[("limit", "500")])).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[sqlx::test(migrations = "../../migrations")]
async fn one_event_is_read_back_with_its_pipeline_state(pool: PgPool) {
    let api = TestApi::new(pool);
    let token = api.access_token(api.user("alice").await);
    let created = api.call(Rest::post("/api/events").bearer(&token).json(&event_json("t", "warning"))).await;
    let id = created.body["id"].as_str().unwrap();

    let reply = api.call(Rest::get(&format!("/api/events/{id}")).bearer(&token)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, created.body);
    assert_eq!(reply.body["pipeline_state"], "received");

    let missing = api.call(Rest::get(&format!("/api/events/{}", Uuid::now_v7())).bearer(&token)).await;
    assert_eq!((missing.status, missing.error().0), (StatusCode::NOT_FOUND, "not_found"));
    let malformed = api.call(Rest::get("/api/events/42").bearer(&token)).await;
    assert_eq!((malformed.status, malformed.error()), (StatusCode::BAD_REQUEST, ("invalid_field", Some("id"))));
    let anonymous = api.call(Rest::get(&format!("/api/events/{id}"))).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

// ---------- routing, health, failures ----------

#[sqlx::test(migrations = "../../migrations")]
async fn unknown_routes_and_methods_answer_json_404_and_405(pool: PgPool) {
    let api = TestApi::new(pool);
    let reply = api.call(Rest::get("/api/nothing-here")).await;
    assert_eq!((reply.status, reply.error().0), (StatusCode::NOT_FOUND, "not_found"));
    let reply = api.call(Rest::new("DELETE", "/api/events")).await;
    assert_eq!((reply.status, reply.error().0), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
    let reply = api.call(Rest::get("/api/token")).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[sqlx::test(migrations = "../../migrations")]
async fn health_needs_no_token_and_reports_the_database(pool: PgPool) {
    let api = TestApi::new(pool);
    let reply = api.call(Rest::get("/api/health")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({ "status": "ok", "database": "ok" }));

    // Port 1 is closed: the database is unreachable.
    let unreachable = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(1))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let reply = TestApi::new(unreachable).call(Rest::get("/api/health")).await;
    assert_eq!((reply.status, reply.error().0), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_database_failure_is_a_500_that_reveals_nothing(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    let token = api.access_token(api.user("alice").await);
    sqlx::query("ALTER TABLE events RENAME TO events_gone").execute(&pool).await.unwrap();

    let reply = api.call(Rest::get("/api/events").bearer(&token)).await;

    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.body, json!({ "error": { "code": "internal", "message": "internal error", "field": null } }));
}

// ---------- hostile input ----------

#[sqlx::test(migrations = "../../migrations")]
async fn nul_anywhere_a_direction_control_in_source_or_data_after_the_json_is_a_400_that_stores_nothing(pool: PgPool) {
    let api = TestApi::new(pool);
    let token = api.access_token(api.user("alice").await);
    let event = |extra: Value| {
        let mut body = event_json("t", "info");
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        Rest::post("/api/events").json(&body)
    };
    let cases: Vec<(&str, Rest, &str, Option<&str>)> = vec![
        ("NUL in description", event(json!({ "description": "a\u{0}b" })), "invalid_field", Some("description")),
        ("NUL in source", event(json!({ "source": "web\u{0}1" })), "invalid_field", Some("source")),
        ("override in source", event(json!({ "source": "web\u{202E}1" })), "invalid_field", Some("source")),
        ("isolate in source", event(json!({ "source": "\u{2067}web" })), "invalid_field", Some("source")),
        ("control in source", event(json!({ "source": "web\u{1b}[2J" })), "invalid_field", Some("source")),
        (
            "NUL in an attribute key",
            event(json!({ "attributes": { "k\u{0}": 1 } })),
            "invalid_field",
            Some("attributes"),
        ),
        (
            "NUL deep in an attribute value",
            event(json!({ "attributes": { "k": [{ "v": "x\u{0}" }] } })),
            "invalid_field",
            Some("attributes"),
        ),
        (
            "NUL in a batch",
            Rest::post("/api/events/batch").json(
                &json!({ "events": [event_json("ok", "info"), { "title": "t", "status": "info", "source": "\u{0}" }] }),
            ),
            "invalid_field",
            Some("events[1].source"),
        ),
        (
            "text after the JSON",
            Rest::post("/api/events").raw_body("application/json", r#"{"title": "t", "status": "info"} xyz"#),
            "malformed_json",
            None,
        ),
        (
            "a second JSON value",
            Rest::post("/api/events")
                .raw_body("application/json", r#"{"title": "t", "status": "info"}{"title": "u", "status": "info"}"#),
            "malformed_json",
            None,
        ),
        (
            "a batch with a stray bracket",
            Rest::post("/api/events/batch")
                .raw_body("application/json", r#"{"events": [{"title": "t", "status": "info"}]}]"#),
            "malformed_json",
            None,
        ),
        ("NUL in q", Rest::get("/api/events").query(&[("q", "disk\u{0}")]), "invalid_field", Some("q")),
        (
            "NUL in the source filter",
            Rest::get("/api/events").query(&[("source", "\u{0}")]),
            "invalid_field",
            Some("source"),
        ),
    ];

    for (case, request, code, field) in cases {
        let reply = api.call(request.bearer(&token)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{case}: {:?}", reply.body);
        assert_eq!(reply.error(), (code, field), "{case}: {:?}", reply.body);
        assert!(reply.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{case}");
    }
    assert_eq!(api.event_count().await, 0);

    let trailing_whitespace =
        Rest::post("/api/events").raw_body("application/json", "{\"title\": \"t\", \"status\": \"info\"} \r\n\t");
    assert_eq!(api.call(trailing_whitespace.bearer(&token)).await.status, StatusCode::CREATED);
    let overridden_title = api.call(event(json!({ "title": "paid \u{202E}gpj.exe" })).bearer(&token)).await;
    assert_eq!(overridden_title.status, StatusCode::CREATED, "titles are people's text; alert mail neutralises them");
    assert_eq!(overridden_title.body["title"], "paid \u{202E}gpj.exe");
    assert_eq!(api.event_count().await, 2);
}

/// `fixture` with header `name` set to `value`, replacing any spelling of it in either header map.
fn with_header(fixture: &Value, name: &str, value: &str) -> Value {
    let mut event = fixture.clone();
    for (map, value) in [("headers", json!(value)), ("multiValueHeaders", json!([value]))] {
        if let Some(headers) = event.get_mut(map).and_then(Value::as_object_mut) {
            headers.retain(|key, _| !key.eq_ignore_ascii_case(name));
            headers.insert(name.into(), value);
        }
    }
    event
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_header_http_cannot_carry_gets_a_json_400_instead_of_an_invocation_error(pool: PgPool) {
    let api = TestApi::new(pool);
    let bearer = format!("Bearer {}", api.access_token(api.user("alice").await));
    for (stored, fixture) in [REST_FIXTURE, HTTP_FIXTURE].into_iter().enumerate() {
        let authorised = with_header(&serde_json::from_str(fixture).unwrap(), "Authorization", &bearer);
        for (name, value) in [
            ("X-Note", "a\u{1}b"),
            ("X-Note", "a\r\nX-Injected: 1"),
            ("X-Note", "a\u{0}b"),
            ("Idempotency-Key", "key\u{0}"),
            ("Host", "exa mple.com"),
        ] {
            let answer = api.invoke(&with_header(&authorised, name, value)).await;
            let case = format!("{name}: {value:?} in {}", authorised["version"]);
            assert_eq!(answer["statusCode"], 400, "{case}: {answer}");
            assert_eq!(answer["headers"]["content-type"], "application/json", "{case}: {answer}");
            let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "malformed_request", "{case}: {body}");
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{case}");
        }
        assert_eq!(api.event_count().await, stored as i64);

        let answer = api.invoke(&authorised).await;
        assert_eq!(answer["statusCode"], 201, "the same event with clean headers: {answer}");
    }
    assert_eq!(api.event_count().await, 2);
}
