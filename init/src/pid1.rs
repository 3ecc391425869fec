//! The PID 1 sequence: mount, configure, load modules, name the host, start and supervise
//! the services, announce readiness, reap zombies, and shut down on request. It never
//! returns: a fatal error is printed, the disks synced and the machine rebooted.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{self, Config};
use crate::modules::alias::{Aliases, device_modaliases};
use crate::modules::load::{self, Loaded};
use crate::modules::parallel::{self, Finished};
use crate::net;
use crate::plan::{self, Plan};
use crate::services::{self, GraphError};
use crate::supervisor::{Policy, alert, runtime::Runtime};
use crate::sys;
use crate::watchdog::Watchdog;
use crate::{entropy, power, storage};

/// How long boot waits for network interfaces to appear after the drivers are loaded.
const NET_WAIT: Duration = Duration::from_secs(5);
/// How long the ready line waits for a DHCP lease once the services are ready.
const ADDRESS_WAIT: Duration = Duration::from_secs(60);

/// How long the modules (and the watchdog) held back until `ready` wait when `ready` does
/// not come (a service that keeps failing).
const AFTER_READY_LIMIT: Duration = Duration::from_secs(15);

/// How long services get between SIGTERM and SIGKILL at shutdown.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// The signals PID 1 handles synchronously (they are blocked and read with sigtimedwait).
pub const SIGNALS: &[libc::c_int] = &[
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPWR,
    libc::SIGHUP,
];

/// Signals PID 1 passes on, and to which services: only those that handle them (SIGHUP's
/// default action would end storaged or udhcpc). deployd reloads its TLS certificate.
pub const FORWARDED: &[(libc::c_int, &[&str])] = &[(libc::SIGHUP, &["deployd"])];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    PowerOff,
    Reboot,
}

impl Shutdown {
    fn reboot_cmd(self) -> libc::c_int {
        match self {
            Shutdown::PowerOff => libc::RB_POWER_OFF,
            Shutdown::Reboot => libc::RB_AUTOBOOT,
        }
    }
}

