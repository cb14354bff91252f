//! Every case of hyco-ws's recorded outputs (`__test__/fixtures/hyco-ws-helpers.json`, a copy
//! of the project's shared vectors) must come out byte for byte.

use hyco_core::{sas, uri};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../__test__/fixtures/hyco-ws-helpers.json"
    );
    let text = std::fs::read_to_string(path).expect("the vectors file is part of the repository");
    serde_json::from_str(&text).expect("the vectors file is JSON")
}

fn opt_str(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
}

#[test]
fn uri_vectors() {
    let v = vectors();
    let cases = v["uris"].as_array().expect("uris");
    assert!(cases.len() > 300);
    for case in cases {
        let args = case["args"].as_array().expect("args");
        let ns = args[0].as_str().expect("namespace");
        let path = args[1].as_str().expect("path");
        let got = match case["fn"].as_str() {
            Some("createRelayBaseUri") => uri::base_uri(ns, path),
            Some("createRelayListenUri") => uri::action_uri(
                ns,
                path,
                uri::Action::Listen,
                opt_str(args.get(2)),
                opt_str(args.get(3)),
            ),
            Some("createRelaySendUri") => uri::action_uri(
                ns,
                path,
                uri::Action::Connect,
                opt_str(args.get(2)),
                opt_str(args.get(3)),
            ),
            other => panic!("unknown fn {other:?}"),
        }
        .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(got, case["expected"].as_str().unwrap(), "{case}");
    }
}

#[test]
fn token_vectors() {
    let v = vectors();
    let mut n = 0;
    for section in ["tokens", "appended"] {
        for case in v[section].as_array().expect("section") {
            let args = case["args"].as_array().expect("args");
            let now = case["nowMs"].as_f64().expect("nowMs");
            let (u, kn, k) = (
                args[0].as_str().unwrap(),
                args[1].as_str().unwrap(),
                args[2].as_str().unwrap(),
            );
            let exp = args.get(3).and_then(Value::as_f64);
            let got = match case["fn"].as_str() {
                Some("createRelayToken") => sas::create_token(u, kn, k, exp, now),
                Some("appendRelayToken") => uri::append_token(u, kn, k, exp, now),
                other => panic!("unknown fn {other:?}"),
            }
            .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(got, case["expected"].as_str().unwrap(), "{case}");
            n += 1;
        }
    }
    assert_eq!(n, 498);
}
