//! `byteport users add --operator` and `byteport tokens create/list/revoke`
//! through the real binary against a fresh home.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn byteport(home: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_byteport"))
        .args(args)
        .env("BYTEPORT_HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[tokio::test]
async fn operators_and_tokens_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let o = byteport(
        home,
        &["users", "add", "root", "--operator"],
        "a long password\n",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out(&o).contains("created operator root"));
    let o = byteport(home, &["users", "add", "alice"], "another password\n");
    assert!(out(&o).contains("created user alice"));

    let o = byteport(home, &["tokens", "create", "alice", "--label", "ci"], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let token = out(&o).trim().to_string();
    assert!(token.starts_with("bpt_"), "{token}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("shown once"));
    let id = token.split('_').nth(1).unwrap().to_string();
    let o = byteport(home, &["tokens", "create", "root", "--metrics"], "");
    assert!(o.status.success());
    let o = byteport(home, &["tokens", "create", "nobody"], "");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));

    let o = byteport(home, &["tokens", "list"], "");
    let listed = out(&o);
    assert!(
        listed.contains(&id) && listed.contains("api") && listed.contains("metrics"),
        "{listed}"
    );
    assert!(!listed.contains(&token), "the secret is never listed");

    // The store agrees: alice's token works, root is an operator; revoked is dead.
    let url = format!("sqlite://{}?mode=rwc", home.join("state.db").display());
    let store = platform::store::Store::open(&url, home).await.unwrap();
    assert!(store.is_operator("root").await.unwrap());
    assert!(!store.is_operator("alice").await.unwrap());
    assert_eq!(
        store.verify_token(&token).await.unwrap().unwrap().user,
        "alice"
    );
    let o = byteport(home, &["tokens", "revoke", &id], "");
    assert!(o.status.success());
    assert!(store.verify_token(&token).await.unwrap().is_none());
    let o = byteport(home, &["tokens", "revoke", &id], "");
    assert!(!o.status.success(), "revoking twice is an error");
}