/// What a signal to PID 1 asks for. SIGINT is ctrl-alt-del once the kernel's own handling
/// is disabled; SIGUSR1/SIGUSR2 are the API's reboot and power-off requests.
pub fn on_signal(signal: libc::c_int) -> Option<Shutdown> {
    match signal {
        libc::SIGTERM | libc::SIGINT | libc::SIGUSR2 | libc::SIGPWR => Some(Shutdown::PowerOff),
        libc::SIGUSR1 => Some(Shutdown::Reboot),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Pid1Error {
    #[error("cannot block signals")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Services(#[from] GraphError),
}

use crate::log::say;

/// Runs the appliance. Never returns.
pub fn run() -> ! {
    // A panic in PID 1 would panic the kernel: turn it into an orderly reboot.
    std::panic::set_hook(Box::new(|info| {
        say(&format!("FATAL: {info}"));
        sys::sync();
        let _ = sys::reboot(libc::RB_AUTOBOOT);
    }));
    // Before anything else: the plan-script sandbox needs a root it can pivot_root from.
    if crate::reroot::needed() {
        let e = crate::reroot::reroot();
        say(&format!(
            "cannot move the root to a tmpfs: {e}; plan scripts will not run"
        ));
    }
    match boot() {
        Ok(never) => match never {},
        Err(e) => fatal(&e),
    }
}

/// Prints the error chain, syncs and reboots; never returns even if reboot fails.
pub fn fatal(e: &dyn std::error::Error) -> ! {
    let mut msg = format!("FATAL: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    say(&msg);
    say("rebooting in 5 s");
    std::thread::sleep(Duration::from_secs(5));
    sys::sync();
    let _ = sys::reboot(libc::RB_AUTOBOOT);
    idle_forever()
}

fn idle_forever() -> ! {
    loop {
        for _ in sys::reap_all() {}
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn mount_all() {
    for m in plan::early_mounts() {
        if let Err(e) = std::fs::create_dir_all(m.target) {
            say(&format!("cannot create {}: {e}", m.target));
        }
        match sys::mount(m.source, m.target, m.fstype, m.flags, m.data) {
            Ok(()) => {}
            // Mounted already (by a bootloader-provided initramfs or the kernel).
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => say(&format!("cannot mount {} on {}: {e}", m.fstype, m.target)),
        }
    }
}

fn read_config() -> Config {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_else(|e| {
        say(&format!("cannot read /proc/cmdline: {e}"));
        String::new()
    });
    let file = config::read_file(Path::new(config::CONFIG_FILE)).unwrap_or_else(|e| {
        say(&format!("ignoring the configuration file: {e}"));
        config::Settings::default()
    });
    // A bad setting must not make the appliance unreachable: report it and fall back to
    // the file and defaults, so the console and DHCP still work.
    config::load(&cmdline, file.clone()).unwrap_or_else(|e| {
        say(&format!("ignoring the kernel command line: {e}"));
        file.resolve()
    })
}

/// This boot's modules, read from the module tree, with hardware drivers for the devices
/// present only (from `modules.alias`; without it, every driver).
fn module_plans() -> plan::Modules {
    let dir = crate::dry_run::default_modules_dir();
    let db = match crate::modules::ModuleDb::read(&dir) {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => {
            say(&format!("{}: {e}", dir.display()));
            return plan::Modules::default();
        }
        Err(e) => {
            say(&format!("no module tree at {}: {e}", dir.display()));
            return plan::Modules::default();
        }
    };
    let aliases = match std::fs::read_to_string(dir.join("modules.alias")) {
        Ok(a) => Some(Aliases::parse(&a)),
        Err(e) => {
            say(&format!(
                "no modules.alias in {} ({e}): loading every driver",
                dir.display()
            ));
            None
        }
    };
    let devices = device_modaliases(Path::new("/sys"));
    match plan::modules_for(&db, aliases.as_ref().map(|a| (a, devices.as_slice()))) {
        Ok(m) => {
            let absent = [
                &m.boot.no_device[..],
                &m.disks.no_device[..],
                &m.later.no_device[..],
            ]
            .concat();
            if !absent.is_empty() {
                say(&format!("no device here for: {}", absent.join(", ")));
            }
            m
        }
        Err(e) => {
            say(&format!("module order: {e}"));
            plan::Modules::default()
        }
    }
}

/// Loads `modules`, independent ones in parallel, marking each in `finished` (if given) as it
/// is done (whether it loaded or not: the kernel's error is reported, and boot goes on).
fn load_modules(modules: &plan::ModulePlan, finished: Option<&Finished>, what: &str) {
    // A module's size stands for its cost: the kernel hashes and links every byte. The ones
    // on the way to `ready` (network, config and data filesystems, the random generator) go
    // before the rest (drivers of disk controllers that may hold no disk of ours).
    let urgent = modules.needed_for(
        &[
            plan::NIC_DRIVERS,
            plan::CONFIG_FS,
            plan::DATA_FS,
            plan::RNG_DRIVERS,
            plan::POWER_BUTTON,
        ]
        .concat(),
    );
    let weights: Vec<u64> = (0..modules.files.len())
        .map(|i| {
            let size = std::fs::metadata(&modules.files[i]).map_or(0, |m| m.len());
            if urgent.contains(&i) {
                size + URGENT
            } else {
                size
            }
        })
        .collect();
    let results = parallel::run(&modules.deps, &weights, MODULE_WORKERS, |i| {
        let r = load::load_file(&modules.files[i]);
        if let Some(f) = finished {
            f.mark(i);
        }
        r
    });
    let mut failed = 0;
    for r in results {
        match r {
            Ok(Loaded::Loaded | Loaded::AlreadyLoaded) => {}
            Err(e) => {
                failed += 1;
                say(&format!("{e}: {}", source_text(&e)));
            }
        }
    }
    say(&format!(
        "{what}: {} of {}",
        modules.files.len() - failed,
        modules.files.len()
    ));
}

/// Added to the weight of a module on the way to `ready`: more than all modules' bytes, so
/// every chain holding one goes before any chain without.
const URGENT: u64 = 1 << 40;

/// Threads loading kernel modules at boot: the kernel's work per module (signature check,
/// linking, the driver's probe) runs in parallel for modules that do not depend on each other.
const MODULE_WORKERS: usize = 4;

/// How long boot waits for the disk's partitions to appear.
const DISK_WAIT: Duration = Duration::from_secs(5);

/// Mounts the config partition; returns whether a factory reset was requested (then the
/// configuration file is already removed, so this boot runs on defaults).
fn mount_config() -> bool {
    let Some(part) = storage::wait_for_partition(storage::CONFIG_PARTITION, DISK_WAIT) else {
        say("no config partition: using the kernel command line and defaults");
        return false;
    };
    if let Err(e) = storage::mount_config(&part) {
        say(&format!("{e}: {}", source_text(&e)));
        return false;
    }
    let reset = Path::new(storage::FACTORY_RESET_MARKER).exists();
    if reset {
        say("FACTORY RESET requested: erasing the data partition and the configuration");
        if let Err(e) = storage::with_config_writable(|| remove_if_present(config::CONFIG_FILE)) {
            say(&format!("cannot remove {}: {e}", config::CONFIG_FILE));
        }
    }
    reset
}

fn remove_if_present(path: &str) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn source_text(e: &dyn std::error::Error) -> String {
    e.source().map_or(String::new(), |s| s.to_string())
}

/// Finds, grows, formats (first boot, factory reset) and mounts the data partition, then
/// refreshes the entropy seed kept there.
fn mount_data(config: &Config, reset: bool) {
    let sys_block = Path::new("/sys/class/block");
    let part = match &config.data {
        config::DataDevice::PartLabel(l) => storage::wait_for_partition(l, DISK_WAIT),
        config::DataDevice::Path(p) => storage::partition_of_device(sys_block, p),
    };
    let Some(part) = part else {
        say(&format!(
            "NO DATA PARTITION ({}): /data is in memory and is lost at power-off",
            config.data
        ));
        return;
    };
    match storage::prepare_data(&part, reset) {
        Ok(storage::DataOutcome::Created { dev, bytes }) => say(&format!(
            "data partition created (ext4, {} MiB) on {}",
            bytes >> 20,
            dev.display()
        )),
        Ok(storage::DataOutcome::Mounted { dev, grown_to }) => {
            say(&format!("data partition mounted ({})", dev.display()));
            if let Some(b) = grown_to {
                say(&format!("data filesystem grown to {} MiB", b >> 20));
            }
        }
        Err(e) => {
            say(&format!(
                "DATA PARTITION UNUSABLE: {e}: {}; /data is in memory",
                source_text(&e)
            ));
            return;
        }
    }
    if reset
        && let Err(e) =
            storage::with_config_writable(|| remove_if_present(storage::FACTORY_RESET_MARKER))
    {
        say(&format!(
            "cannot remove {}: {e}",
            storage::FACTORY_RESET_MARKER
        ));
    }
    let seed = Path::new(entropy::SEED_FILE);
    match entropy::credit_seed(seed) {
        Ok(m) => say(&format!("entropy seed: {m}")),
        Err(e) => say(&format!("entropy seed: {e}")),
    }
    // The new seed's write and sync (tens of ms) need not hold up the services.
    std::thread::spawn(move || {
        if let Err(e) = entropy::save_seed(seed) {
            say(&format!("cannot save a new entropy seed: {e}"));
        }
    });
}

/// The script udhcpc runs: it calls us back as `/init dhcp-event`.
fn write_udhcpc_script() {
    use std::os::unix::fs::PermissionsExt;
    let path = Path::new(net::UDHCPC_SCRIPT);
    let r = std::fs::write(path, net::udhcpc_script("/init"))
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)));
    if let Err(e) = r {
        say(&format!("cannot write {}: {e}", path.display()));
    }
}

fn boot() -> Result<Infallible, Pid1Error> {
    // Before anything can spawn a thread or child: signals are handled synchronously.
    sys::block_signals(SIGNALS).map_err(Pid1Error::Signals)?;
    mount_all();
    if let Err(e) = sys::attach_console("/dev/console") {
        say(&format!("cannot open /dev/console: {e}"));
    }
    if let Err(e) = crate::log::copy_to(&Path::new(services::LOG_DIR).join("init.log")) {
        say(&format!("cannot open init's log: {e}"));
    }
    // Drivers first, loaded in the background; each step waits only for the modules it
    // needs (a partition appears once its disk's driver has probed, which the step polls
    // for): the config partition is read and the network set up while ext4 loads. The
    // loader goes on with the other disk controllers' drivers (when the partitions were
    // found without them, only once `ready` opens `after_ready`, or AFTER_READY_LIMIT after
    // the services started if `ready` never comes), then the modules nothing before `ready`
    // needs, and arms the watchdog.
    let modules = Arc::new(module_plans());
    let finished = Arc::new(Finished::new(modules.boot.files.len()));
    let disks_loaded = Arc::new(Finished::new(1));
    let after_ready = Arc::new(Finished::new(1));
    let (watchdog_tx, watchdog_rx) = std::sync::mpsc::channel();
    {
        let modules = Arc::clone(&modules);
        let (finished, disks_loaded) = (Arc::clone(&finished), Arc::clone(&disks_loaded));
        let after_ready = Arc::clone(&after_ready);
        std::thread::spawn(move || {
            load_modules(&modules.boot, Some(&finished), "modules loaded");
            if !modules.disks.files.is_empty() {
                if storage::appliance_disk_found() {
                    after_ready.wait_for(&[0]);
                }
                load_modules(&modules.disks, None, "disk controllers' drivers loaded");
            }
            disks_loaded.mark(0);
            after_ready.wait_for(&[0]);
            load_modules(&modules.later, None, "later modules loaded");
            let _ = watchdog_tx.send(open_watchdog());
        });
    }
    let needs = |group: &[&str]| modules.boot.needed_for(group);
    finished.wait_for(&needs(plan::CONFIG_FS));
    let reset = mount_config();
    let config = read_config();
    if config.debug {
        say("debug output on");
    }
    if !config.aslr.enabled(sys::software_emulation()) {
        // Under TCG, QEMU translates a program's code anew for every address it is loaded
        // at: with a fixed layout, the code storaged and deployd share (one multi-call
        // binary) and every later streamerctl are translated once (ARCHITECTURE.md §12,
        // item 6: /init → ready 0.92 → 0.80 s with the stores' read-only opens).
        match sys::no_address_randomization_for_children() {
            Ok(()) if config.aslr == config::Aslr::Auto => say(
                "software emulation (TCG): the services start at fixed addresses, so QEMU \
                 translates their code once (aslr = on keeps them randomised)",
            ),
            Ok(()) => say("aslr = off: the services start at fixed addresses"),
            Err(e) => say(&format!("cannot turn address randomisation off: {e}")),
        }
    }
    let _ = std::fs::create_dir_all(services::RUN_DIR);
    // The network (rtnetlink) and the data partition (mke2fs on a first boot, the mount, the
    // entropy seed) do not depend on each other: side by side.
    let net = std::thread::scope(|s| {
        let net = s.spawn(|| {
            finished.wait_for(&needs(plan::NIC_DRIVERS));
            net::configure(&config, NET_WAIT, &say)
        });
        finished.wait_for(&needs(plan::DATA_FS));
        if matches!(config.data, config::DataDevice::Path(_)) {
            // A device named by path is looked up once, not polled for: every disk driver
            // first.
            after_ready.mark(0);
            disks_loaded.wait_for(&[0]);
        }
        mount_data(&config, reset);
        net.join().unwrap_or_default()
    });
    // The daemons make keys and seeds at start: the kernel's generator must be ready (the
    // virtio-rng driver and the seed from /data, credited above, are what make it so).
    finished.wait_for(&needs(&[plan::RNG_DRIVERS, plan::POWER_BUTTON].concat()));
    power::watch(say);
    match entropy::wait_for_crng() {
        Ok(t) => say(&format!("random generator ready ({} ms)", t.as_millis())),
        Err(e) => say(&format!("cannot wait for the random generator: {e}")),
    }
    if let Err(e) = sys::sethostname(&config.hostname) {
        say(&format!("cannot set hostname {}: {e}", config.hostname));
    }
    // Ctrl-alt-del becomes SIGINT to us instead of an immediate reboot.
    if let Err(e) = sys::reboot(libc::RB_DISABLE_CAD) {
        say(&format!("cannot disable ctrl-alt-del: {e}"));
    }
    if net.dhcp {
        write_udhcpc_script();
    }
    // A pair member runs etcd, which the image carries on the ESP.
    if crate::plan::paired() {
        match storage::install_etcd() {
            Ok(true) => say("etcd unpacked from the ESP"),
            Ok(false) => {}
            Err(e) => say(&format!("cannot install etcd: {e}")),
        }
    }
    let plan = Plan::new(
        config,
        (*modules).clone(),
        Path::new("/usr/bin"),
        net.mgmt_if.as_deref(),
    )?;
    if plan.config.debug {
        say(&format!("plan:\n{plan}"));
    }
    let mut watchdog = None;
    let mut services = plan.services.clone();
    let tty = Path::new("/dev").join(&plan.config.console);
    if tty.exists() {
        services.push(services::console_service("/init", &tty));
    } else {
        say(&format!("no {}: no maintenance menu", tty.display()));
    }
    let mut rt = Runtime::new(&services, Policy::default(), alert::ALERT_DIR.into())?;
    let mut status = String::new();
    let mut announced = false;
    let mut announced_address = None;
    let started = Instant::now();
    loop {
        rt.pump();
        let now = rt.status_text();
        if now != status {
            if let Err(e) = net::write_atomic(Path::new(services::STATUS_FILE), &now) {
                say(&format!("cannot write {}: {e}", services::STATUS_FILE));
            }
            status = now;
        }
        if !announced && started.elapsed() > AFTER_READY_LIMIT {
            // A service that never gets ready must not keep the watchdog unarmed.
            after_ready.mark(0);
        }
        if let Ok(w) = watchdog_rx.try_recv() {
            watchdog = w;
        }
        if let Some(w) = watchdog.as_mut() {
            w.pet_if_due();
        }
        let ready = announced || rt.all_ready();
        let address = ready
            .then(|| net::mgmt_address(Path::new(net::MGMT_ADDRESS_FILE)))
            .flatten();
        if !announced && ready {
            // With DHCP the ready line waits for the lease, for at most ADDRESS_WAIT.
            if address.is_some() || started.elapsed() > ADDRESS_WAIT {
                if address.is_none() {
                    explain_no_lease();
                }
                crate::log::announce(&plan::ready_line(&plan.config, address.as_deref()));
                announce_first_password();
                say(&format!(
                    "ready after {:.3} s (kernel clock)",
                    sys::boottime().as_secs_f64()
                ));
                announced = true;
                announced_address = address;
                after_ready.mark(0);
            }
        } else if announced && address.is_some() && address != announced_address {
            // A lease that came late, or a new one: the console shows where the API is.
            crate::log::announce(&plan::ready_line(&plan.config, address.as_deref()));
            announced_address = address;
        }
        // Poll readiness often until ready (each service starts as soon as the one before
        // it answers; a probe is a stat or a connect); afterwards wake for signals and
        // restarts.
        let mut wait = if announced {
            Duration::from_secs(5)
        } else {
            Duration::from_millis(10)
        };
        if let Some(at) = rt.next_restart() {
            wait = wait.min(at.saturating_duration_since(Instant::now()));
        }
        if let Some(sig) = sys::wait_signal(SIGNALS, wait) {
            if let Some((_, to)) = FORWARDED.iter().find(|(s, _)| *s == sig) {
                rt.signal(to, sig);
            } else if let Some(how) = on_signal(sig) {
                shutdown(&mut rt, how, watchdog.take());
            }
        }
    }
}

/// Says on the console why the ready line has no address: the DHCP client's last lines.
fn explain_no_lease() {
    let log = Path::new(services::LOG_DIR).join("dhcp.log");
    say(&format!(
        "no DHCP lease after {} s: the API answers on every address once one comes; \
         check the management network's cable and DHCP server, or set a static address \
         in the menu. The DHCP client's last lines ({}):",
        ADDRESS_WAIT.as_secs(),
        log.display()
    ));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    for l in &lines[lines.len().saturating_sub(8)..] {
        say(&format!("  {l}"));
    }
}

/// Opens and arms the hardware watchdog when there is one.
fn open_watchdog() -> Option<Watchdog> {
    match Watchdog::open() {
        None => None,
        Some(Ok(w)) => {
            say(&format!("watchdog armed ({} s)", w.timeout.as_secs()));
            Some(w)
        }
        Some(Err(e)) => {
            say(&format!("cannot open the watchdog: {e}"));
            None
        }
    }
}

/// Until the first-start Administrator password is changed, the console shows it after the
/// ready line: the operator at the serial port needs it for the first login.
fn announce_first_password() {
    let file = Path::new(services::DEPLOYD_STATE).join(appliance_layout::INITIAL_PASSWORD_FILE);
    if let Ok(p) = std::fs::read_to_string(file) {
        crate::log::announce(&format!(
            "streamer: first login: Administrator / {} (shown until the password is changed)",
            p.trim()
        ));
    }
}

fn shutdown(rt: &mut Runtime, how: Shutdown, watchdog: Option<Watchdog>) -> ! {
    say(&format!("{how:?}: stopping services"));
    rt.stop_all(STOP_GRACE);
    // Disarmed only now: a hang while stopping the services still reboots the machine.
    if let Some(w) = watchdog {
        w.disarm();
    }
    if Path::new(entropy::SEED_FILE).exists() {
        let _ = entropy::save_seed(Path::new(entropy::SEED_FILE));
    }
    for dir in [storage::DATA_DIR, storage::CONFIG_DIR] {
        if let Err(e) = sys::umount(dir)
            && e.raw_os_error() != Some(libc::EINVAL)
        {
            say(&format!("cannot unmount {dir}: {e}"));
        }
    }
    say("syncing disks");
    sys::sync();
    // Power-off cuts the serial port: the last lines go out first.
    crate::log::drain(Duration::from_secs(2));
    if let Err(e) = sys::reboot(how.reboot_cmd()) {
        say(&format!("reboot failed: {e}"));
    }
    idle_forever()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_to_shutdowns() {
        assert_eq!(on_signal(libc::SIGTERM), Some(Shutdown::PowerOff));
        assert_eq!(on_signal(libc::SIGINT), Some(Shutdown::PowerOff));
        assert_eq!(on_signal(libc::SIGUSR1), Some(Shutdown::Reboot));
        assert_eq!(on_signal(libc::SIGCHLD), None);
        // Forwarded, not a shutdown.
        assert_eq!(on_signal(libc::SIGHUP), None);
        assert!(FORWARDED.iter().all(|(s, _)| SIGNALS.contains(s)));
        assert_eq!(Shutdown::PowerOff.reboot_cmd(), libc::RB_POWER_OFF);
    }
}
