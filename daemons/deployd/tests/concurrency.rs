//! The domain's rules hold when requests race: a name is unique and a reference resolves
//! even when the requests that would break them arrive at the same moment (the checks are
//! preconditions of the same commit, not reads before it).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Barrier};

use common::{Api, TestServer};
use serde_json::{Value, json};

const RACERS: usize = 20;

/// `RACERS` sessions (a login hashes a password: made once per test).
fn racers(s: &TestServer) -> Arc<Vec<Api>> {
    Arc::new((0..RACERS).map(|_| s.login(800)).collect())
}

/// Runs `f(i)` on `RACERS` threads at once, each with its own session, and collects the
/// statuses.
fn race(apis: &Arc<Vec<Api>>, f: impl Fn(&Api, usize) -> u16 + Send + Sync + 'static) -> Vec<u16> {
    let start = Arc::new(Barrier::new(RACERS));
    let f = Arc::new(f);
    let handles: Vec<_> = (0..RACERS)
        .map(|i| {
            let (start, f, apis) = (Arc::clone(&start), Arc::clone(&f), Arc::clone(apis));
            std::thread::spawn(move || {
                start.wait();
                f(&apis[i], i)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

fn named(api: &Api, collection: &str, name: &str) -> usize {
    api.get_json(collection)["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == name)
        .count()
}

#[test]
fn concurrent_creates_of_one_name_leave_one_record() {
    let s = TestServer::start();
    let statuses = race(&racers(&s), |api, i| {
        api.post(
            "/rest/plan-scripts",
            &json!({"name": "same", "planType": "deploy", "content": format!("echo {i}")}),
        )
        .status()
        .as_u16()
    });
    assert_eq!(count(&statuses, 201), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 409), RACERS - 1, "{statuses:?}");
    let api = s.login(800);
    assert_eq!(named(&api, "/rest/plan-scripts", "same"), 1);
}

#[test]
fn concurrent_renames_to_one_name_leave_one_record() {
    let s = TestServer::start();
    let api = s.login(800);
    let uris: Vec<String> = (0..RACERS)
        .map(|i| {
            let r = api.post(
                "/rest/build-plans",
                &json!({"name": format!("bp {i}"), "oeBuildPlanType": "capture"}),
            );
            assert_eq!(r.status(), 201);
            r.json::<Value>().unwrap()["uri"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let uris = Arc::new(uris);
    let targets = Arc::clone(&uris);
    let statuses = race(&racers(&s), move |api, i| {
        api.put(
            &targets[i],
            &json!({"name": "target", "oeBuildPlanType": "capture"}),
        )
        .status()
        .as_u16()
    });
    assert_eq!(count(&statuses, 202), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 409), RACERS - 1, "{statuses:?}");
    assert_eq!(named(&api, "/rest/build-plans", "target"), 1);
    // The losers kept their names, and a name freed by the winner's rename is free again.
    assert_eq!(
        api.get_json("/rest/build-plans")["total"],
        u64::try_from(RACERS).unwrap()
    );
    let winner = uris
        .iter()
        .find(|u| api.get_json(u)["name"] == "target")
        .unwrap();
    let old = (0..RACERS)
        .map(|i| format!("bp {i}"))
        .find(|n| named(&api, "/rest/build-plans", n) == 0)
        .unwrap();
    let r = api.post(
        "/rest/build-plans",
        &json!({"name": old, "oeBuildPlanType": "capture"}),
    );
    assert_eq!(r.status(), 201, "{winner}: {}", r.text().unwrap());
}

#[test]
fn a_delete_racing_a_new_reference_never_leaves_it_dangling() {
    let s = TestServer::start();
    let api = s.login(800);
    let apis = racers(&s);
    for round in 0..10 {
        let bp = api
            .post(
                "/rest/build-plans",
                &json!({"name": format!("bp {round}"), "oeBuildPlanType": "deploy",
                        "customAttributes": []}),
            )
            .json::<Value>()
            .unwrap();
        let bp_uri = bp["uri"].as_str().unwrap().to_string();
        let target = bp_uri.clone();
        // Half the racers delete the build plan, half create a deployment plan naming it.
        let statuses = race(&apis, move |api, i| {
            if i % 2 == 0 {
                api.delete(&target).status().as_u16()
            } else {
                api.post(
                    "/rest/deployment-plans",
                    &json!({"name": format!("dp {round} {i}"), "oeBuildPlanURI": target}),
                )
                .status()
                .as_u16()
            }
        });
        let deleted = statuses.iter().step_by(2).any(|&s| s == 204);
        let plans: Vec<Value> = api.get_json("/rest/deployment-plans")["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["oeBuildPlanURI"] == bp_uri.as_str())
            .cloned()
            .collect();
        let creates: Vec<u16> = statuses.iter().skip(1).step_by(2).copied().collect();
        if deleted {
            assert_eq!(api.get(&bp_uri).status(), 404);
            assert!(
                plans.is_empty(),
                "round {round}: deployment plans name a deleted build plan: {plans:?}"
            );
            assert_eq!(count(&creates, 201), 0, "round {round}: {statuses:?}");
        } else {
            assert_eq!(api.get(&bp_uri).status(), 200);
            assert_eq!(plans.len(), count(&creates, 201), "round {round}");
            assert!(!plans.is_empty(), "round {round}: {statuses:?}");
        }
        // Every refused create said why; a refused delete said who uses the build plan (409)
        // or that another delete got there first (412: it changed since it was read; 404).
        for (i, s) in statuses.iter().enumerate() {
            let expected: &[u16] = if i % 2 == 0 {
                &[204, 404, 409, 412]
            } else {
                &[201, 400]
            };
            assert!(expected.contains(s), "round {round}, racer {i}: {s}");
        }
    }
}
