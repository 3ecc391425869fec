//! A Redfish test double: one computer system at `/redfish/v1/Systems/1` whose power state
//! follows the `ComputerSystem.Reset` actions posted to it, and a record of those actions and
//! of the credentials they came with.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Debug, Default)]
pub struct Recorded {
    pub power_state: String,
    /// `ResetType`s posted, in order.
    pub actions: Vec<String>,
    /// `Authorization` headers seen.
    pub auth: Vec<String>,
    /// PATCHes of network device functions: (path, body).
    pub patches: Vec<(String, Value)>,
}

/// The module's two network device functions and their MAC addresses; the second carries
/// the deployment MAC the tests register (52:54:00:12:34:56).
const FUNCTIONS: [(&str, &str); 2] = [("1", "52:54:00:AA:BB:01"), ("2", "52:54:00:12:34:56")];

/// A running double; serves until the process ends.
pub struct RedfishDouble {
    /// `http://127.0.0.1:<port>`, to register as the module's Redfish address.
    pub address: String,
    pub recorded: Arc<Mutex<Recorded>>,
}

fn note_auth(rec: &Mutex<Recorded>, h: &HeaderMap) {
    if let Some(a) = h.get("authorization").and_then(|v| v.to_str().ok()) {
        rec.lock().unwrap().auth.push(a.to_string());
    }
}

async fn systems(State(rec): State<Arc<Mutex<Recorded>>>, h: HeaderMap) -> Json<Value> {
    note_auth(&rec, &h);
    Json(json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}], "Members@odata.count": 1}))
}

async fn system(State(rec): State<Arc<Mutex<Recorded>>>, h: HeaderMap) -> Json<Value> {
    note_auth(&rec, &h);
    let state = rec.lock().unwrap().power_state.clone();
    Json(
        json!({"@odata.id": "/redfish/v1/Systems/1", "Id": "1", "PowerState": state,
                "NetworkInterfaces": {"@odata.id": "/redfish/v1/Systems/1/NetworkInterfaces"}}),
    )
}

async fn interfaces() -> Json<Value> {
    Json(json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1/NetworkInterfaces/1"}]}))
}

async fn interface() -> Json<Value> {
    Json(json!({"Id": "1", "NetworkDeviceFunctions":
        {"@odata.id": "/redfish/v1/Systems/1/NetworkInterfaces/1/NetworkDeviceFunctions"}}))
}

async fn functions() -> Json<Value> {
    let members: Vec<Value> = FUNCTIONS
        .iter()
        .map(|(id, _)| {
            json!({"@odata.id":
                format!("/redfish/v1/Systems/1/NetworkInterfaces/1/NetworkDeviceFunctions/{id}")})
        })
        .collect();
    Json(json!({"Members": members}))
}

async fn function(axum::extract::Path(id): axum::extract::Path<String>) -> Json<Value> {
    let mac = FUNCTIONS
        .iter()
        .find(|(i, _)| *i == id)
        .map_or("", |(_, m)| m);
    Json(json!({"Id": id, "NetDevFuncType": "Ethernet", "Ethernet": {"MACAddress": mac}}))
}

async fn patch_function(
    State(rec): State<Arc<Mutex<Recorded>>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    note_auth(&rec, &h);
    rec.lock().unwrap().patches.push((
        format!("/redfish/v1/Systems/1/NetworkInterfaces/1/NetworkDeviceFunctions/{id}"),
        body,
    ));
    StatusCode::NO_CONTENT
}

async fn reset(
    State(rec): State<Arc<Mutex<Recorded>>>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    note_auth(&rec, &h);
    let t = body["ResetType"].as_str().unwrap_or_default().to_string();
    let mut r = rec.lock().unwrap();
    match t.as_str() {
        "On" | "ForceRestart" | "PowerCycle" => r.power_state = "On".into(),
        "ForceOff" | "GracefulShutdown" => r.power_state = "Off".into(),
        _ => return StatusCode::BAD_REQUEST,
    }
    r.actions.push(t);
    StatusCode::NO_CONTENT
}

impl RedfishDouble {
    pub fn start() -> Self {
        let recorded = Arc::new(Mutex::new(Recorded {
            power_state: "Off".into(),
            ..Default::default()
        }));
        let app = Router::new()
            .route("/redfish/v1/Systems", get(systems))
            .route("/redfish/v1/Systems/1", get(system))
            .route(
                "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
                post(reset),
            )
            .route("/redfish/v1/Systems/1/NetworkInterfaces", get(interfaces))
            .route("/redfish/v1/Systems/1/NetworkInterfaces/1", get(interface))
            .route(
                "/redfish/v1/Systems/1/NetworkInterfaces/1/NetworkDeviceFunctions",
                get(functions),
            )
            .route(
                "/redfish/v1/Systems/1/NetworkInterfaces/1/NetworkDeviceFunctions/{id}",
                get(function).patch(patch_function),
            )
            .with_state(Arc::clone(&recorded));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        Self { address, recorded }
    }

    pub fn actions(&self) -> Vec<String> {
        self.recorded.lock().unwrap().actions.clone()
    }
}
