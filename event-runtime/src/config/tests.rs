use super::*;

fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_lookup(env(vars))
}

#[test]
fn nothing_set_means_the_defaults_and_embedded() {
    let c = parse(&[]).unwrap();
    assert_eq!(
        (c.mode, c.mode_source),
        (Mode::Embedded, ModeSource::Default)
    );
    assert_eq!(c.app_port, 8080);
    assert_eq!(c.dapr_endpoint, "http://127.0.0.1:3500");
    assert_eq!(
        (c.app_id.as_str(), c.default_pubsub.as_str()),
        ("event-runtime-app", "kafka-pubsub")
    );
    let s = c.settings;
    assert_eq!(s.handler_timeout, Duration::from_secs(60));
    assert_eq!(s.claim_lease, Duration::from_secs(120));
    assert_eq!(s.max_hold, Duration::from_secs(20));
    assert_eq!(
        (s.default_dlq.as_str(), s.state_store.as_str()),
        ("dlq", "statestore")
    );
    assert_eq!(s.app_api_token, None);
    assert_eq!(s.transport, crate::config::Transport::Http);
    assert_eq!(s.dapr_grpc_endpoint, "http://127.0.0.1:50001");
}

#[test]
fn the_grpc_stream_delivery_and_daprs_grpc_api_are_read() {
    let c = parse(&[
        ("EVENTS_TRANSPORT", "grpc-stream"),
        ("DAPR_GRPC_PORT", "50002"),
    ])
    .unwrap();
    assert_eq!(c.settings.transport, crate::config::Transport::GrpcStream);
    assert_eq!(c.settings.dapr_grpc_endpoint, "http://127.0.0.1:50002");
    let c = parse(&[
        ("DAPR_GRPC_ENDPOINT", "http://daprd:50001"),
        ("DAPR_GRPC_PORT", "50002"),
    ])
    .unwrap();
    assert_eq!(c.settings.dapr_grpc_endpoint, "http://daprd:50001");
}

#[test]
fn empty_values_keep_the_defaults() {
    let all = [
        "APP_PORT",
        "DAPR_HTTP_PORT",
        "DAPR_HTTP_ENDPOINT",
        "EVENTS_MODE",
        "EVENTS_HANDLER_TIMEOUT_SECS",
        "EVENTS_CLAIM_LEASE_SECS",
        "EVENTS_MAX_HOLD_SECS",
        "EVENTS_PUBSUB",
        "EVENTS_STATE_STORE",
        "EVENTS_DLQ",
        "EVENTS_MAX_MESSAGE_BYTES",
        "EVENTS_MAX_BULK_BODY_BYTES",
    ];
    let vars: Vec<(&str, &str)> = all.iter().map(|k| (*k, "")).collect();
    let c = parse(&vars).unwrap();
    assert_eq!(
        (c.mode, c.mode_source),
        (Mode::Embedded, ModeSource::Default)
    );
    assert_eq!(
        (c.app_port, c.dapr_endpoint.as_str()),
        (8080, "http://127.0.0.1:3500")
    );
    assert_eq!(c.settings.app_api_token, None);
}

#[test]
fn valid_values_are_read() {
    let c = parse(&[
        ("APP_PORT", "9090"),
        ("DAPR_HTTP_PORT", "3501"),
        ("EVENTS_HANDLER_TIMEOUT_SECS", "5"),
        ("EVENTS_CLAIM_LEASE_SECS", "6"),
        ("EVENTS_MAX_HOLD_SECS", "0"),
        ("EVENTS_PUBSUB", "my_pubsub.v2"),
        ("EVENTS_STATE_STORE", "redis-state"),
        ("EVENTS_DLQ", "s5-dlq"),
        ("APP_API_TOKEN", "t"),
        ("DAPR_API_TOKEN", "d"),
    ])
    .unwrap();
    assert_eq!(
        (c.mode, c.mode_source),
        (Mode::Dapr, ModeSource::SidecarVariable)
    );
    assert_eq!(
        (c.app_port, c.dapr_endpoint.as_str()),
        (9090, "http://127.0.0.1:3501")
    );
    assert_eq!(c.default_pubsub, "my_pubsub.v2");
    assert_eq!(c.dapr_api_token.as_deref(), Some("d"));
    let s = c.settings;
    assert_eq!(
        (s.handler_timeout, s.claim_lease, s.max_hold),
        (
            Duration::from_secs(5),
            Duration::from_secs(6),
            Duration::ZERO
        )
    );
    assert_eq!(
        (s.state_store.as_str(), s.default_dlq.as_str()),
        ("redis-state", "s5-dlq")
    );
    assert_eq!(s.app_api_token.as_deref(), Some("t"));
}

