//! The SQLite store through its trait: every entity written, read, changed and deleted; a reopen
//! keeps everything; usage inserts are idempotent; secrets never reach the database file; a
//! store opened with another encryption key is refused.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use std::collections::BTreeMap;
use std::path::Path;

use subrelay::domain::Secret;
use subrelay::domain::{AccountCredential, AccountKind, AccountSpec, Platform, Protocol};
use subrelay::store::accounts::{to_record, to_spec};
use subrelay::store::crypto::Sealer;
use subrelay::store::keys::KeyHasher;
use subrelay::store::sqlite::SqliteStore;
use subrelay::store::{
    GroupRecord, GroupSettingsRecord, KeyRecord, Source, Store, StoreError, TotalsBy, UsageFilter,
    UsageRow,
};

const RAW_KEY: &str = "sk-sr-rawkeythatmustneverbestored0123456789";
const ACCESS: &str = "upstream-access-token-secret-abcdef";
const REFRESH: &str = "upstream-refresh-token-secret-ghijkl";
const PROXY: &str = "socks5://user:proxy-password-secret@127.0.0.1:1080";

fn key(hasher: &KeyHasher, name: &str) -> KeyRecord {
    KeyRecord {
        name: name.into(),
        key_hash: hasher.hex_digest(RAW_KEY),
        prefix: "sk-sr-ra".into(),
        suffix: "6789".into(),
        group: "default".into(),
        enabled: true,
        expires_at: Some(2_000_000_000),
        concurrency: 2,
        rpm_limit: 60,
        daily_spend_limit: Some(1.5),
        monthly_spend_limit: None,
        allowed_models: Some(vec!["gpt-5".into(), "gpt-5-mini".into()]),
        source: Source::Admin,
        created_at: 1_700_000_000,
    }
}

fn account() -> AccountSpec {
    AccountSpec {
        name: "codex-1".into(),
        platform: Platform::OpenAi,
        kind: AccountKind::OAuth,
        credential: AccountCredential::OAuth {
            access_token: Secret::new(ACCESS),
            refresh_token: Some(Secret::new(REFRESH)),
            chatgpt_account_id: Some("acct-1".into()),
            expires_at: None,
        },
        base_url: "https://chatgpt.com/backend-api/codex".into(),
        priority: 3,
        concurrency: 4,
        groups: vec!["default".into()],
        enabled: true,
        models: Some(vec!["gpt-5".into()]),
        model_map: BTreeMap::from([("fast".to_owned(), "gpt-5-mini".to_owned())]),
        proxy: Some(Secret::new(PROXY)),
        protocols: Some(vec![Protocol::Responses]),
    }
}

fn usage(id: &str, key: &str, at_ms: i64, cost: f64) -> UsageRow {
    UsageRow {
        request_id: id.into(),
        at_ms,
        key: key.into(),
        account: Some("codex-1".into()),
        endpoint: "responses".into(),
        model: "gpt-5".into(),
        client_model: (cost >= 1.0).then(|| "gpt-5.5".into()),
        stream: true,
        status: 200,
        success: true,
        input_tokens: 100,
        cached_input_tokens: 10,
        cache_creation_tokens: 0,
        output_tokens: 20,
        reasoning_tokens: 5,
        cost_usd: cost,
        priced: true,
        duration_ms: 1200,
        ttft_ms: Some(300),
        attempts: 1,
        client_disconnected: false,
        transport: "http".to_owned(),
    }
}

