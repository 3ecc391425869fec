//! A Redfish test double for compute modules: one HTTP endpoint per module (the appliance
//! reaches it at `http://10.0.2.2:PORT`, QEMU's user-mode address of this host) with one
//! computer system whose `ComputerSystem.Reset` actions call back into the harness, which
//! starts or stops the module's VM, and one network device function (reached as a
//! client does: system → `NetworkInterfaces` → `NetworkDeviceFunctions`) whose `BootMode`
//! and `iSCSIBoot` a PATCH writes into the module's [`NicFirmware`].

use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::firmware::NicFirmware;

/// What the harness does on a reset: `On`, `ForceOff`, `GracefulShutdown`, ...
pub type OnReset = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

struct Module {
    power: Mutex<String>,
    on_reset: OnReset,
    actions: Mutex<Vec<String>>,
    nic: Option<Arc<NicFirmware>>,
}

const INTERFACES: &str = "/redfish/v1/Systems/1/NetworkInterfaces";
const FUNCTIONS: &str = "/redfish/v1/Chassis/1/NetworkAdapters/1/NetworkDeviceFunctions";
const FUNCTION: &str = "/redfish/v1/Chassis/1/NetworkAdapters/1/NetworkDeviceFunctions/1";

/// One module's management processor; serves until dropped.
pub struct RedfishDouble {
    /// The port on 127.0.0.1.
    pub port: u16,
    module: Arc<Module>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for RedfishDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedfishDouble")
            .field("port", &self.port)
            .finish()
    }
}

async fn systems() -> Json<Value> {
    Json(json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}], "Members@odata.count": 1}))
}

async fn system(State(m): State<Arc<Module>>) -> Json<Value> {
    let power = m.power.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Json(
        json!({"@odata.id": "/redfish/v1/Systems/1", "Id": "1", "PowerState": power,
                "NetworkInterfaces": {"@odata.id": INTERFACES}}),
    )
}

fn collection(members: &[&str]) -> Json<Value> {
    let m: Vec<Value> = members.iter().map(|id| json!({"@odata.id": id})).collect();
    Json(json!({"Members@odata.count": m.len(), "Members": m}))
}

async fn interfaces(State(m): State<Arc<Module>>) -> Json<Value> {
    let one = format!("{INTERFACES}/1");
    let members = if m.nic.is_some() {
        vec![one.as_str()]
    } else {
        vec![]
    };
    collection(&members)
}

async fn interface() -> Json<Value> {
    Json(json!({"@odata.id": format!("{INTERFACES}/1"), "Id": "1",
                "NetworkDeviceFunctions": {"@odata.id": FUNCTIONS}}))
}

async fn functions(State(m): State<Arc<Module>>) -> Json<Value> {
    collection(if m.nic.is_some() { &[FUNCTION] } else { &[] })
}

async fn function(State(m): State<Arc<Module>>) -> (StatusCode, Json<Value>) {
    match &m.nic {
        Some(nic) => (StatusCode::OK, Json(nic.redfish(FUNCTION))),
        None => (StatusCode::NOT_FOUND, Json(json!({}))),
    }
}

async fn patch_function(
    State(m): State<Arc<Module>>,
    Json(body): Json<Value>,
) -> (StatusCode, String) {
    let Some(nic) = &m.nic else {
        return (StatusCode::NOT_FOUND, String::new());
    };
    match nic.patch(&body) {
        Ok(()) => (StatusCode::NO_CONTENT, String::new()),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e:#}")),
    }
}

async fn reset(State(m): State<Arc<Module>>, Json(body): Json<Value>) -> (StatusCode, String) {
    let kind = body["ResetType"].as_str().unwrap_or_default().to_owned();
    m.actions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(kind.clone());
    let cb = Arc::clone(&m.on_reset);
    let k = kind.clone();
    // Starting a VM blocks (QEMU start, QMP): off the async threads.
    let result = tokio::task::spawn_blocking(move || cb(&k))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    match result {
        Ok(()) => {
            let state = if matches!(kind.as_str(), "On" | "ForceRestart" | "PowerCycle") {
                "On"
            } else {
                "Off"
            };
            *m.power.lock().unwrap_or_else(|e| e.into_inner()) = state.into();
            (StatusCode::NO_CONTENT, String::new())
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

impl RedfishDouble {
    /// A module's management processor on 127.0.0.1; `nic`: its network device function.
    pub fn start(on_reset: OnReset, nic: Option<Arc<NicFirmware>>) -> Result<RedfishDouble> {
        Self::start_on("127.0.0.1", on_reset, nic)
    }

    /// Listens on `ip` (e.g. `0.0.0.0`: reachable from VMs on a bridge linked to this host,
    /// see `Enclosure::host_link`).
    pub fn start_on(
        ip: &str,
        on_reset: OnReset,
        nic: Option<Arc<NicFirmware>>,
    ) -> Result<RedfishDouble> {
        let module = Arc::new(Module {
            power: Mutex::new("Off".into()),
            on_reset,
            actions: Mutex::new(Vec::new()),
            nic,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = std::net::TcpListener::bind(format!("{ip}:0"))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let app = Router::new()
            .route("/redfish/v1/Systems", get(systems))
            .route("/redfish/v1/Systems/1", get(system))
            .route(
                "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
                post(reset),
            )
            .route(INTERFACES, get(interfaces))
            .route(&format!("{INTERFACES}/1"), get(interface))
            .route(FUNCTIONS, get(functions))
            .route(FUNCTION, get(function).patch(patch_function))
            .with_state(Arc::clone(&module));
        runtime.spawn(async move {
            if let Ok(l) = tokio::net::TcpListener::from_std(listener) {
                let _ = axum::serve(l, app).await;
            }
        });
        Ok(RedfishDouble {
            port,
            module,
            runtime: Some(runtime),
        })
    }

    /// The address to register with the appliance (a VM with QEMU user-mode networking).
    pub fn address_from_guest(&self) -> String {
        format!("http://10.0.2.2:{}", self.port)
    }

    /// The address to register with an appliance that reaches this host at `host_ip`.
    pub fn address_at(&self, host_ip: &str) -> String {
        format!("http://{host_ip}:{}", self.port)
    }

    /// The reset types received, in order.
    pub fn actions(&self) -> Vec<String> {
        self.module
            .actions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for RedfishDouble {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