#[test]
fn each_malformed_variable_is_named_with_its_value() {
    let cases = [
        ("APP_PORT", "80a"),
        ("APP_PORT", "65536"),
        ("APP_PORT", " 8080"),
        ("DAPR_HTTP_PORT", "35OO"),
        ("DAPR_HTTP_PORT", "0"),
        ("EVENTS_HANDLER_TIMEOUT_SECS", "60s"),
        ("EVENTS_HANDLER_TIMEOUT_SECS", "0"),
        ("EVENTS_HANDLER_TIMEOUT_SECS", "-1"),
        ("EVENTS_CLAIM_LEASE_SECS", "2m"),
        ("EVENTS_CLAIM_LEASE_SECS", "18446744073709551615"),
        ("EVENTS_MAX_HOLD_SECS", "1.5"),
        ("EVENTS_MODE", "foo"),
        ("EVENTS_MODE", "Dapr"),
        ("EVENTS_TRANSPORT", "grpc"),
        ("DAPR_GRPC_PORT", "5oool"),
        ("DAPR_GRPC_ENDPOINT", "127.0.0.1:50001"),
        ("DAPR_HTTP_ENDPOINT", "127.0.0.1:3500"),
        ("DAPR_HTTP_ENDPOINT", "ftp://127.0.0.1"),
        ("DAPR_HTTP_ENDPOINT", "http://127.0.0.1:3500/?x=1"),
        ("EVENTS_PUBSUB", "kafka-pubsub/../../state"),
        ("EVENTS_STATE_STORE", "state store"),
        ("EVENTS_DLQ", ".."),
        ("EVENTS_ENV", "staging"),
        ("KAFKA_CLUSTER", "My_Cluster"),
        ("KAFKA_CLUSTER", "kafka-"),
        ("EVENTS_NAMESPACE", "Team-A"),
        ("EVENTS_NAMESPACE", &"n".repeat(64)),
        ("EVENT_SCHEMAS_UPDATE", "yes"),
        ("APP_ID", "todo app"),
        ("APP_ID", "todo/../x"),
    ];
    for (var, value) in cases {
        let err = parse(&[(var, value)]).expect_err(&format!("{var}={value}"));
        let ConfigError::Invalid {
            var: named,
            value: shown,
            ..
        } = &err
        else {
            panic!("{var}={value}: {err:?}")
        };
        assert_eq!((*named, shown.as_str()), (var, value), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("{var}={value:?} is not valid: expected ")),
            "{text}"
        );
    }
}

#[test]
fn the_ranges_take_their_upper_bound_and_refuse_one_more() {
    type Read = fn(&Settings) -> Duration;
    let cases: [(&str, u64, Read); 3] = [
        ("EVENTS_HANDLER_TIMEOUT_SECS", 86_400, |s| s.handler_timeout),
        ("EVENTS_CLAIM_LEASE_SECS", 604_800, |s| s.claim_lease),
        ("EVENTS_MAX_HOLD_SECS", 86_400, |s| s.max_hold),
    ];
    for (var, bound, read) in cases {
        let at = bound.to_string();
        let c = parse(&[(var, &at)]).unwrap_or_else(|e| panic!("{var}={at}: {e}"));
        assert_eq!(read(&c.settings), Duration::from_secs(bound), "{var}");
        let over = (bound + 1).to_string();
        let err = parse(&[(var, &over)]).expect_err(&format!("{var}={over}"));
        assert!(
            matches!(&err, ConfigError::Invalid { var: v, value, .. } if *v == var && *value == over),
            "{err:?}"
        );
        assert!(err.to_string().ends_with(&format!(" to {bound}")), "{err}");
    }
}

