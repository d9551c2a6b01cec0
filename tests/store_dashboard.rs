//! The dashboard's rows on both backends (SQLite and a real PostgreSQL
//! started by the harness): sessions (revocable, expiring), API tokens
//! (hashed, shown once, revocable, scoped), the operator flag, SSH keys'
//! last use and per-user removal, secrets' update times.

mod support;

use platform::store::{token_hash, Store, StoreError, TokenScope};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICDkA31zzsJ+GveuiOShxwxvnGAMWnU9bigP+TVyTJ7c alice@laptop";
const FP: &str = "SHA256:PRY7B6eirUeF1p7xN4CFtngUbddBXG46xMLkOAGDseM";

async fn suite(url: &str, home: &std::path::Path) {
    let store = Store::open(url, home).await.expect("open store");
    store
        .add_user("alice", Some("correct horse"))
        .await
        .unwrap();
    store.add_user("bob", Some("battery staple")).await.unwrap();

    // Operators.
    assert!(!store.is_operator("alice").await.unwrap());
    store.set_operator("alice", true).await.unwrap();
    assert!(store.is_operator("alice").await.unwrap());
    assert!(!store.is_operator("nobody").await.unwrap());
    assert!(matches!(
        store.set_operator("nobody", true).await,
        Err(StoreError::NotFound { .. })
    ));

    // Sessions: the store keeps the token's hash, never the token.
    let s = store
        .create_session("alice", 60_000, Some("192.0.2.7"))
        .await
        .unwrap();
    assert_eq!(s.session.id_hash, token_hash(&s.token));
    assert_ne!(s.session.id_hash, s.token);
    let found = store.session(&s.token).await.unwrap().unwrap();
    assert_eq!(
        (found.user.as_str(), found.csrf.as_str()),
        ("alice", s.session.csrf.as_str())
    );
    assert!(
        store.session(&s.session.id_hash).await.unwrap().is_none(),
        "the hash is not a token"
    );
    assert!(store.session("garbage").await.unwrap().is_none());
    assert!(matches!(
        store.create_session("nobody", 1, None).await,
        Err(StoreError::NotFound { .. })
    ));
    let expired = store.create_session("alice", -1, None).await.unwrap();
    assert!(
        store.session(&expired.token).await.unwrap().is_none(),
        "expired"
    );
    let other = store.create_session("alice", 60_000, None).await.unwrap();
    assert_eq!(store.sessions_of("alice").await.unwrap().len(), 2);
    store.end_session(&s.token).await.unwrap();
    assert!(
        store.session(&s.token).await.unwrap().is_none(),
        "signed out"
    );
    // The expired row went when it was looked up; `other` is left.
    assert_eq!(store.end_sessions_of("alice").await.unwrap(), 1);
    assert!(store.session(&other.token).await.unwrap().is_none());

    // Tokens: shown once, verified by hash, scoped, revocable.
    let (t, secret) = store
        .create_token("bob", "ci", TokenScope::Api)
        .await
        .unwrap();
    assert!(secret.starts_with(&format!("bpt_{}_", t.id)));
    let v = store.verify_token(&secret).await.unwrap().unwrap();
    assert_eq!((v.user.as_str(), v.scope), ("bob", TokenScope::Api));
    let mut forged = secret.clone();
    forged.pop();
    forged.push(if secret.ends_with('0') { '1' } else { '0' });
    assert!(store.verify_token(&forged).await.unwrap().is_none());
    assert!(store.verify_token("bpt_nothing").await.unwrap().is_none());
    let (m, _) = store
        .create_token("bob", "prom", TokenScope::Metrics)
        .await
        .unwrap();
    assert_eq!(m.scope, TokenScope::Metrics);
    assert!(matches!(
        store.create_token("nobody", "x", TokenScope::Api).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .create_token("bob", "two\nlines", TokenScope::Api)
            .await,
        Err(StoreError::Invalid(_))
    ));
    let listed = store.list_tokens(Some("bob")).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[0].last_used_at.is_some(), "use recorded");
    let text = format!("{listed:?}");
    assert!(!text.contains(&secret[25..]), "no secret in listings");
    store.revoke_token(&secret).await.unwrap();
    assert!(
        store.verify_token(&secret).await.unwrap().is_none(),
        "revoked"
    );
    assert!(matches!(
        store.revoke_token(&t.id).await,
        Err(StoreError::NotFound { .. })
    ));

    // Keys: per-user listing with last use; removing another's key is "not found".
    store.add_key("alice", KEY).await.unwrap();
    assert!(store.keys_of("alice").await.unwrap()[0]
        .last_used_at
        .is_none());
    store.touch_key(FP).await.unwrap();
    assert!(store.keys_of("alice").await.unwrap()[0]
        .last_used_at
        .is_some());
    assert!(store.keys_of("bob").await.unwrap().is_empty());
    assert!(matches!(
        store.remove_key_of("bob", FP).await,
        Err(StoreError::NotFound { .. })
    ));
    store.remove_key_of("alice", FP).await.unwrap();
    assert!(store.keys_of("alice").await.unwrap().is_empty());

    // Secrets' names and times, never values.
    store.create_app("hello", "alice").await.unwrap();
    store
        .set_secret("hello", "API_KEY", "value-1")
        .await
        .unwrap();
    let info = store.secrets_info("hello").await.unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].name, "API_KEY");
    assert!(info[0].updated_at > 0);
    // The apps list's overview: a few queries, the same answers as per app.
    store.share_app("hello", "bob").await.unwrap();
    store.create_app("other", "bob").await.unwrap();
    let d1 = store
        .start_deploy("hello", "c1", "refs/heads/main", None, None)
        .await
        .unwrap();
    store.mark_live("hello", d1.number).await.unwrap();
    let d2 = store
        .start_deploy("hello", "c2", "refs/heads/main", None, None)
        .await
        .unwrap();
    store
        .fail_deploy("hello", d2.number, "build failed")
        .await
        .unwrap();
    let all = store.apps_overview(None).await.unwrap();
    assert_eq!(
        all.iter().map(|o| o.app.name.as_str()).collect::<Vec<_>>(),
        ["hello", "other"]
    );
    let mine = store.apps_overview(Some("alice")).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].live, Some((d1.number, "c1".to_string())));
    assert!(mine[0].latest_failed);
    assert!(mine[0].active.is_empty());
    assert_eq!(mine[0].app, store.app("hello").await.unwrap().unwrap());
    let bobs = store.apps_overview(Some("bob")).await.unwrap();
    assert_eq!(bobs.len(), 2, "owned and shared");
    assert_eq!(bobs[1].live, None);
    assert!(!bobs[1].latest_failed);
    store.close().await;
}

#[tokio::test]
async fn dashboard_rows_on_sqlite() {
    let home = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        home.path().join("state.db").display()
    );
    suite(&url, home.path()).await;
}

#[tokio::test]
async fn dashboard_rows_on_real_postgres() {
    let pg = support::postgres::PgServer::start();
    let home = tempfile::tempdir().unwrap();
    suite(&pg.url, home.path()).await;
}
