//! The PostgreSQL store (`storage.backend: postgres`): the `Store` trait against both backends,
//! migrations under concurrent starts, and instances of the real binary sharing one database —
//! keys and usage shared, no usage row lost or doubled by a SIGKILL or a PostgreSQL restart,
//! admin writes answering 503 while it is down, and `subrelay store copy` from SQLite.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::admin_common;
use crate::common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use admin_common::*;
use common::postgres::PgServer;
use common::*;
use serde_json::{json, Value};
use subrelay::domain::{AccountKind, Platform, Secret};
use subrelay::store::postgres::PostgresStore;
use subrelay::store::sqlite::SqliteStore;
use subrelay::store::{
    AccountRecord, GroupRecord, GroupSettingsRecord, KeyRecord, PriceRecord, Source, Store,
    StoreError, TotalsBy, UsageFilter, UsageRow,
};

const ENCRYPTION_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// [`store_config`] on the shared PostgreSQL database `url`.
fn pg_config(mock: &MockUpstream, data_dir: &Path, url: &str, extra: &str) -> String {
    store_config(mock, data_dir, extra).replace(
        "storage:\n",
        &format!(
            "storage:\n  backend: postgres\n  postgres_url: {url}\n  encryption_key: {ENCRYPTION_KEY}\n  usage_batch_interval_ms: 50\n"
        ),
    )
}

