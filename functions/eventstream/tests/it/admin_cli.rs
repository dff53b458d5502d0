//! `eventstream-admin` as an operator runs it: a real process, a real database, the password on stdin.

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use axum::http::StatusCode;
use sqlx::PgPool;

use crate::helpers::{Rest, TestApi, count};

/// The URL of the database `#[sqlx::test]` made for this test.
fn database_url(pool: &PgPool) -> String {
    let options = pool.connect_options();
    let base = std::env::var("DATABASE_URL").expect("tests run with DATABASE_URL set");
    let (server, _) = base.rsplit_once('/').expect("DATABASE_URL names a database");
    format!("{server}/{}", options.get_database().expect("the test database has a name"))
}

fn admin(pool: &PgPool, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventstream-admin"))
        .args(args)
        .env("DATABASE_URL", database_url(pool))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

async fn login_status(api: &TestApi, username: &str, password: &str) -> StatusCode {
    api.call(Rest::login(username, password)).await.status
}

#[sqlx::test(migrations = false)]
async fn migrate_then_create_user_gives_a_user_who_can_log_in(pool: PgPool) {
    let migrated = admin(&pool, &["migrate"], "");
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    let again = admin(&pool, &["migrate"], "");
    assert!(again.status.success(), "migrating twice is harmless");

    let created = admin(&pool, &["create-user", "ops"], "s3cret-pass\n");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert!(String::from_utf8_lossy(&created.stdout).starts_with("created user ops"));

    let api = TestApi::new(pool.clone());
    assert_eq!(login_status(&api, "ops", "s3cret-pass").await, StatusCode::OK);
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users").fetch_one(&pool).await.unwrap();
    assert!(stored.starts_with("$argon2id$") && !stored.contains("s3cret-pass"));
}

#[sqlx::test(migrations = "../../migrations")]
async fn set_password_deactivate_and_activate_take_effect(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    assert!(admin(&pool, &["create-user", "ops"], "first-password\n").status.success());

    assert!(admin(&pool, &["set-password", "ops"], "second-password\n").status.success());
    assert_eq!(login_status(&api, "ops", "first-password").await, StatusCode::UNAUTHORIZED);
    assert_eq!(login_status(&api, "ops", "second-password").await, StatusCode::OK);

    assert!(admin(&pool, &["deactivate", "ops"], "").status.success());
    assert_eq!(login_status(&api, "ops", "second-password").await, StatusCode::UNAUTHORIZED);
    assert!(admin(&pool, &["activate", "ops"], "").status.success());
    assert_eq!(login_status(&api, "ops", "second-password").await, StatusCode::OK);
}

#[sqlx::test(migrations = "../../migrations")]
async fn mistakes_fail_with_a_message_and_change_nothing(pool: PgPool) {
    assert!(admin(&pool, &["create-user", "ops"], "first-password\n").status.success());
    let cases: [(&[&str], &str, &str); 5] = [
        (&["create-user", "ops"], "another-password\n", "already exists"),
        (&["create-user", "new user"], "a-fine-password\n", "without spaces"),
        (&["create-user", "newbie"], "short\n", "between 8 and 1024"),
        (&["create-user", "newbie"], "", "no password"),
        (&["deactivate", "ghost"], "", "no user named"),
    ];
    for (args, stdin, message) in cases {
        let output = admin(&pool, args, stdin);
        assert!(!output.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert_eq!(count(&pool, "users").await, 1);
    let api = TestApi::new(pool);
    assert_eq!(login_status(&api, "ops", "first-password").await, StatusCode::OK);
}

#[test]
fn a_missing_database_url_is_named() {
    let output = Command::new(env!("CARGO_BIN_EXE_eventstream-admin"))
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("DATABASE_URL is not set"));
}

#[sqlx::test(migrations = "../../migrations")]
async fn roles_are_granted_and_revoked_and_sign_out_ends_every_token(pool: PgPool) {
    let api = TestApi::new(pool.clone());
    let created = admin(&pool, &["create-user", "dag", "--role", "producer"], "dag-password\n");
    assert!(String::from_utf8_lossy(&created.stdout).contains("with roles [producer]"), "{created:?}");
    let refused = admin(&pool, &["grant", "dag", "root"], "");
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("not a role"));

    let granted = admin(&pool, &["grant", "dag", "analyst", "admin"], "");
    assert!(String::from_utf8_lossy(&granted.stdout).contains("[admin, analyst, producer]"), "{granted:?}");
    let pair = api.call(Rest::login("dag", "dag-password")).await;
    let access = pair.body["access"].as_str().unwrap().to_string();
    assert_eq!(api.call(Rest::get("/api/events").bearer(&access)).await.status, StatusCode::OK);

    let revoked = admin(&pool, &["revoke", "dag", "analyst"], "");
    assert!(String::from_utf8_lossy(&revoked.stdout).contains("[admin, producer]"), "{revoked:?}");
    assert_eq!(api.call(Rest::get("/api/events").bearer(&access)).await.status, StatusCode::UNAUTHORIZED);

    let pair = api.call(Rest::login("dag", "dag-password")).await;
    assert_eq!(
        api.call(Rest::get("/api/events").bearer(pair.body["access"].as_str().unwrap())).await.status,
        StatusCode::FORBIDDEN
    );
    assert!(admin(&pool, &["sign-out", "dag"], "").status.success());
    let refresh = api.call(Rest::refresh(&pair.body["refresh"])).await;
    assert_eq!(refresh.status, StatusCode::UNAUTHORIZED);
    assert!(!admin(&pool, &["sign-out", "ghost"], "").status.success());
}
