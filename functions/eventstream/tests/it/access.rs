//! Who may do what, and for how long: roles on every REST endpoint, the token version that
//! revocation bumps, refresh-token rotation and login lockout. Real PostgreSQL, API Gateway events.

use std::time::Duration;

use axum::http::StatusCode;
use eventstream::{auth::TokenKind, config::LoginThrottleConfig, domain::Role, store::PgUserStore};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{PASSWORD, Rest, TestApi, count, event_json};

fn from_client(mut request: Rest, address: &str) -> Rest {
    request.event["requestContext"]["identity"]["sourceIp"] = json!(address);
    request
}

/// Each REST endpoint behind a token, with the role it needs.
fn endpoints() -> Vec<(&'static str, Role, Rest)> {
    vec![
        ("POST /api/events", Role::Producer, Rest::post("/api/events").json(&event_json("role matrix", "info"))),
        (
            "POST /api/events/batch",
            Role::Producer,
            Rest::post("/api/events/batch").json(&json!({ "events": [event_json("role matrix", "info")] })),
        ),
        ("GET /api/events", Role::Analyst, Rest::get("/api/events")),
        ("GET /api/events/{id}", Role::Analyst, Rest::get(&format!("/api/events/{}", Uuid::now_v7()))),
    ]
}

#[sqlx::test(migrations = "../../migrations")]
async fn every_endpoint_serves_its_role_and_answers_403_to_every_other(pool: PgPool) {
    let api = TestApi::new(pool);
    for (index, held) in [&[Role::Producer][..], &[Role::Analyst], &[Role::Admin], &[]].into_iter().enumerate() {
        let user = api.user_with_roles(&format!("user-{index}"), held).await;
        let token = api.token(user, held, TokenKind::Access);
        for (endpoint, needed, request) in endpoints() {
            let stored_before = api.event_count().await;
            let reply = api.call(request.bearer(&token)).await;
            if held.contains(&needed) {
                assert!(
                    reply.status.is_success() || reply.status == StatusCode::NOT_FOUND,
                    "{endpoint} {held:?}: {reply:?}"
                );
            } else {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{endpoint} with {held:?}: {reply:?}");
                assert_eq!(reply.error().0, "forbidden", "{endpoint}");
                assert!(reply.body["error"]["message"].as_str().unwrap().contains(needed.as_str()));
                assert_eq!(api.event_count().await, stored_before, "{endpoint}: a refused write stored nothing");
            }
        }
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_login_carries_the_users_roles_and_version_into_its_tokens(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    api.user_with_roles("dag", &[Role::Producer]).await;

    let pair = api.call(Rest::login("dag", PASSWORD)).await;
    assert_eq!(pair.status, StatusCode::OK, "{:?}", pair.body);
    let access = pair.body["access"].as_str().unwrap();
    let claims = api.tokens.verify(access, TokenKind::Access).unwrap();
    assert_eq!((claims.roles, claims.ver), (vec![Role::Producer], 1));

    let post = api.call(Rest::post("/api/events").bearer(access).json(&event_json("from the dag", "info"))).await;
    assert_eq!(post.status, StatusCode::CREATED);
    let read = api.call(Rest::get("/api/events").bearer(access)).await;
    assert_eq!(read.status, StatusCode::FORBIDDEN, "a producer does not read");
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_token_of_a_deleted_deactivated_or_signed_out_user_is_a_401_never_a_500(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    let users = PgUserStore::new(pool.clone());
    let post = |token: &str| api.call(Rest::post("/api/events").bearer(token).json(&event_json("revoked", "error")));

    let ghost = api.user("ghost").await;
    let token = api.access_token(ghost);
    sqlx::query("DELETE FROM users WHERE id = $1").bind(ghost).execute(&pool).await.unwrap();
    let reply = post(&token).await;
    assert_eq!((reply.status, reply.error().0), (StatusCode::UNAUTHORIZED, "invalid_token"), "deleted");

    let never_existed = api.access_token(Uuid::now_v7());
    assert_eq!(post(&never_existed).await.status, StatusCode::UNAUTHORIZED, "unknown user");

    for (username, revoke) in [("deactivated", 0), ("new-password", 1), ("signed-out", 2), ("demoted", 3)] {
        let user = api.user(username).await;
        let token = api.access_token(user);
        assert_eq!(post(&token).await.status, StatusCode::CREATED, "{username} before");
        match revoke {
            0 => users.set_active(username, false).await.unwrap(),
            1 => users
                .set_password(username, &eventstream::auth::hash_password("another password").unwrap())
                .await
                .unwrap(),
            2 => users.end_sessions(username).await.unwrap(),
            _ => drop(users.revoke(username, &[Role::Admin]).await.unwrap()),
        }
        let reply = post(&token).await;
        assert_eq!((reply.status, reply.error().0), (StatusCode::UNAUTHORIZED, "invalid_token"), "{username} after");
    }
    assert_eq!(api.event_count().await, 4, "only the posts before revocation were stored");
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_refresh_token_rotates_and_a_reused_one_revokes_its_login(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    api.user("alice").await;
    let first = api.call(Rest::login("alice", PASSWORD)).await.body;
    let other_login = api.call(Rest::login("alice", PASSWORD)).await.body;

    let second = api.call(Rest::refresh(&first["refresh"])).await;
    assert_eq!(second.status, StatusCode::OK, "{:?}", second.body);
    assert_ne!(second.body["refresh"], first["refresh"], "a new refresh token each time");
    let listed = api.call(Rest::get("/api/events").bearer(second.body["access"].as_str().unwrap())).await;
    assert_eq!(listed.status, StatusCode::OK);

    let replayed = api.call(Rest::refresh(&first["refresh"])).await;
    assert_eq!((replayed.status, replayed.error().0), (StatusCode::UNAUTHORIZED, "refresh_token_reused"));
    let after_theft = api.call(Rest::refresh(&second.body["refresh"])).await;
    assert_eq!(after_theft.status, StatusCode::UNAUTHORIZED, "the whole login is revoked");

    let elsewhere = api.call(Rest::refresh(&other_login["refresh"])).await;
    assert_eq!(elsewhere.status, StatusCode::OK, "another login of the same user is untouched");
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_password_change_or_sign_out_ends_refresh_tokens_too(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    let users = PgUserStore::new(pool.clone());
    api.user("alice").await;
    let before = api.call(Rest::login("alice", PASSWORD)).await.body;
    users.end_sessions("alice").await.unwrap();
    let reply = api.call(Rest::refresh(&before["refresh"])).await;
    assert_eq!((reply.status, reply.error().0), (StatusCode::UNAUTHORIZED, "invalid_token"));

    let before = api.call(Rest::login("alice", PASSWORD)).await.body;
    users.set_password("alice", &eventstream::auth::hash_password("a new password").unwrap()).await.unwrap();
    assert_eq!(api.call(Rest::refresh(&before["refresh"])).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.call(Rest::login("alice", "a new password")).await.status, StatusCode::OK);
}

fn throttle() -> LoginThrottleConfig {
    LoginThrottleConfig {
        max_failures_per_username: 3,
        max_failures_per_client: 5,
        window: Duration::from_secs(60),
        lockout: Duration::from_secs(60),
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn failed_logins_lock_the_username_even_for_the_right_password(pool: PgPool) {
    let api = TestApi::with_throttle(pool.clone(), throttle());
    api.user("alice").await;
    api.user("bob").await;
    // Each guess from another address, so only the username's count can lock.
    for attempt in 0..3 {
        let reply = api.call(from_client(Rest::login("alice", "guess"), &format!("198.51.100.{attempt}"))).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let locked = api.call(from_client(Rest::login("alice", PASSWORD), "198.51.100.9")).await;
    assert_eq!((locked.status, locked.error().0), (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"));
    let retry_after: u64 = locked.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    let bob = api.call(from_client(Rest::login("bob", PASSWORD), "198.51.100.9")).await;
    assert_eq!(bob.status, StatusCode::OK, "another username is not locked");

    sqlx::query("UPDATE login_failures SET locked_until = now() - interval '1 second'").execute(&pool).await.unwrap();
    let after = api.call(from_client(Rest::login("alice", PASSWORD), "198.51.100.9")).await;
    assert_eq!(after.status, StatusCode::OK, "the lock ends");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM login_failures WHERE scope = 'username'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "a successful login forgets the username's failures");
}

#[sqlx::test(migrations = "../../migrations")]
async fn failed_logins_lock_the_client_across_usernames(pool: PgPool) {
    let api = TestApi::with_throttle(pool, throttle());
    api.user("alice").await;
    for attempt in 0..5 {
        let reply = api.call(from_client(Rest::login(&format!("guess-{attempt}"), "guess"), "192.0.2.7")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let locked = api.call(from_client(Rest::login("alice", PASSWORD), "192.0.2.7")).await;
    assert_eq!((locked.status, locked.error().0), (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"));
    let elsewhere = api.call(from_client(Rest::login("alice", PASSWORD), "192.0.2.8")).await;
    assert_eq!(elsewhere.status, StatusCode::OK, "another client is not locked");
}

#[sqlx::test(migrations = "../../migrations")]
async fn login_input_that_cannot_be_a_username_is_a_400_and_counts_nothing(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    for username in ["", "nul\u{0}byte", &"x".repeat(151), "line\nbreak"] {
        let reply = api.call(Rest::login(username, "whatever")).await;
        assert_eq!((reply.status, reply.error()), (StatusCode::BAD_REQUEST, ("invalid_field", Some("username"))));
    }
    for password in ["p".repeat(2_000), "nul\0byte".to_string()] {
        let refused = api.call(Rest::login("alice", &password)).await;
        assert_eq!(refused.error(), ("invalid_field", Some("password")));
    }
    assert_eq!(count(&pool, "login_failures").await, 0);
}
