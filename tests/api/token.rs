//! `dossier token` (the real binary) mints tokens the server accepts; without SECRET_KEY it fails with one line.

use dossier::api::auth::Role;

use crate::support::api::{SECRET, TestApi, token};
use crate::support::{Backend, Scratch};

fn dossier_token(scratch: &Scratch, secret: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = scratch.dossier();
    command.env_remove("SECRET_KEY").arg("token").args(args);
    if let Some(secret) = secret {
        command.env("SECRET_KEY", secret);
    }
    command.output().expect("run dossier token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_command_mints_a_token_the_server_accepts_with_its_roles() {
    let scratch = Scratch::new(Backend::Embedded).await;
    let api = TestApi::start(&scratch).await;
    let output =
        dossier_token(&scratch, Some(SECRET), &["--sub", "ci", "--tenant", "acme", "--role", "writer", "--ttl", "5m"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let minted = String::from_utf8(output.stdout).expect("utf-8").trim().to_owned();
    assert_eq!(minted.split('.').count(), 3, "{minted}");
    let uploaded = api.upload_text(&minted, "a.txt", "from the CLI's token").await;
    assert_eq!(uploaded.status, 202, "{}", uploaded.text);
    api.get("/events", &minted).await.assert_problem(403, "forbidden");
    // The token of another secret is refused.
    let output = dossier_token(
        &scratch,
        Some("another-secret-another-secret-0000"),
        &["--sub", "x", "--tenant", "acme", "--role", "admin"],
    );
    let foreign = String::from_utf8(output.stdout).expect("utf-8").trim().to_owned();
    api.get("/documents", &foreign).await.assert_problem(401, "unauthenticated");
    assert_eq!(api.get("/documents", &token("a", "acme", &[Role::Reader])).await.status, 200);
    api.stop().await;
}

#[tokio::test]
async fn token_command_without_secret_or_with_bad_arguments_fails_with_one_line() {
    let scratch = Scratch::new(Backend::Embedded).await;
    let cases: [(Option<&str>, &[&str], &str); 4] = [
        (None, &["--sub", "a", "--tenant", "t", "--role", "admin"], "SECRET_KEY is not set"),
        (Some("short"), &["--sub", "a", "--tenant", "t", "--role", "admin"], "at least 32"),
        (Some(SECRET), &["--sub", "a", "--tenant", "t", "--role", "admin", "--ttl", "forever"], "--ttl"),
        (Some(SECRET), &["--sub", "", "--tenant", "t", "--role", "admin"], "--sub"),
    ];
    for (secret, args, expected) in cases {
        let output = dossier_token(&scratch, secret, args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(output.stdout.is_empty());
    }
    let unknown_role = dossier_token(&scratch, Some(SECRET), &["--sub", "a", "--tenant", "t", "--role", "root"]);
    assert_eq!(unknown_role.status.code(), Some(2), "clap refuses an unknown role");
}
