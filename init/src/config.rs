//! The appliance configuration: the kernel command line (`streamer.*` keys) over the
//! configuration file on the config partition (`/config/streamer.conf`, `key = value`) over
//! built-in defaults.
//!
//! Pure parsing: nothing here touches the system, so a bad key can be reported by name
//! before init acts on it.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Where the configuration file lives once the config partition is mounted.
pub const CONFIG_FILE: &str = "/config/streamer.conf";

/// The keys this module understands, without the `streamer.` prefix of the command line.
const KEYS: &[&str] = &[
    "mgmt",
    "mgmt_if",
    "deploy",
    "deploy_if",
    "hostname",
    "data",
    "console",
    "debug",
    "aslr",
    "plan_run_minutes",
];

/// How the management interface gets its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mgmt {
    Dhcp,
    Static {
        address: IpAddr,
        prefix_len: u8,
        gateway: Option<IpAddr>,
        dns: Vec<IpAddr>,
    },
}

impl fmt::Display for Mgmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mgmt::Dhcp => f.write_str("dhcp"),
            Mgmt::Static {
                address,
                prefix_len,
                gateway,
                dns,
            } => {
                write!(f, "static:{address}/{prefix_len}")?;
                if let Some(gw) = gateway {
                    write!(f, ",gw={gw}")?;
                }
                for d in dns {
                    write!(f, ",dns={d}")?;
                }
                Ok(())
            }
        }
    }
}

/// Which block device holds the data partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDevice {
    /// A GPT partition name (`PARTLABEL=streamer-data`), found under /dev/disk/by-partlabel
    /// or by scanning /sys/class/block.
    PartLabel(String),
    /// An explicit device node (`/dev/vda3`).
    Path(PathBuf),
}

impl fmt::Display for DataDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataDevice::PartLabel(l) => write!(f, "PARTLABEL={l}"),
            DataDevice::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Address-space layout randomisation for the processes init starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aslr {
    /// On, except under QEMU's software emulation (TCG): there every process's code is
    /// translated anew for each address it is loaded at, so a fixed layout lets the
    /// daemons, the console and every `streamerctl` share one translation. Hardware and
    /// hardware-assisted VMs keep it on.
    Auto,
    On,
    Off,
}

impl Aslr {
    /// Whether processes get randomised addresses, given whether the CPU is emulated.
    pub fn enabled(self, software_emulation: bool) -> bool {
        match self {
            Aslr::Auto => !software_emulation,
            Aslr::On => true,
            Aslr::Off => false,
        }
    }
}

impl fmt::Display for Aslr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Aslr::Auto => "auto",
            Aslr::On => "on",
            Aslr::Off => "off",
        })
    }
}

/// The resolved configuration init acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub mgmt: Mgmt,
    /// The management interface; `None` = the first Ethernet device by name.
    pub mgmt_if: Option<String>,
    /// The deployment (enclosure) network address, always static; `None` = not configured.
    pub deploy: Option<Mgmt>,
    /// The deployment interface; `None` = the second Ethernet device by name.
    pub deploy_if: Option<String>,
    pub hostname: String,
    pub data: DataDevice,
    pub console: String,
    pub debug: bool,
    pub aslr: Aslr,
    /// Wall-clock limit of one plan run, in minutes; `None` = deployd's default.
    pub plan_run_minutes: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mgmt: Mgmt::Dhcp,
            mgmt_if: None,
            deploy: None,
            deploy_if: None,
            hostname: "streamer".to_owned(),
            data: DataDevice::PartLabel(crate::storage::DATA_PARTITION.to_owned()),
            console: "ttyS0".to_owned(),
            debug: false,
            aslr: Aslr::Auto,
            plan_run_minutes: None,
        }
    }
}

/// Settings from one source; `None` means "not said here".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub mgmt: Option<Mgmt>,
    pub mgmt_if: Option<String>,
    pub deploy: Option<Mgmt>,
    pub deploy_if: Option<String>,
    pub hostname: Option<String>,
    pub data: Option<DataDevice>,
    pub console: Option<String>,
    pub debug: Option<bool>,
    pub aslr: Option<Aslr>,
    pub plan_run_minutes: Option<u32>,
}

impl Settings {
    /// Keeps what `self` says and takes the rest from `lower`.
    pub fn over(self, lower: Settings) -> Settings {
        Settings {
            mgmt: self.mgmt.or(lower.mgmt),
            mgmt_if: self.mgmt_if.or(lower.mgmt_if),
            deploy: self.deploy.or(lower.deploy),
            deploy_if: self.deploy_if.or(lower.deploy_if),
            hostname: self.hostname.or(lower.hostname),
            data: self.data.or(lower.data),
            console: self.console.or(lower.console),
            debug: self.debug.or(lower.debug),
            aslr: self.aslr.or(lower.aslr),
            plan_run_minutes: self.plan_run_minutes.or(lower.plan_run_minutes),
        }
    }

