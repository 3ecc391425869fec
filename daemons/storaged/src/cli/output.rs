//! How results are printed: aligned text for people, JSON with `--json`.

use crate::store::{ExportRecord, VerifyReport, VolumeInfo, VolumeState};
use serde::Serialize;

/// Parses `4096`, `512K`, `512M`, `20G`, `1T` (binary units, optional `iB`/`B`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s:?} is not a size (examples: 1073741824, 512M, 20G)"))
}

/// `1.5 GiB`-style text.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn print_json<T: Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("storaged: cannot print JSON: {e}"),
    }
}

fn state(s: VolumeState) -> &'static str {
    match s {
        VolumeState::Writable => "writable",
        VolumeState::Frozen => "frozen",
    }
}

pub fn volume(v: &VolumeInfo, json: bool) {
    if json {
        return print_json(v);
    }
    let r = &v.record;
    println!("id:          {}", r.id);
    println!("name:        {}", r.name);
    println!("state:       {}", state(r.state));
    println!("size:        {} ({} bytes)", human(r.size), r.size);
    println!(
        "allocated:   {} ({} bytes)",
        human(v.allocated_bytes),
        v.allocated_bytes
    );
    println!("block size:  {}", r.block_size);
    if !v.parent_chain.is_empty() {
        println!("parents:     {}", v.parent_chain.join(" -> "));
    }
    if !v.children.is_empty() {
        println!("children:    {}", v.children.join(", "));
    }
    if let Some(c) = &r.checksum {
        println!("checksum:    {c}");
    }
    if let Some(o) = &r.origin {
        println!("origin:      {o}");
    }
    match &v.export {
        Some(e) => println!("export:      {}", describe_export(e)),
        None => println!("export:      not exported"),
    }
    println!("connections: {}", v.connections);
}

pub fn volumes(list: &[VolumeInfo], json: bool) {
    if json {
        return print_json(&list);
    }
    println!(
        "{:<36}  {:<24}  {:<8}  {:>10}  {:>10}  {:<8}  PARENT",
        "ID", "NAME", "STATE", "SIZE", "ALLOCATED", "EXPORTED"
    );
    for v in list {
        let r = &v.record;
        println!(
            "{:<36}  {:<24}  {:<8}  {:>10}  {:>10}  {:<8}  {}",
            r.id,
            r.name,
            state(r.state),
            human(r.size),
            human(v.allocated_bytes),
            if v.export.is_some() { "yes" } else { "no" },
            r.parent.as_deref().unwrap_or("-")
        );
    }
}

fn describe_export(e: &ExportRecord) -> String {
    let who = if e.allow.is_empty() {
        "any client".to_string()
    } else {
        e.allow
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut iscsi = String::new();
    if let Some(a) = &e.iscsi {
        if !a.initiators.is_empty() {
            iscsi += &format!("; iSCSI initiators {}", a.initiators.join(", "));
        }
        if let Some(c) = &a.chap {
            iscsi += &format!("; CHAP user {}", c.user);
        }
        if a.mutual_chap.is_some() {
            iscsi += " (mutual)";
        }
    }
    format!(
        "{who}{}{iscsi}",
        if e.read_only { " (read-only)" } else { "" }
    )
}

pub fn exports(list: &[ExportRecord], json: bool) {
    if json {
        // CHAP secrets are never printed.
        let shown: Vec<ExportRecord> = list
            .iter()
            .cloned()
            .map(|mut e| {
                if let Some(a) = &mut e.iscsi {
                    for c in [&mut a.chap, &mut a.mutual_chap].into_iter().flatten() {
                        c.secret = "(hidden)".into();
                    }
                }
                e
            })
            .collect();
        return print_json(&shown);
    }
    for e in list {
        println!("{}  {}", e.volume, describe_export(e));
    }
}

pub fn verify(r: &VerifyReport, json: bool) {
    if json {
        return print_json(r);
    }
    for p in &r.problems {
        println!("{}: {}", p.subject, p.what);
    }
    println!(
        "{} volume(s) checked, {} checksum(s) compared, {} problem(s)",
        r.volumes_checked,
        r.checksums_checked,
        r.problems.len()
    );
}

pub fn done(msg: &str, json: bool) {
    if json {
        print_json(&serde_json::json!({ "result": msg }));
    } else {
        println!("{msg}");
    }
}

/// A progress bar on stderr; hidden with `--json` or when stderr is not a terminal.
#[derive(Debug)]
pub struct ProgressBar(indicatif::ProgressBar);

impl ProgressBar {
    pub fn new(what: &str, json: bool) -> Self {
        let bar = if json {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(0)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        Self(bar)
    }

    pub fn update(&self, done: u64, total: u64) {
        self.0.set_length(total);
        self.0.set_position(done);
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("20GiB"), Ok(20 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