#[test]
fn the_sidecar_endpoint_wins_over_the_port_and_means_dapr() {
    let c = parse(&[
        ("DAPR_HTTP_ENDPOINT", "https://dapr.example.com:3443/"),
        ("DAPR_HTTP_PORT", "3501"),
    ])
    .unwrap();
    assert_eq!(
        (c.mode, c.mode_source),
        (Mode::Dapr, ModeSource::SidecarVariable)
    );
    assert_eq!(c.dapr_endpoint, "https://dapr.example.com:3443");
    let c = parse(&[("DAPR_HTTP_ENDPOINT", "http://127.0.0.1:3500")]).unwrap();
    assert_eq!(
        (c.mode, c.dapr_endpoint.as_str()),
        (Mode::Dapr, "http://127.0.0.1:3500")
    );
    // EVENTS_MODE still has the last word.
    let c = parse(&[
        ("DAPR_HTTP_ENDPOINT", "http://127.0.0.1:3500"),
        ("EVENTS_MODE", "embedded"),
    ])
    .unwrap();
    assert_eq!(
        (c.mode, c.mode_source),
        (Mode::Embedded, ModeSource::EventsMode)
    );
    // A malformed port is an error even when the endpoint wins.
    let err = parse(&[
        ("DAPR_HTTP_ENDPOINT", "http://h:1"),
        ("DAPR_HTTP_PORT", "x"),
    ])
    .unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                var: "DAPR_HTTP_PORT",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_endpoint_password_stays_out_of_the_error() {
    let err = parse(&[("DAPR_HTTP_ENDPOINT", "http://user:s3cret@127.0.0.1:3500")]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("DAPR_HTTP_ENDPOINT") && !text.contains("s3cret"),
        "{text}"
    );
}

#[test]
fn explicit_modes() {
    let c = parse(&[("EVENTS_MODE", "dapr")]).unwrap();
    assert_eq!(
        (c.mode, c.mode_source),
        (Mode::Dapr, ModeSource::EventsMode)
    );
    let c = parse(&[("EVENTS_MODE", "embedded"), ("DAPR_HTTP_PORT", "3500")]).unwrap();
    assert_eq!(
        (c.mode, c.mode_source),
        (Mode::Embedded, ModeSource::EventsMode)
    );
}

#[test]
fn an_empty_or_short_secret_is_an_error_not_no_secret() {
    for (var, value) in [
        ("APP_API_TOKEN", ""),
        ("EVENTS_SIGNING_KEY", ""),
        ("EVENTS_SIGNING_KEY", "fifteen bytes.."),
    ] {
        let err = parse(&[(var, value)]).expect_err(var);
        assert!(
            matches!(&err, ConfigError::Invalid { var: v, .. } if *v == var),
            "{err:?}"
        );
        assert!(err.to_string().contains("a secret of at least"), "{err}");
    }
    let c = parse(&[
        ("EVENTS_SIGNING_KEY", "sixteen bytes..."),
        ("APP_API_TOKEN", "t"),
    ])
    .unwrap();
    assert!(c.settings.signing_key.is_some());
    assert_eq!(c.settings.app_api_token.as_deref(), Some("t"));
    let text = parse(&[("EVENTS_SIGNING_KEY", "s3cret")])
        .unwrap_err()
        .to_string();
    assert!(!text.contains("s3cret"), "the secret stays out: {text}");
}

#[test]
fn the_broker_limits_have_kafkas_defaults_and_bounds() {
    let s = parse(&[]).unwrap().settings;
    assert_eq!(s.max_message_bytes, 1024 * 1024);
    assert_eq!(s.max_bulk_body_bytes, 256 * 1024 * 1024);
    let s = parse(&[("EVENTS_MAX_MESSAGE_BYTES", "2000000")])
        .unwrap()
        .settings;
    assert_eq!(s.max_message_bytes, 2_000_000);
    for (var, value) in [
        ("EVENTS_MAX_MESSAGE_BYTES", "1023"),
        ("EVENTS_MAX_MESSAGE_BYTES", "1MB"),
        ("EVENTS_MAX_BULK_BODY_BYTES", "0"),
    ] {
        let err = parse(&[(var, value)]).expect_err(value);
        assert!(matches!(&err, ConfigError::Invalid { var: v, .. } if *v == var));
    }
}

#[test]
fn a_long_value_is_cut_in_the_message() {
    let long = "9".repeat(10_000);
    let text = parse(&[("APP_PORT", &long)]).unwrap_err().to_string();
    assert!(text.len() < 300 && text.contains("(10000 bytes)"), "{text}");
}

#[test]
fn an_unknown_events_env_is_an_error_naming_it_not_local() {
    for value in ["staging", "clouds", "loc"] {
        let err = parse(&[("EVENTS_ENV", value)]).expect_err(value);
        assert!(
            matches!(&err, ConfigError::Invalid { var: "EVENTS_ENV", value: v, .. } if v == value),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("EVENTS_ENV") && text.contains(value) && text.contains("`cloud`"),
            "{text}"
        );
    }
}

#[test]
fn events_env_takes_the_known_names_in_any_case() {
    let deployment = |value: &str| {
        parse(&[("EVENTS_ENV", value)])
            .unwrap()
            .manifests
            .deployment
    };
    for value in ["cloud", "prod", "production", "Cloud", "PROD"] {
        assert_eq!(deployment(value), Deployment::Cloud, "{value}");
    }
    for value in ["local", "dev", "development", "Local", ""] {
        assert_eq!(deployment(value), Deployment::Local, "{value}");
    }
    assert_eq!(parse(&[]).unwrap().manifests, ManifestTarget::default());
}

#[test]
fn the_manifest_target_and_the_schema_flag_are_read() {
    let c = parse(&[
        ("EVENTS_ENV", "production"),
        ("KAFKA_CLUSTER", "prod-kafka"),
        ("EVENTS_NAMESPACE", "billing"),
        ("EVENT_SCHEMAS_UPDATE", "1"),
    ])
    .unwrap();
    assert_eq!(
        c.manifests,
        ManifestTarget {
            deployment: Deployment::Cloud,
            kafka_cluster: "prod-kafka".to_owned(),
            namespace: Some("billing".to_owned()),
        }
    );
    assert!(c.schemas_update);
    let defaults = parse(&[]).unwrap();
    assert_eq!(
        (
            defaults.manifests.kafka_cluster.as_str(),
            defaults.manifests.namespace
        ),
        ("kafka", None)
    );
    assert!(!defaults.schemas_update);
    for (value, update) in [("true", true), ("0", false), ("false", false), ("", false)] {
        let c = parse(&[("EVENT_SCHEMAS_UPDATE", value)]).unwrap();
        assert_eq!(c.schemas_update, update, "{value}");
    }
}

#[test]
fn the_app_id_and_the_sidecar_token_are_checked() {
    let c = parse(&[
        ("APP_ID", "billing_v2.eu-1"),
        ("DAPR_API_TOKEN", "t0k3n/+="),
    ])
    .unwrap();
    assert_eq!(c.app_id, "billing_v2.eu-1");
    assert_eq!(c.dapr_api_token.as_deref(), Some("t0k3n/+="));
    let err = parse(&[("APP_ID", &"a".repeat(201))]).unwrap_err();
    assert!(
        matches!(err, ConfigError::Invalid { var: "APP_ID", .. }),
        "{err}"
    );
    // Empty is no token, as in Dapr; a token a header cannot carry is named, never shown.
    assert_eq!(
        parse(&[("DAPR_API_TOKEN", "")]).unwrap().dapr_api_token,
        None
    );
    for bad in ["s3cret token", "s3cret\n", "s3crét"] {
        let err = parse(&[("DAPR_API_TOKEN", bad)]).expect_err(bad);
        assert!(
            matches!(
                &err,
                ConfigError::Invalid {
                    var: "DAPR_API_TOKEN",
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(!text.contains("s3cr"), "the token stays out: {text}");
    }
}

#[test]
fn the_default_config_is_every_variable_unset() {
    let c = Config::default();
    assert_eq!(
        (c.app_id.as_str(), c.default_pubsub.as_str()),
        (DEFAULT_APP_ID, DEFAULT_PUBSUB)
    );
    assert_eq!((c.mode, c.app_port), (Mode::Embedded, 8080));
}

#[test]
fn the_debug_form_shows_no_secret() {
    let c = parse(&[
        ("DAPR_API_TOKEN", "d4pr-s3cret"),
        ("APP_API_TOKEN", "app-s3cret"),
        ("EVENTS_SIGNING_KEY", "sixteen s3cret.."),
    ])
    .unwrap();
    let text = format!("{c:?}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(
        text.contains("dapr_api_token: Some(\"<redacted>\")"),
        "{text}"
    );
    assert!(text.contains("app_id: \"event-runtime-app\""), "{text}");
}