    /// Fills what no source said with the defaults.
    pub fn resolve(self) -> Config {
        let d = Config::default();
        Config {
            mgmt: self.mgmt.unwrap_or(d.mgmt),
            mgmt_if: self.mgmt_if.or(d.mgmt_if),
            deploy: self.deploy.or(d.deploy),
            deploy_if: self.deploy_if.or(d.deploy_if),
            hostname: self.hostname.unwrap_or(d.hostname),
            data: self.data.unwrap_or(d.data),
            console: self.console.unwrap_or(d.console),
            debug: self.debug.unwrap_or(d.debug),
            aslr: self.aslr.unwrap_or(d.aslr),
            plan_run_minutes: self.plan_run_minutes.or(d.plan_run_minutes),
        }
    }

    fn set(&mut self, origin: &Origin, key: &str, value: Option<&str>) -> Result<(), ConfigError> {
        let bad = |reason: String| ConfigError::InvalidValue {
            origin: origin.clone(),
            key: key.to_owned(),
            value: value.unwrap_or("").to_owned(),
            reason,
        };
        let required = || value.ok_or_else(|| bad("a value is required".to_owned()));
        match key {
            "mgmt" => self.mgmt = Some(parse_mgmt(required()?).map_err(bad)?),
            "mgmt_if" => self.mgmt_if = Some(parse_ifname(required()?).map_err(bad)?),
            "deploy" => self.deploy = Some(parse_deploy(required()?).map_err(bad)?),
            "deploy_if" => self.deploy_if = Some(parse_ifname(required()?).map_err(bad)?),
            "hostname" => self.hostname = Some(parse_hostname(required()?).map_err(bad)?),
            "data" => self.data = Some(parse_data(required()?).map_err(bad)?),
            "console" => self.console = Some(parse_console(required()?).map_err(bad)?),
            "debug" => self.debug = Some(parse_bool(value).map_err(bad)?),
            "aslr" => self.aslr = Some(parse_aslr(required()?).map_err(bad)?),
            "plan_run_minutes" => {
                self.plan_run_minutes = Some(parse_minutes(required()?).map_err(bad)?)
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    origin: origin.clone(),
                    key: key.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Cmdline,
    File { path: PathBuf, line: usize },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Cmdline => f.write_str("kernel command line"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: unknown key `{key}` (known: {})", KEYS.join(", "))]
    UnknownKey { origin: Origin, key: String },
    #[error("{origin}: bad value {value:?} for `{key}`: {reason}")]
    InvalidValue {
        origin: Origin,
        key: String,
        value: String,
        reason: String,
    },
    #[error("{origin}: expected `key = value`, found {text:?}")]
    Syntax { origin: Origin, text: String },
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Splits a kernel command line into words the way the kernel does: on whitespace, with
/// double quotes protecting spaces (`key="a b"`); the quotes themselves are dropped.
pub fn split_cmdline(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The `streamer.*` settings of a kernel command line; other words are the kernel's and
/// are ignored.
pub fn parse_cmdline(cmdline: &str) -> Result<Settings, ConfigError> {
    let mut settings = Settings::default();
    for word in split_cmdline(cmdline) {
        let Some(rest) = word.strip_prefix("streamer.") else {
            continue;
        };
        let (key, value) = match rest.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (rest, None),
        };
        settings.set(&Origin::Cmdline, key, value)?;
    }
    Ok(settings)
}

/// The settings of a configuration file: `key = value` lines, `#` comments, blank lines;
/// keys may carry the command line's `streamer.` prefix; values may be double-quoted.
pub fn parse_file(path: &Path, text: &str) -> Result<Settings, ConfigError> {
    let mut settings = Settings::default();
    for (i, line) in text.lines().enumerate() {
        let origin = Origin::File {
            path: path.to_owned(),
            line: i + 1,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfigError::Syntax {
                origin,
                text: line.to_owned(),
            });
        };
        let key = key.trim();
        let key = key.strip_prefix("streamer.").unwrap_or(key);
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        settings.set(&origin, key, Some(value))?;
    }
    Ok(settings)
}

/// Reads the configuration file; a missing file is no settings, not an error (first boot).
pub fn read_file(path: &Path) -> Result<Settings, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_file(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
        Err(source) => Err(ConfigError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Command line over file over defaults.
pub fn load(cmdline: &str, file: Settings) -> Result<Config, ConfigError> {
    Ok(parse_cmdline(cmdline)?.over(file).resolve())
}

/// `text` (a configuration file) with `key` set to `value`: the key's existing line (with or
/// without the `streamer.` prefix) is replaced, else a line is appended; comments and other
/// keys are kept as they are.
pub fn set_key(text: &str, key: &str, value: &str) -> String {
    let mut out = String::new();
    let mut done = false;
    for line in text.lines() {
        let k = line.split_once('=').map(|(k, _)| k.trim());
        let k = k.map(|k| k.strip_prefix("streamer.").unwrap_or(k));
        if !line.trim_start().starts_with('#') && k == Some(key) {
            if !done {
                out.push_str(&format!("{key} = {value}\n"));
                done = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !done {
        out.push_str(&format!("{key} = {value}\n"));
    }
    out
}

/// Parses a management setting (`dhcp`, or `static:ADDR/PREFIX[,gw=IP][,dns=IP]...`).
pub fn parse_mgmt(v: &str) -> Result<Mgmt, String> {
    if v == "dhcp" {
        return Ok(Mgmt::Dhcp);
    }
    let Some(rest) = v.strip_prefix("static:") else {
        return Err("expected `dhcp` or `static:ADDR/PREFIX[,gw=ADDR][,dns=ADDR...]`".to_owned());
    };
    let mut parts = rest.split(',');
    let cidr = parts.next().unwrap_or("");
    let (addr, prefix) = cidr
        .split_once('/')
        .ok_or_else(|| format!("address {cidr:?} needs a prefix length, e.g. 10.0.0.2/24"))?;
    let address: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix_len: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("prefix length {prefix:?} is not in 0..={max}"))?;
    let mut gateway = None;
    let mut dns = Vec::new();
    for part in parts {
        let (k, val) = part
            .split_once('=')
            .ok_or_else(|| format!("option {part:?} is not `gw=ADDR` or `dns=ADDR`"))?;
        let ip = |s: &str| -> Result<IpAddr, String> {
            s.parse()
                .map_err(|_| format!("{k}: {s:?} is not an IP address"))
        };
        match k {
            "gw" => gateway = Some(ip(val)?),
            // Several servers: repeat `dns=` or join them with `+`.
            "dns" => {
                for s in val.split('+') {
                    dns.push(ip(s)?);
                }
            }
            _ => return Err(format!("unknown option {k:?} (known: gw, dns)")),
        }
    }
    Ok(Mgmt::Static {
        address,
        prefix_len,
        gateway,
        dns,
    })
}

/// The deployment network: compute modules reach their volumes there, so it is static.
fn parse_deploy(v: &str) -> Result<Mgmt, String> {
    match parse_mgmt(v)? {
        Mgmt::Dhcp => Err("the deployment network is static only: `static:ADDR/PREFIX`".to_owned()),
        m => Ok(m),
    }
}

/// A Linux interface name: 1 to 15 bytes, no `/`, whitespace or `:`.
fn parse_ifname(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 15
        && v != "."
        && v != ".."
        && !v.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(v.to_owned())
    } else {
        Err("expected an interface name of 1 to 15 characters, e.g. eth0".to_owned())
    }
}

/// RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
fn parse_hostname(v: &str) -> Result<String, String> {
    if v.is_empty() || v.len() > 253 {
        return Err("must be 1 to 253 characters".to_owned());
    }
    for label in v.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(format!(
                "label {label:?} must be 1 to 63 letters, digits or inner hyphens"
            ));
        }
    }
    Ok(v.to_owned())
}

fn parse_data(v: &str) -> Result<DataDevice, String> {
    if let Some(label) = v.strip_prefix("PARTLABEL=") {
        if label.is_empty() || label.contains('/') {
            return Err("PARTLABEL needs a name without `/`".to_owned());
        }
        return Ok(DataDevice::PartLabel(label.to_owned()));
    }
    if v.starts_with("/dev/") && v.len() > 5 && !v.contains("..") {
        return Ok(DataDevice::Path(PathBuf::from(v)));
    }
    Err("expected `PARTLABEL=NAME` or a device path under /dev/".to_owned())
}

fn parse_console(v: &str) -> Result<String, String> {
    let v = v.strip_prefix("/dev/").unwrap_or(v);
    // Accept the kernel's `console=` form too: `ttyS0,115200n8`.
    let name = v.split(',').next().unwrap_or("");
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err("expected a tty name such as ttyS0".to_owned());
    }
    Ok(name.to_owned())
}

fn parse_aslr(v: &str) -> Result<Aslr, String> {
    match v {
        "auto" => Ok(Aslr::Auto),
        "on" => Ok(Aslr::On),
        "off" => Ok(Aslr::Off),
        _ => Err("expected auto, on or off".to_owned()),
    }
}

fn parse_minutes(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if (1..=1440).contains(&n) => Ok(n),
        _ => Err("expected a whole number of minutes from 1 to 1440".to_owned()),
    }
}

fn parse_bool(v: Option<&str>) -> Result<bool, String> {
    match v {
        None | Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(_) => Err("expected a bare flag or one of 1/0, true/false, yes/no, on/off".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_run_minutes_is_a_bounded_number_of_minutes() {
        assert_eq!(Config::default().plan_run_minutes, None);
        let file = parse_file(Path::new("/c.conf"), "plan_run_minutes = 45\n").unwrap();
        assert_eq!(load("", file.clone()).unwrap().plan_run_minutes, Some(45));
        assert_eq!(
            load("streamer.plan_run_minutes=5", file)
                .unwrap()
                .plan_run_minutes,
            Some(5)
        );
        for bad in ["0", "1441", "ten", "-3"] {
            let e = parse_file(Path::new("/c.conf"), &format!("plan_run_minutes = {bad}\n"))
                .unwrap_err();
            assert!(e.to_string().contains("minutes from 1 to 1440"), "{e}");
        }
    }

    #[test]
    fn set_key_replaces_or_appends_and_keeps_the_rest() {
        let text = "# site settings\nhostname = a\nstreamer.mgmt = dhcp\nmgmt = dhcp\n";
        let t = set_key(text, "mgmt", "static:10.0.0.5/24,gw=10.0.0.1");
        assert_eq!(
            t,
            "# site settings\nhostname = a\nmgmt = static:10.0.0.5/24,gw=10.0.0.1\n"
        );
        let t = set_key(&t, "hostname", "b");
        assert!(t.contains("hostname = b\n") && !t.contains("hostname = a"));
        assert_eq!(set_key("", "mgmt", "dhcp"), "mgmt = dhcp\n");
        let s = parse_file(Path::new("x"), &t).unwrap();
        assert_eq!(s.hostname.as_deref(), Some("b"));
    }
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_when_nothing_is_said() {
        let c = load("root=/dev/vda console=ttyS0 quiet", Settings::default()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.mgmt, Mgmt::Dhcp);
        assert_eq!(c.data, DataDevice::PartLabel("streamer-data".into()));
    }

    #[test]
    fn full_command_line() {
        let c = load(
            "quiet streamer.mgmt=static:10.0.0.2/24,gw=10.0.0.1,dns=1.1.1.1+9.9.9.9,dns=8.8.8.8 \
             streamer.hostname=sis-1.lab streamer.data=/dev/vda3 streamer.console=ttyS1 streamer.debug",
            Settings::default(),
        )
        .unwrap();
        assert_eq!(
            c.mgmt,
            Mgmt::Static {
                address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                prefix_len: 24,
                gateway: Some(ip("10.0.0.1")),
                dns: vec![ip("1.1.1.1"), ip("9.9.9.9"), ip("8.8.8.8")],
            }
        );
        assert_eq!(c.hostname, "sis-1.lab");
        assert_eq!(c.data, DataDevice::Path("/dev/vda3".into()));
        assert_eq!(c.console, "ttyS1");
        assert!(c.debug);
        assert_eq!(
            c.mgmt.to_string(),
            "static:10.0.0.2/24,gw=10.0.0.1,dns=1.1.1.1,dns=9.9.9.9,dns=8.8.8.8"
        );
    }

    #[test]
    fn ipv6_static_and_partlabel() {
        let s = parse_cmdline(
            "streamer.mgmt=static:fd00::2/64,gw=fd00::1 streamer.data=PARTLABEL=other",
        )
        .unwrap();
        assert_eq!(
            s.mgmt,
            Some(Mgmt::Static {
                address: ip("fd00::2"),
                prefix_len: 64,
                gateway: Some(ip("fd00::1")),
                dns: vec![],
            })
        );
        assert_eq!(s.data, Some(DataDevice::PartLabel("other".into())));
    }

    #[test]
    fn quotes_protect_spaces_and_are_dropped() {
        assert_eq!(
            split_cmdline(r#"a "b c" d="e f"  g"#),
            vec!["a", "b c", "d=e f", "g"]
        );
        let s = parse_cmdline(r#"streamer.hostname="box""#).unwrap();
        assert_eq!(s.hostname.as_deref(), Some("box"));
    }

    #[test]
    fn cmdline_beats_file_beats_defaults() {
        let file = parse_file(
            Path::new("/config/streamer.conf"),
            "# appliance settings\n\
             hostname = from-file\n\
             streamer.mgmt = \"static:192.168.1.5/16,gw=192.168.0.1\"\n\
             \n\
             debug = yes\n",
        )
        .unwrap();
        let c = load("streamer.hostname=from-cmdline streamer.debug=0", file).unwrap();
        assert_eq!(c.hostname, "from-cmdline");
        assert!(!c.debug);
        assert_eq!(
            c.mgmt,
            Mgmt::Static {
                address: ip("192.168.1.5"),
                prefix_len: 16,
                gateway: Some(ip("192.168.0.1")),
                dns: vec![],
            }
        );
        assert_eq!(c.console, "ttyS0");
    }

    #[test]
    fn errors_name_the_key_and_origin() {
        let e = parse_cmdline("streamer.mgmt=static:10.0.0.2").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("kernel command line") && msg.contains("`mgmt`"),
            "{msg}"
        );
        assert!(msg.contains("prefix length"), "{msg}");

        let e = parse_cmdline("streamer.hostnme=x").unwrap_err();
        assert!(e.to_string().contains("unknown key `hostnme`"), "{e}");

        let e = parse_cmdline("streamer.mgmt=static:10.0.0.2/33").unwrap_err();
        assert!(e.to_string().contains("0..=32"), "{e}");

        let e = parse_cmdline("streamer.mgmt=static:10.0.0.2/24,gw=nope").unwrap_err();
        assert!(e.to_string().contains("gw: \"nope\""), "{e}");

        let e = parse_file(Path::new("/c.conf"), "\n\nhostname = -bad-\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("/c.conf:3: bad value \"-bad-\" for `hostname`"),
            "{msg}"
        );

        let e = parse_file(Path::new("/c.conf"), "just words\n").unwrap_err();
        assert!(
            e.to_string().contains("/c.conf:1: expected `key = value`"),
            "{e}"
        );

        for bad in [
            "streamer.data=/etc/passwd",
            "streamer.console=../x",
            "streamer.debug=maybe",
            "streamer.hostname",
            "streamer.aslr=yes",
            "streamer.aslr",
        ] {
            assert!(parse_cmdline(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn aslr_is_auto_unless_said_and_auto_turns_it_off_only_under_emulation() {
        let c = load("console=ttyS0", Settings::default()).unwrap();
        assert_eq!(c.aslr, Aslr::Auto);
        assert!(c.aslr.enabled(false));
        assert!(!c.aslr.enabled(true));
        let file = parse_file(Path::new("/c.conf"), "aslr = off\n").unwrap();
        assert_eq!(load("", file.clone()).unwrap().aslr, Aslr::Off);
        // The command line wins over the file.
        let c = load("streamer.aslr=on", file).unwrap();
        assert_eq!(c.aslr, Aslr::On);
        assert!(c.aslr.enabled(true));
        assert_eq!(c.aslr.to_string(), "on");
    }

    #[test]
    fn console_accepts_kernel_form() {
        let s = parse_cmdline("streamer.console=/dev/ttyS1,115200n8").unwrap();
        assert_eq!(s.console.as_deref(), Some("ttyS1"));
    }

    #[test]
    fn missing_file_is_empty_settings() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read_file(&dir.path().join("none")).unwrap(),
            Settings::default()
        );
        let p = dir.path().join("streamer.conf");
        std::fs::write(&p, "console=ttyS2\n").unwrap();
        assert_eq!(read_file(&p).unwrap().console.as_deref(), Some("ttyS2"));
    }

    #[test]
    fn deployment_network_and_interface_names() {
        let c = load(
            "streamer.deploy=static:10.10.0.1/24 streamer.deploy_if=eth1 streamer.mgmt_if=ens3",
            Settings::default(),
        )
        .unwrap();
        assert_eq!(c.mgmt_if.as_deref(), Some("ens3"));
        assert_eq!(c.deploy_if.as_deref(), Some("eth1"));
        assert!(matches!(
            c.deploy,
            Some(Mgmt::Static { prefix_len: 24, .. })
        ));
        let e = load("streamer.deploy=dhcp", Settings::default()).unwrap_err();
        assert!(e.to_string().contains("static only"), "{e}");
        let e = load("streamer.mgmt_if=a/b", Settings::default()).unwrap_err();
        assert!(e.to_string().contains("interface name"), "{e}");
        assert_eq!(Config::default().deploy, None);
    }
}