/// Polls `check` every 50 ms until it is true (at most `limit`).
async fn eventually(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// === the Store trait on both backends ===

fn usage_row(id: usize, key: &str, at_ms: i64) -> UsageRow {
    UsageRow {
        request_id: format!("req_{id:020}"),
        at_ms,
        key: key.to_owned(),
        account: Some("acct".into()),
        endpoint: "responses".into(),
        model: "gpt-5".into(),
        client_model: (id % 2 == 0).then(|| "alias".to_owned()),
        stream: id % 3 == 0,
        status: if id % 5 == 0 { 429 } else { 200 },
        success: id % 5 != 0,
        input_tokens: if id == 1 { i64::MAX } else { 10 },
        cached_input_tokens: 2,
        cache_creation_tokens: 1,
        output_tokens: 5,
        reasoning_tokens: 0,
        cost_usd: 0.1 + 0.2,
        priced: true,
        duration_ms: 12,
        ttft_ms: (id % 2 == 1).then_some(3),
        attempts: 1,
        client_disconnected: false,
        transport: "http".into(),
    }
}

fn key_record(name: &str, hash: &str) -> KeyRecord {
    KeyRecord {
        name: name.into(),
        key_hash: hash.into(),
        prefix: "sk-ab".into(),
        suffix: "yz".into(),
        group: "default".into(),
        enabled: true,
        expires_at: Some(2_000_000_000),
        concurrency: 3,
        rpm_limit: 60,
        daily_spend_limit: Some(1.5),
        monthly_spend_limit: None,
        allowed_models: Some(vec!["gpt-5".into()]),
        source: Source::Admin,
        created_at: 1_700_000_000,
    }
}

fn account_record(name: &str) -> AccountRecord {
    AccountRecord {
        name: name.into(),
        platform: Platform::OpenAi,
        kind: AccountKind::ApiKey,
        base_url: "https://api.example/v1".into(),
        chatgpt_account_id: None,
        expires_at: None,
        priority: -2,
        concurrency: 4,
        groups: vec!["default".into(), "b".into()],
        enabled: true,
        models: None,
        model_map: [("a".to_owned(), "b".to_owned())].into_iter().collect(),
        protocols: None,
        credentials: vec![1, 0, 255, 7],
        source: Source::Config,
        created_at: 1,
        updated_at: 2,
    }
}

/// The same assertions, whatever the backend.
async fn exercise(store: &dyn Store) {
    // meta, and insert-if-absent keeping the first value
    assert_eq!(store.get_meta("m").await.unwrap(), None);
    assert_eq!(store.meta_or_insert("m", b"first").await.unwrap(), b"first");
    assert_eq!(
        store.meta_or_insert("m", b"second").await.unwrap(),
        b"first"
    );
    store.set_meta("m", b"third").await.unwrap();
    assert_eq!(store.get_meta("m").await.unwrap().unwrap(), b"third");

    // groups
    let group = GroupRecord {
        name: "default".into(),
        platform: Platform::OpenAi,
        source: Source::Config,
        created_at: 5,
        settings: GroupSettingsRecord {
            translate: true,
            model_map: [("claude-*".to_owned(), "gpt-5.1-codex".to_owned())].into(),
            model_fallback: [("gpt-5".to_owned(), vec!["gpt-5-mini".to_owned()])].into(),
        },
    };
    store.upsert_group(&group).await.unwrap();
    assert_eq!(store.list_groups().await.unwrap(), vec![group.clone()]);
    assert!(matches!(
        store.delete_group("nope").await,
        Err(StoreError::NotFound(_))
    ));

    // keys: insert, conflict, update, upsert, delete
    let key = key_record("k1", "hash1");
    store.insert_key(&key).await.unwrap();
    assert!(matches!(
        store.insert_key(&key).await,
        Err(StoreError::Conflict(_))
    ));
    let mut changed = key.clone();
    changed.enabled = false;
    changed.allowed_models = None;
    changed.daily_spend_limit = None;
    store.update_key(&changed).await.unwrap();
    assert_eq!(store.list_keys().await.unwrap(), vec![changed.clone()]);
    assert!(matches!(
        store.update_key(&key_record("ghost", "h")).await,
        Err(StoreError::NotFound(_))
    ));
    store.upsert_key(&key_record("k2", "hash2")).await.unwrap();
    store.delete_key("k1").await.unwrap();
    let names: Vec<String> = store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, vec!["k2"]);

    // accounts, their state and tokens
    let account = account_record("a1");
    store.insert_account(&account).await.unwrap();
    assert!(matches!(
        store.insert_account(&account).await,
        Err(StoreError::Conflict(_))
    ));
    let mut newer = account.clone();
    newer.credentials = vec![9; 40];
    newer.protocols = Some(vec![subrelay::domain::Protocol::Responses]);
    store.upsert_account(&newer).await.unwrap();
    assert_eq!(store.list_accounts().await.unwrap(), vec![newer.clone()]);
    store.save_account_state("a1", "{\"x\":1}").await.unwrap();
    store.save_account_state("a1", "{\"x\":2}").await.unwrap();
    assert_eq!(
        store.account_states().await.unwrap(),
        vec![("a1".to_owned(), "{\"x\":2}".to_owned())]
    );
    store.save_tokens("a1", b"sealed-1").await.unwrap();
    store.save_tokens("a1", b"sealed-2").await.unwrap();
    assert_eq!(
        store.saved_tokens().await.unwrap(),
        vec![("a1".to_owned(), b"sealed-2".to_vec())]
    );
    store.delete_account("a1").await.unwrap();
    assert!(store.list_accounts().await.unwrap().is_empty());
    assert!(store.account_states().await.unwrap().is_empty());

    // usage: idempotent by request id, filters, totals (saturating), spending
    let day = 86_400_000;
    let rows: Vec<UsageRow> = (0..10)
        .map(|i| {
            usage_row(
                i,
                if i < 6 { "alice" } else { "bob" },
                day * (i as i64 % 2) + i as i64,
            )
        })
        .collect();
    assert_eq!(store.insert_usage(&rows).await.unwrap(), 10);
    assert_eq!(
        store.insert_usage(&rows).await.unwrap(),
        0,
        "same ids again"
    );
    let all = UsageFilter::default();
    assert_eq!(store.count_usage(&all).await.unwrap(), 10);
    let mut back = store.list_usage(&all, 100, 0).await.unwrap();
    assert_eq!(
        back.first().unwrap().request_id,
        rows[9].request_id,
        "newest first"
    );
    back.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    assert_eq!(back, rows, "rows come back exactly as written");
    let page = store.list_usage(&all, 3, 2).await.unwrap();
    assert_eq!(page.len(), 3);
    let alice = UsageFilter {
        key: Some("alice".into()),
        ..Default::default()
    };
    assert_eq!(store.count_usage(&alice).await.unwrap(), 6);
    let failed = UsageFilter {
        status: Some(subrelay::store::StatusFilter::Success(false)),
        ..Default::default()
    };
    assert_eq!(store.count_usage(&failed).await.unwrap(), 2);
    let by_key = store.usage_totals(&all, TotalsBy::Key).await.unwrap();
    assert_eq!(by_key.len(), 2);
    assert_eq!(by_key[0].bucket, "alice");
    assert_eq!(by_key[0].requests, 6);
    assert_eq!(by_key[0].input_tokens, i64::MAX, "saturated");
    assert_eq!(by_key[1].input_tokens, 40);
    assert_eq!(by_key[1].output_tokens, 20);
    let by_day = store.usage_totals(&all, TotalsBy::Day).await.unwrap();
    let days: Vec<&str> = by_day.iter().map(|t| t.bucket.as_str()).collect();
    assert_eq!(days, vec!["1970-01-01", "1970-01-02"]);
    let mut spend = store.spend_since(day).await.unwrap();
    spend.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(spend.len(), 2);
    assert!((spend[0].1 - 3.0 * 0.3).abs() < 1e-9, "{spend:?}");

    // the audit trail: newest first, an action prefix taken literally, the id cursor, pruning
    let audit = |at_ms: i64, action: &str| subrelay::store::AuditRow {
        id: 0,
        at_ms,
        actor: "admin-token".into(),
        client: Some("127.0.0.1".into()),
        action: action.into(),
        target: "alice".into(),
        before: None,
        after: Some("{\"enabled\":true}".into()),
    };
    for (at, action) in [
        (10, "key.create"),
        (20, "key_x"),
        (30, "account.reset"),
        (40, "key.delete"),
    ] {
        store.append_audit(&audit(at, action)).await.unwrap();
    }
    let actions = |rows: Vec<subrelay::store::AuditRow>| -> Vec<String> {
        rows.into_iter().map(|r| r.action).collect()
    };
    let keys = subrelay::store::AuditFilter {
        action_prefix: Some("key.".into()),
        ..Default::default()
    };
    assert_eq!(
        actions(store.list_audit(&keys, 10).await.unwrap()),
        vec!["key.delete", "key.create"],
        "`.` is literal and `_` is not a wildcard"
    );
    let newest = store
        .list_audit(&subrelay::store::AuditFilter::default(), 2)
        .await
        .unwrap();
    assert_eq!(actions(newest.clone()), vec!["key.delete", "account.reset"]);
    assert_eq!(newest[0].client.as_deref(), Some("127.0.0.1"));
    let older = subrelay::store::AuditFilter {
        before_id: Some(newest[1].id),
        since_ms: Some(15),
        ..Default::default()
    };
    assert_eq!(
        actions(store.list_audit(&older, 10).await.unwrap()),
        vec!["key_x"]
    );
    assert_eq!(store.prune_audit(25).await.unwrap(), 2);
    assert_eq!(
        actions(
            store
                .list_audit(&subrelay::store::AuditFilter::default(), 10)
                .await
                .unwrap()
        ),
        vec!["key.delete", "account.reset"]
    );
}