/// Every byte of the database and its WAL.
fn database_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("subrelay.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn groups_are_created_replaced_listed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let mut group = GroupRecord {
        name: "claude".into(),
        platform: Platform::Anthropic,
        source: Source::Admin,
        created_at: 1,
        settings: GroupSettingsRecord::default(),
    };
    store.upsert_group(&group).await.unwrap();
    assert_eq!(store.list_groups().await.unwrap(), vec![group.clone()]);
    // The routing settings are replaced with the row, maps and all.
    group.source = Source::Config;
    group.settings = GroupSettingsRecord {
        translate: true,
        model_map: BTreeMap::from([("claude-*".to_owned(), "gpt-5.1-codex".to_owned())]),
        model_fallback: BTreeMap::from([(
            "gpt-5.1-codex".to_owned(),
            vec!["gpt-5.1-codex-mini".to_owned()],
        )]),
    };
    store.upsert_group(&group).await.unwrap();
    assert_eq!(store.list_groups().await.unwrap(), vec![group]);
    store.delete_group("claude").await.unwrap();
    assert!(store.list_groups().await.unwrap().is_empty());
    assert!(matches!(
        store.delete_group("claude").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn keys_are_stored_as_hashes_updated_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let hasher = KeyHasher::new([3; 32]);
    let mut record = key(&hasher, "alice");
    store.insert_key(&record).await.unwrap();
    assert!(matches!(
        store.insert_key(&record).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.list_keys().await.unwrap(), vec![record.clone()]);

    record.enabled = false;
    record.rpm_limit = 5;
    record.allowed_models = None;
    record.monthly_spend_limit = Some(30.0);
    store.update_key(&record).await.unwrap();
    assert_eq!(store.list_keys().await.unwrap(), vec![record.clone()]);

    store.delete_key("alice").await.unwrap();
    assert!(store.list_keys().await.unwrap().is_empty());
    assert!(matches!(
        store.update_key(&record).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn accounts_round_trip_with_sealed_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let sealer = Sealer::new(&[5; 32]);
    let record = to_record(&account(), Source::Admin, &sealer).unwrap();
    store.insert_account(&record).await.unwrap();
    let listed = store.list_accounts().await.unwrap();
    assert_eq!(listed, vec![record.clone()]);
    let spec = to_spec(&listed[0], &sealer).unwrap();
    let AccountCredential::OAuth {
        access_token,
        refresh_token,
        chatgpt_account_id,
        ..
    } = &spec.credential
    else {
        panic!("an oauth account came back as {:?}", spec.kind);
    };
    assert_eq!(access_token.expose(), ACCESS);
    assert_eq!(refresh_token.as_ref().unwrap().expose(), REFRESH);
    assert_eq!(chatgpt_account_id.as_deref(), Some("acct-1"));
    assert_eq!(spec.proxy.as_ref().unwrap().expose(), PROXY);
    assert_eq!(spec.model_map["fast"], "gpt-5-mini");
    assert_eq!((spec.priority, spec.concurrency), (3, 4));
    assert_eq!(spec.protocols, Some(vec![Protocol::Responses]));

    // Sealed to its row: another key, or the blob under another name, does not open.
    assert!(to_spec(&listed[0], &Sealer::new(&[6; 32])).is_err());
    let mut moved = listed[0].clone();
    moved.name = "other".into();
    assert!(to_spec(&moved, &sealer).is_err());

    let mut changed = record.clone();
    changed.enabled = false;
    store.upsert_account(&changed).await.unwrap();
    assert!(!store.list_accounts().await.unwrap()[0].enabled);
    store.delete_account("codex-1").await.unwrap();
    assert!(store.list_accounts().await.unwrap().is_empty());
}

#[tokio::test]
async fn usage_is_idempotent_filtered_paginated_and_totalled() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let day = 86_400_000;
    let rows = vec![
        usage("req_1", "alice", 10 * day + 1, 0.5),
        usage("req_2", "alice", 10 * day + 2, 0.25),
        usage("req_3", "bob", 11 * day + 3, 1.0),
    ];
    assert_eq!(store.insert_usage(&rows).await.unwrap(), 3);
    // The same request ids again (a replayed spool): nothing new.
    assert_eq!(store.insert_usage(&rows).await.unwrap(), 0);
    let all = UsageFilter::default();
    assert_eq!(store.count_usage(&all).await.unwrap(), 3);

    let page = store.list_usage(&all, 2, 0).await.unwrap();
    assert_eq!(
        page.iter()
            .map(|r| r.request_id.as_str())
            .collect::<Vec<_>>(),
        ["req_3", "req_2"]
    );
    assert_eq!(page[0], rows[2]);
    let next = store.list_usage(&all, 2, 2).await.unwrap();
    assert_eq!(next.len(), 1);

    let alice = UsageFilter {
        key: Some("alice".into()),
        ..UsageFilter::default()
    };
    assert_eq!(store.count_usage(&alice).await.unwrap(), 2);
    let window = UsageFilter {
        from_ms: Some(10 * day + 2),
        to_ms: Some(11 * day + 3),
        ..UsageFilter::default()
    };
    assert_eq!(store.count_usage(&window).await.unwrap(), 1);

    let by_key = store.usage_totals(&all, TotalsBy::Key).await.unwrap();
    assert_eq!(by_key.len(), 2);
    assert_eq!(
        (by_key[0].bucket.as_str(), by_key[0].requests),
        ("alice", 2)
    );
    assert!((by_key[0].cost_usd - 0.75).abs() < 1e-9);
    let by_day = store.usage_totals(&all, TotalsBy::Day).await.unwrap();
    assert_eq!(
        by_day.iter().map(|t| t.bucket.as_str()).collect::<Vec<_>>(),
        ["1970-01-11", "1970-01-12"]
    );
    let spend = store.spend_since(11 * day).await.unwrap();
    assert_eq!(spend, vec![("bob".to_owned(), 1.0)]);
}

#[tokio::test]
async fn a_reopened_store_keeps_everything_and_holds_no_secret_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let hasher = KeyHasher::new([3; 32]);
    let sealer = Sealer::new(&[5; 32]);
    {
        let store = SqliteStore::open(dir.path()).await.unwrap();
        sealer.verify(&store).await.unwrap();
        store
            .upsert_group(&GroupRecord {
                name: "default".into(),
                platform: Platform::OpenAi,
                source: Source::Config,
                created_at: 1,
                settings: GroupSettingsRecord::default(),
            })
            .await
            .unwrap();
        store.insert_key(&key(&hasher, "alice")).await.unwrap();
        store
            .insert_account(&to_record(&account(), Source::Admin, &sealer).unwrap())
            .await
            .unwrap();
        store
            .insert_usage(&[usage("req_1", "alice", 5, 0.1)])
            .await
            .unwrap();
        // Before close: the WAL holds the rows too; neither file may hold a secret.
        let bytes = database_bytes(dir.path());
        for secret in [RAW_KEY, ACCESS, REFRESH, "proxy-password-secret"] {
            assert!(!contains(&bytes, secret), "{secret} is in the database");
        }
        store.close().await;
    }
    let bytes = database_bytes(dir.path());
    assert!(contains(&bytes, "alice"), "the check itself must see rows");
    for secret in [RAW_KEY, ACCESS, REFRESH, "proxy-password-secret"] {
        assert!(!contains(&bytes, secret), "{secret} is in the database");
    }

    let store = SqliteStore::open(dir.path()).await.unwrap();
    sealer.verify(&store).await.unwrap();
    assert_eq!(store.list_groups().await.unwrap().len(), 1);
    assert_eq!(
        store.list_keys().await.unwrap(),
        vec![key(&hasher, "alice")]
    );
    let accounts = store.list_accounts().await.unwrap();
    assert_eq!(
        to_spec(&accounts[0], &sealer)
            .unwrap()
            .credential
            .bearer()
            .expose(),
        ACCESS
    );
    assert_eq!(store.count_usage(&UsageFilter::default()).await.unwrap(), 1);

    // Another key is refused before anything is read or written with it.
    let err = Sealer::new(&[9; 32]).verify(&store).await.unwrap_err();
    assert!(err.contains("does not match"), "{err}");
    assert_eq!(store.list_accounts().await.unwrap(), accounts);
}
