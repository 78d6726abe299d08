//! Security: app and Dapr API tokens.

use e2e::{work, PairOpts, Scenario};
use serde_json::json;

use crate::support::*;

// ---------------------------------------------------------------------------------------- 7

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s7_app_and_dapr_api_tokens_enforced_end_to_end() {
    let mut s = Scenario::new("s7");
    let (app_tok, dapr_tok) = ("app-secret-7", "dapr-secret-7");
    let both = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
    let mut opts = PairOpts {
        app_env: both("APP_API_TOKEN", app_tok),
        daprd_env: both("APP_API_TOKEN", app_tok),
    };
    opts.app_env.extend(both("DAPR_API_TOKEN", dapr_tok));
    opts.daprd_env.extend(both("DAPR_API_TOKEN", dapr_tok));
    let p = s.pair("r1", opts);
    s.start_pair(&p).await;
    let run = uid();
    let id = format!("s7-{run}-0");
    let r = s.publish(&p, "s7-events", &[work(&id, "u7", 0)]).await;
    assert_eq!(
        r["published"], 1,
        "the app's publisher sends DAPR_API_TOKEN: {r}"
    );
    s.wait_ledger("event handled through both tokens", secs(60), |l| {
        has_ok(l, "s7_work", std::slice::from_ref(&id))
    })
    .await;
    for r in s.requests() {
        assert_eq!(
            r["had_token"], true,
            "daprd sends APP_API_TOKEN on every call: {r}"
        );
        if r["path"] != "/dapr/config" {
            assert_eq!(r["http_status"], 200, "{r}");
        }
    }
    // App -> sidecar without / with a wrong token: 401.
    let publish = format!("{}/v1.0/publish/kafka-pubsub/s7-events", p.dapr_url());
    let body = work(&format!("s7-{run}-x"), "u7", 1).to_string();
    for tok in [None, Some("wrong")] {
        let mut req = s
            .http
            .post(&publish)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(t) = tok {
            req = req.header("dapr-api-token", t);
        }
        assert_eq!(
            req.send().await.unwrap().status().as_u16(),
            401,
            "publish with token {tok:?}"
        );
    }
    let state = format!("{}/v1.0/state/statestore/x", p.dapr_url());
    assert_eq!(
        s.http.get(&state).send().await.unwrap().status().as_u16(),
        401
    );
    // Sidecar -> app without / with a wrong token: 401, the handler does not run.
    let ce = json!({"specversion": "1.0", "id": format!("s7-{run}-forged"), "type": "e2e.work", "source": "x",
        "datacontenttype": "application/json", "data": work(&format!("s7-{run}-forged"), "u7", 2)});
    for tok in [None, Some("wrong")] {
        for path in [
            "/events/s7-events/s7_work",
            "/_dispatch/kafka-pubsub/s7-events",
        ] {
            let mut req = s.http.post(format!("{}{path}", p.app_url())).json(&ce);
            if let Some(t) = tok {
                req = req.header("dapr-api-token", t);
            }
            assert_eq!(
                req.send().await.unwrap().status().as_u16(),
                401,
                "{path} with {tok:?}"
            );
        }
        let mut req = s.http.get(format!("{}/dapr/subscribe", p.app_url()));
        if let Some(t) = tok {
            req = req.header("dapr-api-token", t);
        }
        assert_eq!(
            req.send().await.unwrap().status().as_u16(),
            401,
            "/dapr/subscribe with {tok:?}"
        );
    }
    // A sidecar without APP_API_TOKEN gets no subscriptions from the app, and an app with the
    // wrong DAPR_API_TOKEN cannot publish.
    let bad = s.pair(
        "r2",
        PairOpts {
            app_env: vec![
                ("APP_API_TOKEN".into(), app_tok.into()),
                ("DAPR_API_TOKEN".into(), "not-the-token".into()),
            ],
            daprd_env: both("DAPR_API_TOKEN", dapr_tok),
        },
    );
    s.start_app(&bad).await;
    s.start_daprd(&bad).await;
    s.wait_until(
        "r2's daprd asked for the subscriptions",
        secs(30),
        |s| async move {
            s.requests()
                .iter()
                .any(|r| r["replica"] == "r2" && r["path"] == "/dapr/subscribe")
        },
    )
    .await;
    let sub = s
        .requests()
        .into_iter()
        .find(|r| r["replica"] == "r2" && r["path"] == "/dapr/subscribe")
        .unwrap();
    assert_eq!(sub["http_status"], 401, "{sub}");
    assert_eq!(sub["had_token"], false);
    let meta = s.metadata(&bad).await;
    assert!(
        meta["subscriptions"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "no subscriptions for a sidecar without the token: {meta}"
    );
    let r = s
        .publish_with(
            &bad,
            "s7-events",
            &[work(&format!("s7-{run}-bad"), "u7", 3)],
            0,
        )
        .await;
    assert_eq!(r["published"], 0, "{r}");
    assert!(
        r["failed"][0]["error"].as_str().unwrap().contains("401"),
        "{r}"
    );
    s.settle(secs(2), secs(30)).await;
    assert_eq!(
        ok_counts(&s.ledger(), "s7_work").len(),
        1,
        "only the legitimate event ran"
    );
}

// ---------------------------------------------------------------------------------------- 26

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s26_generated_scopes_keep_other_apps_off_the_retry_topics() {
    let mut s = Scenario::new("s26");
    // The scopes the app generates from its handlers, on the component daprd loads.
    let scopes = s.scopes();
    let (pubsub, metadata) = scopes.first().expect("the app's component");
    assert_eq!(pubsub, "kafka-pubsub");
    let value = |name: &str| {
        metadata
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {metadata:?}"))
    };
    let retry = "e2e-s26.retry.1s";
    assert!(value("protectedTopics").split(',').any(|t| t == retry));
    assert!(value("publishingScopes").starts_with("e2e-s26="));
    s.set_kafka_metadata(metadata);

    let p = s.pair("r1", PairOpts::default());
    // Waits until daprd lists every subscription the app declares: the subscription scopes
    // grant each of them, retry topics included.
    s.start_pair(&p).await;
    let intruder = s
        .start_daprd_without_app("e2e-s26-intruder", "intruder")
        .await;

    let run = uid();
    let forged = work(&format!("s26-{run}-forged"), "u26", 0);
    let (status, body) = publish_raw(&s, &intruder.dapr_url(), retry, &[], &forged).await;
    assert_eq!(
        status, 403,
        "another app id publishes to the retry topic: {body}"
    );
    assert!(body.contains("ERR_PUBSUB_FORBIDDEN"), "{body}");

    // The same app id may publish where it is not protected, and the app still works: the
    // event fails once, goes up its (protected) retry topic, and succeeds.
    let id = format!("s26-{run}-0");
    let mut event = work(&id, "u26", 1);
    event["fail_until_attempt"] = json!(2);
    let (status, body) = publish_raw(&s, &intruder.dapr_url(), "s26-events", &[], &event).await;
    assert_eq!(status, 204, "an unprotected topic: {body}");
    s.wait_ledger("handled on its retry", secs(60), |l| {
        has_ok(l, "s26_work", std::slice::from_ref(&id))
    })
    .await;
    let l = s.ledger();
    let attempts: Vec<u64> = runs_of(&l, "s26_work", &id)
        .iter()
        .filter_map(|v| v["attempt"].as_u64())
        .collect();
    assert_eq!(
        attempts,
        [1, 2],
        "failed once, then ran from the retry topic"
    );
    assert!(
        runs_of(&l, "s26_work", &format!("s26-{run}-forged")).is_empty(),
        "nothing forged ran"
    );

    // The app itself is held to what it declared: a topic it neither consumes nor declares.
    let (status, body) = publish_raw(&s, &p.dapr_url(), "s26-undeclared", &[], &event).await;
    assert_eq!(status, 403, "the app's own undeclared topic: {body}");
}