#[tokio::test]
async fn the_store_trait_behaves_the_same_on_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path()).await.unwrap();
    exercise(&sqlite).await;
    assert_eq!(sqlite.change_counter().await.unwrap(), None, "not shared");

    let Some(server) = PgServer::any() else {
        return;
    };
    let db = server.database();
    let pg = PostgresStore::open(&Secret::new(db.url()), 4)
        .await
        .unwrap();
    let before = pg.change_counter().await.unwrap().unwrap();
    exercise(&pg).await;
    let after = pg.change_counter().await.unwrap().unwrap();
    assert!(
        after > before,
        "writes of groups, keys and accounts move the counter"
    );
    pg.close().await;
}

/// Price rows, whatever the backend: upsert replaces (optional fields kept as declared: absent
/// stays absent), delete of a missing model is NotFound.
async fn exercise_prices(store: &dyn Store) {
    use subrelay::pricing::PriceSpec;
    let row = |model: &str, input: f64, cached: Option<f64>, source| PriceRecord {
        model: model.into(),
        price: PriceSpec {
            input,
            cached_input: cached,
            output: 2.5,
            cache_creation: None,
        },
        source,
        updated_at: 7,
    };
    assert!(store.list_prices().await.unwrap().is_empty());
    store
        .upsert_price(&row("m-b", 1.0, None, Source::Config))
        .await
        .unwrap();
    store
        .upsert_price(&row("m-a", 0.5, Some(0.05), Source::Admin))
        .await
        .unwrap();
    store
        .upsert_price(&row("m-b", 3.0, Some(0.3), Source::Admin))
        .await
        .unwrap();
    assert_eq!(
        store.list_prices().await.unwrap(),
        vec![
            row("m-a", 0.5, Some(0.05), Source::Admin),
            row("m-b", 3.0, Some(0.3), Source::Admin)
        ],
        "by model, the second write of m-b replaced the first"
    );
    store.delete_price("m-a").await.unwrap();
    assert!(matches!(
        store.delete_price("m-a").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.list_prices().await.unwrap(),
        vec![row("m-b", 3.0, Some(0.3), Source::Admin)]
    );
}

#[tokio::test]
async fn price_rows_behave_the_same_on_sqlite_and_postgres_and_move_the_change_counter() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path()).await.unwrap();
    exercise_prices(&sqlite).await;

    let Some(server) = PgServer::any() else {
        return;
    };
    let db = server.database();
    let pg = PostgresStore::open(&Secret::new(db.url()), 4)
        .await
        .unwrap();
    let hook_runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let runs = std::sync::Arc::clone(&hook_runs);
    pg.on_change(Box::new(move || {
        runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    let before = pg.change_counter().await.unwrap().unwrap();
    exercise_prices(&pg).await;
    let after = pg.change_counter().await.unwrap().unwrap();
    assert!(
        after >= before + 4,
        "each price write moves the counter: {before} -> {after}"
    );
    assert!(
        hook_runs.load(std::sync::atomic::Ordering::SeqCst) >= 4,
        "and tells the other instances"
    );
    pg.close().await;
}

/// How many migrations `migrations/postgres/` holds (each must be applied exactly once).
fn postgres_migrations() -> usize {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count()
}

#[tokio::test]
async fn stores_opening_a_fresh_database_together_all_migrate_it_once() {
    let Some(server) = PgServer::any() else {
        return;
    };
    let db = server.database();
    let url = Secret::new(db.url());
    let opens = (0..6).map(|_| PostgresStore::open(&url, 2));
    let stores = futures_util::future::join_all(opens).await;
    for store in &stores {
        assert!(store.is_ok(), "{:?}", store.as_ref().err());
    }
    assert_eq!(
        db.psql("SELECT COUNT(*) FROM _sqlx_migrations"),
        postgres_migrations().to_string(),
        "each migration applied once"
    );
    assert_eq!(db.psql("SELECT counter FROM changes"), "0");
}

// === instances of the real binary sharing one database ===

/// Starts one gateway per config at the same time (so their migrations race).
fn start_together(configs: Vec<String>) -> Vec<Gateway> {
    let threads: Vec<_> = configs
        .into_iter()
        .map(|yaml| std::thread::spawn(move || Gateway::start(&yaml)))
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[tokio::test]
async fn two_instances_share_keys_and_usage_and_migrate_once() {
    let mock = MockUpstream::start().await;
    let Some(server) = PgServer::any() else {
        return;
    };
    let db = server.database();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut gateways = start_together(vec![
        pg_config(&mock, dir_a.path(), &db.url(), ""),
        pg_config(&mock, dir_b.path(), &db.url(), ""),
    ]);
    let b = gateways.pop().unwrap();
    let a = gateways.pop().unwrap();
    assert_eq!(
        db.psql("SELECT COUNT(*) FROM _sqlx_migrations"),
        postgres_migrations().to_string(),
        "each migration applied once"
    );

    // A key made on A is accepted by B (within the poll interval; the limit is generous only so
    // a loaded machine does not fail the test).
    let raw = create_key(&a, json!({"name": "shared", "group": "default"})).await;
    eventually(
        "B accepts A's new key",
        Duration::from_secs(10),
        async || {
            send_as(&b, &raw, "/v1/responses", &body("gpt-5", false))
                .await
                .status()
                == 200
        },
    )
    .await;

    // Usage served by A is visible from B.
    for _ in 0..3 {
        assert_eq!(
            send_as(&a, &raw, "/v1/responses", &body("gpt-5", false))
                .await
                .status(),
            200
        );
    }
    eventually("B sees A's usage", Duration::from_secs(20), async || {
        let (status, totals) = admin(&b, "GET", "/admin/api/usage/totals?by=key", None).await;
        assert_eq!(status, 200, "{totals}");
        totals_of(&totals, "shared") == Some(4)
    })
    .await;

    // An account added on A joins B's live pool; deleted on B, it leaves A's.
    let (status, answer) = admin(
        &a,
        "POST",
        "/admin/api/accounts",
        Some(
            json!({"name": "second", "platform": "openai", "type": "apikey",
                    "base_url": format!("{}/v1", mock.url()), "api_key": "sk-second-0123456789"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    eventually(
        "B's pool has A's account",
        Duration::from_secs(10),
        async || {
            admin(&b, "GET", "/admin/api/accounts", None)
                .await
                .1
                .to_string()
                .contains("\"second\"")
        },
    )
    .await;
    let (status, _) = admin(&b, "DELETE", "/admin/api/accounts/second", None).await;
    assert_eq!(status, 204);
    eventually(
        "A's pool lost the account",
        Duration::from_secs(10),
        async || {
            !admin(&a, "GET", "/admin/api/accounts", None)
                .await
                .1
                .to_string()
                .contains("\"second\"")
        },
    )
    .await;

    // A group made on A with a model map serves B's requests under the mapped name; a change
    // of the map on B reaches A.
    let (status, answer) = admin(
        &a,
        "POST",
        "/admin/api/groups",
        Some(json!({"name": "mapped", "platform": "openai",
                    "model_map": {"alias-*": "gpt-5-mini"}})),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = admin(
        &a,
        "POST",
        "/admin/api/accounts",
        Some(
            json!({"name": "mapped-up", "platform": "openai", "type": "apikey", "groups": ["mapped"],
                    "base_url": format!("{}/v1", mock.url()), "api_key": "sk-mapped-0123456789"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let mapped = create_key(&a, json!({"name": "mapped-key", "group": "mapped"})).await;
    let upstream_model = |mock: &MockUpstream| {
        let body: Value = serde_json::from_slice(&mock.requests().pop().unwrap().body).unwrap();
        body["model"].as_str().unwrap().to_owned()
    };
    eventually(
        "B maps the model for A's group",
        Duration::from_secs(10),
        async || {
            send_as(&b, &mapped, "/v1/responses", &body("alias-1", false))
                .await
                .status()
                == 200
                && upstream_model(&mock) == "gpt-5-mini"
        },
    )
    .await;
    let (status, answer) = admin(
        &b,
        "PATCH",
        "/admin/api/groups/mapped",
        Some(json!({"model_map": {"alias-*": "gpt-5-nano"}})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    eventually(
        "A takes B's change of the map",
        Duration::from_secs(10),
        async || {
            send_as(&a, &mapped, "/v1/responses", &body("alias-1", false))
                .await
                .status()
                == 200
                && upstream_model(&mock) == "gpt-5-nano"
        },
    )
    .await;

    // A key disabled on B is refused by A.
    let (status, _) = admin(&b, "POST", "/admin/api/keys/shared/disable", None).await;
    assert_eq!(status, 200);
    eventually(
        "A refuses the disabled key",
        Duration::from_secs(10),
        async || {
            send_as(&a, &raw, "/v1/responses", &body("gpt-5", false))
                .await
                .status()
                == 401
        },
    )
    .await;
}

/// The request count of `key` in a totals answer.
fn totals_of(totals: &Value, key: &str) -> Option<i64> {
    let rows = totals
        .as_array()
        .or_else(|| totals["totals"].as_array())
        .or_else(|| totals["rows"].as_array())?;
    rows.iter()
        .find(|r| r["bucket"] == key || r["key"] == key)
        .and_then(|r| r["requests"].as_i64())
}

/// Rows in the shared database.
fn stored_ids(db: &common::postgres::TestDb<'_>) -> Vec<String> {
    db.psql("SELECT request_id FROM usage ORDER BY request_id")
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

async fn wait_rows(db: &common::postgres::TestDb<'_>, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ids = stored_ids(db);
        if ids.len() >= n {
            return ids;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} rows, got {}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_killed_instance_loses_no_usage_row_and_writes_none_twice() {
    const FAST: usize = 40;
    const SLOW: usize = 5;
    let mock = MockUpstream::start().await;
    let Some(server) = PgServer::any() else {
        return;
    };
    let db = server.database();
    let data = tempfile::tempdir().unwrap();
    let yaml = pg_config(&mock, data.path(), &db.url(), "");
    let gw = Gateway::start(&yaml);
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let url = gw.responses_url();
        slow.push(tokio::spawn(async move {
            client()
                .post(url)
                .bearer_auth(KEY)
                .json(&body("gpt-5+delay_ms=60000", true))
                .send()
                .await
        }));
    }
    let mut fast = Vec::new();
    for i in 0..FAST {
        let url = gw.responses_url();
        fast.push(tokio::spawn(async move {
            let response = client()
                .post(url)
                .bearer_auth(KEY)
                .json(&body("gpt-5", i % 2 == 0))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap();
        }));
    }
    for task in fast {
        task.await.unwrap();
    }
    let logged = gw.wait_for_usage(FAST).await;
    // The `usage` line is logged when a row is queued; the row reaches the spool only when that
    // turn of the gateway's event loop ends (src/store/usage_writer.rs), and a kill in between
    // loses it by design. The promise is for spooled rows: wait until every row is spooled or
    // stored (the spool read first: a segment stored meanwhile is in the database after).
    eventually(
        "every usage row is spooled or stored",
        Duration::from_secs(20),
        async || {
            let mut durable = spooled_request_ids(data.path());
            durable.extend(stored_ids(&db));
            logged
                .iter()
                .all(|r| durable.contains(r["request_id"].as_str().unwrap()))
        },
    )
    .await;
    eventually(
        "slow requests reach the mock",
        Duration::from_secs(20),
        async || mock.total_calls() >= FAST + SLOW,
    )
    .await;
    drop(gw); // SIGKILL
    for task in slow {
        let _ = task.await;
    }
    let completed = mock.completed();
    assert_eq!(completed, FAST);

    // The same instance (same data_dir) starts again and replays its spool into the database.
    let _gw = Gateway::start(&yaml);
    let ids = wait_rows(&db, completed).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids_later = stored_ids(&db);
    assert_eq!(ids_later.len(), completed, "no row twice, none extra");
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), completed);
}

#[tokio::test]
async fn a_postgres_restart_mid_load_loses_no_row_and_admin_writes_answer_503_meanwhile() {
    let mock = MockUpstream::start().await;
    // A server of our own: the test stops and starts it.
    let Some(server) = PgServer::private() else {
        return;
    };
    let db = server.database();
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&pg_config(&mock, data.path(), &db.url(), ""));
    let mut served = 0;
    for _ in 0..5 {
        assert_eq!(
            post(&gw, "/v1/responses", &body("gpt-5", false))
                .await
                .status(),
            200
        );
        served += 1;
    }
    server.stop();

    // Relaying goes on from the in-memory snapshot; usage waits in the spool.
    for i in 0..10 {
        let response = post(&gw, "/v1/responses", &body("gpt-5", i % 2 == 0)).await;
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
        served += 1;
    }
    // An admin write answers 503 in the admin API's JSON shape.
    let (status, answer) = admin(
        &gw,
        "POST",
        "/admin/api/keys",
        Some(json!({"name": "during-outage"})),
    )
    .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "store_unavailable", "{answer}");
    // /readyz says why.
    let ready = client()
        .get(format!("{}/readyz", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["reason"], "store_unreachable", "{ready}");

    server.start();
    let ids = wait_rows(&db, served).await;
    assert_eq!(ids.len(), served);
    assert_eq!(mock.completed(), served);
    // Back to normal: writes work again.
    eventually(
        "admin writes work again",
        Duration::from_secs(20),
        async || {
            admin(
                &gw,
                "POST",
                "/admin/api/keys",
                Some(json!({"name": "after"})),
            )
            .await
            .0 == 201
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored_ids(&db).len(), served, "nothing written twice");
}

#[tokio::test]
async fn store_copy_moves_a_sqlite_store_and_its_keys_work_on_postgres() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    // A single instance on SQLite with an admin-made key and some usage.
    let mut single = Gateway::start(&store_config(&mock, data.path(), ""));
    let raw = create_key(&single, json!({"name": "moved"})).await;
    let (status, price) = admin(
        &single,
        "PUT",
        "/admin/api/prices/moved-model",
        Some(json!({"input": 1, "output": 2})),
    )
    .await;
    assert_eq!(status, 200, "{price}");
    for _ in 0..3 {
        assert_eq!(
            send_as(&single, &raw, "/v1/responses", &body("gpt-5", false))
                .await
                .status(),
            200
        );
    }
    wait_for_stored_usage(&single, 3).await;
    single.sigterm();
    assert!(single.wait_exit().success());

    let Some(server) = PgServer::any() else {
        return;
    };
    let db = server.database();
    let copy = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_subrelay"));
        without_config_env(&mut command);
        let out = command
            .args(["store", "copy", "--from"])
            .arg(format!("sqlite:{}", data.path().display()))
            .args(["--to", &db.url()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "store copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let first = copy();
    assert!(
        first.contains("2 API key(s)"),
        "the config key and the admin one: {first}"
    );
    assert!(first.contains("3 usage row(s)"), "{first}");
    assert!(first.contains("1 price(s)"), "{first}");
    let second = copy();
    assert!(
        second.contains("0 group(s), 0 API key(s), 0 account(s), 0 price(s)")
            && second.contains("0 usage row(s)"),
        "a second run adds nothing: {second}"
    );
    assert_eq!(db.psql("SELECT COUNT(*) FROM usage"), "3");

    // An instance on PostgreSQL with the same encryption key (the generated one) accepts the
    // copied key and reads the copied account's sealed credential.
    let key = std::fs::read_to_string(data.path().join("encryption.key")).unwrap();
    let other = tempfile::tempdir().unwrap();
    let yaml = pg_config(&mock, other.path(), &db.url(), "").replace(ENCRYPTION_KEY, key.trim());
    let shared = Gateway::start(&yaml);
    assert_eq!(
        send_as(&shared, &raw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    let (status, totals) = admin(&shared, "GET", "/admin/api/usage/totals?by=key", None).await;
    assert_eq!(status, 200);
    assert_eq!(totals_of(&totals, "moved"), Some(3), "{totals}");
}

/// Runs `subrelay serve` with `yaml` expecting it to stop at start; its stderr.
fn refused_start(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("subrelay.yaml");
    std::fs::write(&file, format!("server:\n  port: 0\n{yaml}")).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_subrelay"));
    without_config_env(&mut command);
    let out = command
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "it started");
    String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
}

#[tokio::test]
async fn an_instance_with_another_encryption_key_or_no_database_stops_at_start() {
    let mock = MockUpstream::start().await;
    let Some(server) = PgServer::any() else {
        return;
    };
    let db = server.database();
    let first_dir = tempfile::tempdir().unwrap();
    let first = Gateway::start(&pg_config(&mock, first_dir.path(), &db.url(), ""));
    drop(first);

    // Same database, another key: refused before anything is written.
    let other_dir = tempfile::tempdir().unwrap();
    let other_key = "cd".repeat(32);
    let err = refused_start(
        &pg_config(&mock, other_dir.path(), &db.url(), "").replace(ENCRYPTION_KEY, &other_key),
    );
    assert!(err.contains("does not match"), "{err}");

    // A database that cannot be reached: a clear error that never shows the password.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://subrelay:hunter2-secret@127.0.0.1:{port}/nothing");
    let err = refused_start(&pg_config(&mock, other_dir.path(), &url, ""));
    assert!(err.contains("PostgreSQL"), "{err}");
    assert!(!err.contains("hunter2-secret"), "{err}");
}

/// PostgreSQL refuses a NUL character in any text, and a batch is written in one statement: a
/// request whose model name carries one (any client can send it) must not keep its batch, and
/// every row after it, out of the database.
#[tokio::test]
async fn a_model_name_with_a_nul_character_does_not_stop_the_usage_rows() {
    let mock = MockUpstream::start().await;
    let Some(server) = PgServer::any() else {
        return;
    };
    let db = server.database();
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&pg_config(&mock, data.path(), &db.url(), ""));
    let poisoned = post(&gw, "/v1/responses", &body("gpt-5\u{0}x", false)).await;
    poisoned.bytes().await.unwrap();
    let fine = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(fine.status(), 200);
    fine.bytes().await.unwrap();
    let ids = wait_rows(&db, 2).await;
    assert_eq!(ids.len(), 2);
    let models = db.psql("SELECT model FROM usage ORDER BY model");
    assert!(models.contains("gpt-5\u{fffd}x"), "{models}");
}
