//! The interpreter: runs a build plan's plan scripts, in order, against an attached OS volume.
//!
//! Guest commands act on the filesystems the script mounts ([`super::guest`]); local commands
//! (`!`, `<!`, pipes) and `command`/`sh` go through a [`LocalRunner`] (the sandbox). A command
//! that fails stops the run with its script and line, unless it has the `-` prefix. Every
//! command and its output go to the activity log, with password values masked. What the
//! interpreter itself may use (log, output, mounts, `glob`, files in memory) is bounded by
//! [`Limits`]; the runner can stop a run between commands (cancel, deadline).

use std::path::{Path, PathBuf};

use super::guest::dir::DirFs;
use super::guest::{GuestError, GuestFs, MAX_DEPTH, normalize};
use super::limits::Limits;
use planscript::commands::{Verb, check_arity};
use planscript::parse::{Command, CommandKind, parse};

/// What the interpreter needs from the attached OS volume.
pub trait Disk {
    /// Whole disks, e.g. `["/dev/sda"]`.
    fn devices(&self) -> Vec<String>;
    /// Partitions, e.g. `["/dev/sda1", "/dev/sda2"]`.
    fn partitions(&self) -> Vec<String>;
    /// Every partition and logical volume with its filesystem type (`ext4`, `vfat`, ...).
    fn filesystems(&mut self) -> Result<Vec<(String, String)>, String>;
    fn vgs(&mut self) -> Result<Vec<String>, String>;
    fn lvs(&mut self) -> Result<Vec<String>, String>;
    fn vgrename(&mut self, old: &str, new: &str) -> Result<(), String>;
    /// Mounts `device`: with the kernel on `host_dir` (returning a filesystem confined to
    /// it), or in user space where the kernel cannot.
    fn mount(
        &mut self,
        device: &str,
        host_dir: &Path,
        read_only: bool,
    ) -> Result<Box<dyn GuestFs>, String>;
    /// Unmounts what `mount` mounted on `host_dir` (nothing for user-space filesystems).
    fn unmount(&mut self, host_dir: &Path) -> Result<(), String>;
}

/// Result of a local or in-guest command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: i32,
}

/// Runs commands outside the guest-file API: local shell text in the sandbox (working
/// directory = the scratch directory), and programs inside the mounted guest.
pub trait LocalRunner {
    fn run_local(&self, text: &str, stdin: Option<&[u8]>) -> Result<LocalOutput, String>;
    fn run_in_guest(
        &self,
        root: &Path,
        argv: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<LocalOutput, String>;
    /// Why the run must stop before its next command (cancelled, out of time), if it must.
    fn stopped(&self) -> Option<String> {
        None
    }
}

/// One script of the run, attributes already substituted.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// Why a run stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plan script {script:?} line {line}: {command}: {message}")]
pub struct Failure {
    pub script: String,
    pub line: usize,
    pub command: String,
    pub message: String,
}

/// `<!` output may itself contain `<!`; this bounds the nesting.
const MAX_NESTING: usize = 8;

struct Mounted {
    point: Vec<String>,
    device: String,
    host_dir: PathBuf,
    fs: Box<dyn GuestFs>,
}

/// A plan-script run in progress.
pub struct Interpreter<'a> {
    disk: &'a mut dyn Disk,
    local: &'a dyn LocalRunner,
    scratch: DirFs,
    work: PathBuf,
    mounts: Vec<Mounted>,
    next_mount: usize,
    log: Vec<u8>,
    /// The log reached [`Limits::run_log`]: later lines are dropped.
    log_full: bool,
    secrets: Vec<String>,
    limits: Limits,
}

impl std::fmt::Debug for Interpreter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("work", &self.work)
            .field("mounts", &self.mounts.len())
            .finish_non_exhaustive()
    }
}

fn gerr(e: GuestError) -> String {
    e.to_string()
}

/// Errors of the filesystem mounted at `mount_point`, naming guest paths as scripts do.
fn at(mount_point: &str) -> impl Fn(GuestError) -> String + '_ {
    move |e| e.under(mount_point).to_string()
}

/// How a mount point is shown in front of paths inside it: `""` for `/`.
fn shown(point: &[String]) -> String {
    if point.is_empty() {
        String::new()
    } else {
        format!("/{}", point.join("/"))
    }
}

fn abs(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{path}: guest paths must be absolute (start with /)"
        ))
    }
}

/// guestfish reads numbers like C's strtol with base 0: `0755` is octal, `755` decimal.
fn parse_mode(s: &str) -> Result<u32, String> {
    let r = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8)
    } else {
        s.parse::<u32>()
    };
    r.map_err(|_| format!("{s:?} is not a mode (write it in octal with a leading 0, e.g. 0755)"))
}

/// Splits `command`'s single argument into argv, honouring simple quotes.
fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One element of a wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Star,
    Any,
    /// `[...]`: ranges and characters, negated with `!` or `^`.
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
    Literal(char),
}

fn tokens(pattern: &str) -> Vec<Token> {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '*' => {
                if out.last() != Some(&Token::Star) {
                    out.push(Token::Star);
                }
            }
            '?' => out.push(Token::Any),
            '[' => {
                let negated = matches!(p.get(i + 1), Some('!' | '^'));
                let first = i + 1 + usize::from(negated);
                // `]` right after `[` (or `[!`) is a member; the class ends at the next one.
                match p[(first + 1).min(p.len())..].iter().position(|&c| c == ']') {
                    Some(off) => {
                        let end = first + 1 + off;
                        let set = &p[first..end];
                        let mut items = Vec::new();
                        let mut k = 0;
                        while k < set.len() {
                            if k + 2 < set.len() && set[k + 1] == '-' {
                                items.push((set[k], set[k + 2]));
                                k += 3;
                            } else {
                                items.push((set[k], set[k]));
                                k += 1;
                            }
                        }
                        out.push(Token::Class { negated, items });
                        i = end;
                    }
                    None => out.push(Token::Literal('[')),
                }
            }
            c => out.push(Token::Literal(c)),
        }
        i += 1;
    }
    out
}

fn matches_one(token: &Token, c: char) -> bool {
    match token {
        Token::Star => true,
        Token::Any => true,
        Token::Class { negated, items } => {
            items.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
        Token::Literal(l) => *l == c,
    }
}

/// Shell-style wildcard match of one path component, in O(pattern × name) steps whatever the
/// pattern (backtracking only to the last `*`, as glob(3) implementations do).
fn wildcard(pattern: &str, name: &str) -> bool {
    let p = tokens(pattern);
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(Token::Star) => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(t) if matches_one(t, n[ni]) => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|t| *t == Token::Star)
}

impl<'a> Interpreter<'a> {
    /// A run with `scratch` as the local working directory and `work` for mount points.
    pub fn new(
        disk: &'a mut dyn Disk,
        local: &'a dyn LocalRunner,
        scratch: &Path,
        work: &Path,
        secrets: Vec<String>,
    ) -> Result<Self, String> {
        std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
        Ok(Self {
            disk,
            local,
            scratch: DirFs::open(scratch).map_err(gerr)?,
            work: work.to_path_buf(),
            mounts: Vec::new(),
            next_mount: 0,
            log: Vec::new(),
            log_full: false,
            secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
            limits: Limits::default(),
        })
    }

    /// The run's bounds (default: [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Files the run creates in the scratch directory belong to `uid`:`gid` (the sandbox's
    /// user), so local commands can change them.
    pub fn scratch_owner(mut self, uid: u32, gid: u32) -> Self {
        self.scratch = self.scratch.owned_by(uid, gid);
        self
    }

    /// Text with every secret replaced by `********`.
    pub fn mask(&self, text: &str) -> String {
        let mut t = text.to_string();
        for s in &self.secrets {
            t = t.replace(s.as_str(), "********");
        }
        t
    }

    /// Appends `text` (masked) to the activity log, as long as the log has room.
    fn note(&mut self, text: &str) {
        if self.log_full {
            return;
        }
        let mut masked = self.mask(text);
        if !masked.ends_with('\n') {
            masked.push('\n');
        }
        let room = self.limits.run_log.saturating_sub(self.log.len());
        if masked.len() > room {
            let mut cut = room;
            while !masked.is_char_boundary(cut) {
                cut -= 1;
            }
            self.log.extend_from_slice(&masked.as_bytes()[..cut]);
            self.log.extend_from_slice(
                format!(
                    "\n[streamer: the activity log reached its limit of {} bytes; later lines \
                     of this run are not kept]\n",
                    self.limits.run_log
                )
                .as_bytes(),
            );
            self.log_full = true;
            return;
        }
        self.log.extend_from_slice(masked.as_bytes());
    }

    /// Logs a command's output, keeping at most [`Limits::command_output`] bytes of it.
    fn note_output(&mut self, output: &[u8]) {
        if output.is_empty() {
            return;
        }
        // Masked whole first, so a cut can never leave part of a secret in the log.
        let text = self.mask(&String::from_utf8_lossy(output));
        let keep = self.limits.command_output;
        if text.len() <= keep {
            self.note(&text);
            return;
        }
        let mut cut = keep;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let dropped = text.len() - cut;
        self.note(&format!(
            "{}\n[streamer: {dropped} more bytes of this command's output are not kept; the \
             log keeps {keep} bytes per command]",
            &text[..cut]
        ));
    }

    /// Runs the scripts in order; stops at the first failing command without `-`.
    pub fn run(&mut self, sources: &[Source]) -> Result<(), Failure> {
        for s in sources {
            let script = parse(&s.text).map_err(|e| Failure {
                script: s.name.clone(),
                line: e.line,
                command: "(parse)".into(),
                message: self.mask(&e.message),
            })?;
            self.note(&format!("==== plan script {:?}", s.name));
            self.run_commands(&s.name, &script.commands, 0)?;
        }
        Ok(())
    }

    fn run_commands(
        &mut self,
        script: &str,
        commands: &[Command],
        depth: usize,
    ) -> Result<(), Failure> {
        for c in commands {
            let shown = self.describe(c);
            if let Some(why) = self.local.stopped() {
                self.note(&format!("[{script}:{}] not run: {why}", c.line));
                return Err(Failure {
                    script: script.to_string(),
                    line: c.line,
                    command: self.mask(&shown),
                    message: why,
                });
            }
            self.note(&format!("[{script}:{}] {shown}", c.line));
            if let Err(message) = self.exec(script, c, depth) {
                let message = self.mask(&message);
                if c.ignore_errors {
                    self.note(&format!("[{script}:{}] error (ignored): {message}", c.line));
                    continue;
                }
                self.note(&format!("[{script}:{}] error: {message}", c.line));
                return Err(Failure {
                    script: script.to_string(),
                    line: c.line,
                    command: self.mask(&shown),
                    message,
                });
            }
        }
        Ok(())
    }

    fn describe(&self, c: &Command) -> String {
        let prefix = if c.ignore_errors { "-" } else { "" };
        match &c.kind {
            CommandKind::Guest {
                name, args, pipe, ..
            } => {
                let mut s = format!("{prefix}{name} {}", args.join(" "));
                if let Some(p) = pipe {
                    s.push_str(&format!(" | {p}"));
                }
                s.trim_end().to_string()
            }
            CommandKind::Local(t) => format!("{prefix}!{t}"),
            CommandKind::LocalCommands(t) => format!("<!{t}"),
        }
    }

    fn exec(&mut self, script: &str, c: &Command, depth: usize) -> Result<(), String> {
        match &c.kind {
            CommandKind::Local(text) => {
                let out = self.local.run_local(text, None)?;
                self.log_output(&out);
                if out.status != 0 {
                    return Err(format!("local command exited with status {}", out.status));
                }
                Ok(())
            }
            CommandKind::LocalCommands(text) => {
                if depth >= MAX_NESTING {
                    return Err(format!("<! commands nested more than {MAX_NESTING} deep"));
                }
                let out = self.local.run_local(text, None)?;
                self.note_output(&out.stderr);
                if out.status != 0 {
                    return Err(format!("local command exited with status {}", out.status));
                }
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let parsed =
                    parse(&text).map_err(|e| format!("its output is not a valid script: {e}"))?;
                let nested: Vec<Command> = parsed
                    .commands
                    .into_iter()
                    .map(|mut n| {
                        n.line = c.line;
                        n
                    })
                    .collect();
                self.run_commands(script, &nested, depth + 1)
                    .map_err(|f| format!("{}: {}", f.command, f.message))
            }
            CommandKind::Guest {
                name,
                args,
                stdin,
                pipe,
            } => {
                let output = self.guest(name, args, stdin.as_deref())?;
                match pipe {
                    Some(p) => {
                        let out = self.local.run_local(p, Some(&output))?;
                        self.log_output(&out);
                        if out.status != 0 {
                            return Err(format!("{p}: exited with status {}", out.status));
                        }
                    }
                    None => self.note_output(&output),
                }
                Ok(())
            }
        }
    }

    fn log_output(&mut self, out: &super::exec::LocalOutput) {
        self.note_output(&out.stdout);
        self.note_output(&out.stderr);
    }

    /// The index of the mount holding `path`, and the path inside it.
    fn route_index(&self, path: &str) -> Result<(usize, String), String> {
        abs(path)?;
        let parts = normalize(path);
        let best = self
            .mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| parts.starts_with(&m.point))
            .max_by_key(|(_, m)| m.point.len())
            .map(|(i, _)| i)
            .ok_or_else(|| format!("{path}: no filesystem is mounted there: mount one first (e.g. mount /dev/sda1 /)"))?;
        let rel = parts[self.mounts[best].point.len()..].join("/");
        Ok((best, rel))
    }

    /// The mount holding `path` and the path inside it.
    fn route(&mut self, path: &str) -> Result<(&mut Mounted, String), String> {
        let (i, rel) = self.route_index(path)?;
        Ok((&mut self.mounts[i], rel))
    }

    /// Streams guest file `path` into scratch file `local` (relative to the scratch dir).
    fn guest_to_scratch(&mut self, path: &str, local: &str) -> Result<(), String> {
        let (i, rel) = self.route_index(path)?;
        let point = shown(&self.mounts[i].point);
        let mut from = self.mounts[i].fs.open_read(&rel).map_err(at(&point))?;
        self.scratch
            .write_from(local, &mut from, false)
            .map(|_| ())
            .map_err(gerr)
    }

    /// Streams scratch file `local` into guest file `path`.
    fn scratch_to_guest(&mut self, local: &str, path: &str) -> Result<(), String> {
        let (i, rel) = self.route_index(path)?;
        let point = shown(&self.mounts[i].point);
        let mut from = self.scratch.open_read(local).map_err(gerr)?;
        self.mounts[i]
            .fs
            .write_from(&rel, &mut from, false)
            .map(|_| ())
            .map_err(at(&point))
    }

    /// Streams a file from one mounted filesystem to another.
    fn guest_to_guest(&mut self, src: &str, dst: &str) -> Result<(), String> {
        let (i, srel) = self.route_index(src)?;
        let (j, drel) = self.route_index(dst)?;
        let (spoint, dpoint) = (shown(&self.mounts[i].point), shown(&self.mounts[j].point));
        if i == j {
            let fs = &mut self.mounts[i].fs;
            let data = fs
                .read(&srel, self.limits.file_in_memory)
                .map_err(at(&spoint))?;
            return fs.write(&drel, &data, false).map_err(at(&dpoint));
        }
        let (a, b) = self.mounts.split_at_mut(i.max(j));
        let (from, to) = if i < j {
            (&mut a[i], &mut b[0])
        } else {
            (&mut b[0], &mut a[j])
        };
        let mut reader = from.fs.open_read(&srel).map_err(at(&spoint))?;
        to.fs
            .write_from(&drel, &mut reader, false)
            .map(|_| ())
            .map_err(at(&dpoint))
    }

    /// The filesystem holding `path`, the path inside it, and its mount point as shown in
    /// errors (for [`at`]).
    fn fs(&mut self, path: &str) -> Result<(&mut Box<dyn GuestFs>, String, String), String> {
        let (m, rel) = self.route(path)?;
        let point = shown(&m.point);
        Ok((&mut m.fs, rel, point))
    }

    /// A whole guest file, at most [`Limits::file_in_memory`] bytes.
    fn read_guest(&mut self, path: &str) -> Result<Vec<u8>, String> {
        let max = self.limits.file_in_memory;
        let (fs, rel, p) = self.fs(path)?;
        fs.read(&rel, max).map_err(at(&p))
    }

    fn write_guest(&mut self, path: &str, data: &[u8], append: bool) -> Result<(), String> {
        let (fs, rel, p) = self.fs(path)?;
        fs.write(&rel, data, append).map_err(at(&p))
    }

    fn kind(&mut self, path: &str) -> Result<Option<bool>, String> {
        let (fs, rel, p) = self.fs(path)?;
        fs.kind(&rel).map_err(at(&p))
    }

    fn mkdir_p(&mut self, path: &str) -> Result<(), String> {
        let parts = normalize(path);
        for i in 1..=parts.len() {
            let p = format!("/{}", parts[..i].join("/"));
            match self.kind(&p)? {
                Some(true) => {}
                Some(false) => return Err(format!("{p}: exists and is not a directory")),
                None => {
                    let (fs, rel, p) = self.fs(&p)?;
                    fs.mkdir(&rel).map_err(at(&p))?;
                }
            }
        }
        Ok(())
    }

    fn same_mount(&mut self, a: &str, b: &str) -> Result<bool, String> {
        let pa = self.route(a)?.0.point.clone();
        let pb = self.route(b)?.0.point.clone();
        Ok(pa == pb)
    }

    fn do_mount(&mut self, device: &str, point: &str, read_only: bool) -> Result<(), String> {
        abs(point)?;
        let parts = normalize(point);
        if self.mounts.iter().any(|m| m.point == parts) {
            return Err(format!("{point}: a filesystem is already mounted there"));
        }
        if self.mounts.len() >= self.limits.mounts {
            return Err(format!(
                "{point}: a plan run mounts at most {} filesystems at once; unmount one first",
                self.limits.mounts
            ));
        }
        // A mount point below another kernel mount is that directory of the guest tree, so
        // `command` sees the nested filesystem; the directory is resolved inside the guest.
        let host_dir = match self.route(point) {
            Ok((m, rel)) if m.fs.host_root().is_some() => {
                let host = m.fs.host_root().map(Path::to_path_buf).unwrap_or_default();
                if m.fs.kind(&rel).map_err(gerr)? != Some(true) {
                    return Err(format!(
                        "{point}: mount point is not a directory in the guest"
                    ));
                }
                let dir = DirFs::open(&host).map_err(gerr)?;
                dir.resolve_dir(&rel).map_err(gerr)?
            }
            Ok(_) => {
                return Err(format!(
                    "{point}: cannot mount below a user-space filesystem"
                ));
            }
            Err(_) if parts.is_empty() => {
                self.next_mount += 1;
                let d = self.work.join(format!("mnt{}", self.next_mount));
                std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
                d
            }
            Err(e) => return Err(e),
        };
        let fs = self.disk.mount(device, &host_dir, read_only)?;
        self.mounts.push(Mounted {
            point: parts,
            device: device.to_string(),
            host_dir,
            fs,
        });
        Ok(())
    }

    fn do_umount(&mut self, what: &str) -> Result<(), String> {
        let parts = normalize(what);
        let idx = self
            .mounts
            .iter()
            .position(|m| m.point == parts && what.starts_with('/') && !what.starts_with("/dev/"))
            .or_else(|| self.mounts.iter().position(|m| m.device == what))
            .ok_or_else(|| format!("{what}: not mounted"))?;
        let point = self.mounts[idx].point.clone();
        if self
            .mounts
            .iter()
            .any(|m| m.point.len() > point.len() && m.point.starts_with(&point))
        {
            return Err(format!(
                "{what}: filesystems are mounted below it: unmount them first"
            ));
        }
        let m = self.mounts.remove(idx);
        drop(m.fs);
        self.disk.unmount(&m.host_dir)
    }

    /// Unmounts everything (innermost first). Called at the end of a run, failed or not.
    pub fn unmount_all(&mut self) -> Result<(), String> {
        let mut first_err = None;
        self.mounts.sort_by_key(|m| m.point.len());
        while let Some(m) = self.mounts.pop() {
            drop(m.fs);
            if let Err(e) = self.disk.unmount(&m.host_dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The activity log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log).into_owned()
    }

    /// The paths `pattern` matches (a path without wildcards is itself); more than
    /// [`Limits::glob_combinations`] is an error, found before the list grows past it.
    fn glob_expand(&mut self, pattern: &str) -> Result<Vec<String>, String> {
        if !pattern.starts_with('/') || !pattern.contains(['*', '?', '[']) {
            return Ok(vec![pattern.to_string()]);
        }
        let cap = self.limits.glob_combinations;
        let mut found = vec![String::new()];
        for comp in normalize(pattern) {
            let mut next = Vec::new();
            for base in &found {
                let dir = if base.is_empty() {
                    "/".to_string()
                } else {
                    base.clone()
                };
                if comp.contains(['*', '?', '[']) {
                    let names = match self.fs(&dir) {
                        Ok((fs, rel, _)) => fs.list(&rel).unwrap_or_default(),
                        Err(_) => Vec::new(),
                    };
                    for n in names.iter().filter(|n| {
                        wildcard(&comp, n) && (!n.starts_with('.') || comp.starts_with('.'))
                    }) {
                        next.push(format!("{base}/{n}"));
                    }
                } else {
                    let p = format!("{base}/{comp}");
                    if self.kind(&p).ok().flatten().is_some() {
                        next.push(p);
                    }
                }
                if next.len() > cap {
                    return Err(format!(
                        "{pattern}: matches more than {cap} paths, the most one glob may run"
                    ));
                }
            }
            found = next;
        }
        Ok(found)
    }

    fn copy_in(&mut self, local: &str, guest_dir: &str, depth: usize) -> Result<(), String> {
        let name = normalize(local)
            .pop()
            .ok_or_else(|| format!("{local}: nothing to copy"))?;
        let target = format!("{}/{name}", guest_dir.trim_end_matches('/'));
        let rel = normalize(local).join("/");
        match self.scratch.kind(&rel).map_err(gerr)? {
            None => Err(format!("{local}: no such local file or directory")),
            Some(false) => self.scratch_to_guest(&rel, &target),
            Some(true) => {
                if depth >= MAX_DEPTH {
                    return Err(gerr(GuestError::TooDeep { path: rel }));
                }
                if self.kind(&target)?.is_none() {
                    let (fs, rel, p) = self.fs(&target)?;
                    fs.mkdir(&rel).map_err(at(&p))?;
                }
                for n in self.scratch.list(&rel).map_err(gerr)? {
                    self.copy_in(&format!("{rel}/{n}"), &target, depth + 1)?;
                }
                Ok(())
            }
        }
    }

    fn copy_out(&mut self, guest: &str, local_dir: &str, depth: usize) -> Result<(), String> {
        let name = normalize(guest).pop().unwrap_or_default();
        let ldir = normalize(local_dir).join("/");
        let target = if ldir.is_empty() {
            name.clone()
        } else {
            format!("{ldir}/{name}")
        };
        match self.kind(guest)? {
            None => Err(format!("{guest}: no such file or directory")),
            Some(false) => self.guest_to_scratch(guest, &target),
            Some(true) => {
                if depth >= MAX_DEPTH {
                    return Err(gerr(GuestError::TooDeep {
                        path: guest.to_string(),
                    }));
                }
                if self.scratch.kind(&target).map_err(gerr)?.is_none() {
                    self.scratch.mkdir(&target).map_err(gerr)?;
                }
                let names = {
                    let (fs, rel, p) = self.fs(guest)?;
                    fs.list(&rel).map_err(at(&p))?
                };
                for n in names {
                    let path = format!("{}/{n}", guest.trim_end_matches('/'));
                    self.copy_out(&path, &target, depth + 1)?;
                }
                Ok(())
            }
        }
    }

    fn inspect_os(&mut self) -> Result<Vec<u8>, String> {
        let mut roots = Vec::new();
        let markers = [
            "etc/os-release",
            "etc/redhat-release",
            "etc/SuSE-release",
            "Windows/System32",
            "boot.cfg",
        ];
        for (dev, fstype) in self.disk.filesystems()? {
            if !matches!(
                fstype.as_str(),
                "ext2" | "ext3" | "ext4" | "xfs" | "btrfs" | "vfat" | "ntfs"
            ) {
                continue;
            }
            if let Some(m) = self.mounts.iter_mut().find(|m| m.device == dev) {
                if markers.iter().any(|k| matches!(m.fs.kind(k), Ok(Some(_)))) {
                    roots.push(dev);
                }
                continue;
            }
            self.next_mount += 1;
            let d = self.work.join(format!("inspect{}", self.next_mount));
            std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
            if let Ok(mut fs) = self.disk.mount(&dev, &d, true) {
                let hit = markers.iter().any(|k| matches!(fs.kind(k), Ok(Some(_))));
                drop(fs);
                self.disk.unmount(&d)?;
                if hit {
                    roots.push(dev);
                }
            }
        }
        Ok(roots
            .iter()
            .map(|r| format!("{r}\n"))
            .collect::<String>()
            .into_bytes())
    }

    /// Runs one guest command; returns its output.
    fn guest(
        &mut self,
        name: &str,
        args: &[String],
        stdin: Option<&str>,
    ) -> Result<Vec<u8>, String> {
        let verb = check_arity(name, args.len())?;
        let a = |i: usize| args[i].as_str();
        let mut out = Vec::new();
        match verb {
            Verb::Echo => {
                out = format!("{}\n", args.join(" ")).into_bytes();
            }
            Verb::Upload => {
                if a(0) == "-" {
                    let data = stdin.ok_or("upload -: no here-document given")?;
                    self.write_guest(a(1), data.as_bytes(), false)?;
                } else {
                    self.scratch_to_guest(&normalize(a(0)).join("/"), a(1))?;
                }
            }
            Verb::Download => {
                if a(1) == "-" {
                    out = self.read_guest(a(0))?;
                } else {
                    self.guest_to_scratch(a(0), &normalize(a(1)).join("/"))?;
                }
            }
            Verb::Mkdir => {
                let (fs, rel, p) = self.fs(a(0))?;
                fs.mkdir(&rel).map_err(at(&p))?;
            }
            Verb::MkdirP => self.mkdir_p(a(0))?,
            Verb::Cat => out = self.read_guest(a(0))?,
            Verb::Chmod => {
                let mode = parse_mode(a(0))?;
                let (fs, rel, p) = self.fs(a(1))?;
                fs.chmod(mode, &rel).map_err(at(&p))?;
            }
            Verb::Mount => self.do_mount(a(0), a(1), false)?,
            Verb::MountRo => self.do_mount(a(0), a(1), true)?,
            Verb::Umount => self.do_umount(a(0))?,
            Verb::UmountAll => self.unmount_all()?,
            Verb::ListFilesystems => {
                for (d, t) in self.disk.filesystems()? {
                    out.extend_from_slice(format!("{d}: {t}\n").as_bytes());
                }
            }
            Verb::ListDevices => {
                out = self
                    .disk
                    .devices()
                    .iter()
                    .map(|d| format!("{d}\n"))
                    .collect::<String>()
                    .into_bytes()
            }
            Verb::ListPartitions => {
                out = self
                    .disk
                    .partitions()
                    .iter()
                    .map(|d| format!("{d}\n"))
                    .collect::<String>()
                    .into_bytes()
            }
            Verb::Vgs => {
                out = self
                    .disk
                    .vgs()?
                    .iter()
                    .map(|d| format!("{d}\n"))
                    .collect::<String>()
                    .into_bytes()
            }
            Verb::Lvs => {
                out = self
                    .disk
                    .lvs()?
                    .iter()
                    .map(|d| format!("{d}\n"))
                    .collect::<String>()
                    .into_bytes()
            }
            Verb::Vgrename => self.disk.vgrename(a(0), a(1))?,
            Verb::Statvfs => {
                let (fs, _, p) = self.fs(a(0))?;
                let s = fs.statvfs().map_err(at(&p))?;
                out = format!(
                    "bsize: {}\nfrsize: {}\nblocks: {}\nbfree: {}\nbavail: {}\nfiles: {}\nffree: {}\nfavail: {}\nfsid: {}\nflag: {}\nnamemax: {}\n",
                    s.bsize, s.frsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.favail, s.fsid, s.flag, s.namemax
                )
                .into_bytes();
            }
            Verb::Rm | Verb::RmF | Verb::RmRf | Verb::Rmdir => {
                let kind = self.kind(a(0))?;
                match (verb, kind) {
                    (Verb::RmF | Verb::RmRf, None) => {}
                    (_, None) => return Err(format!("{}: no such file or directory", a(0))),
                    (Verb::Rm | Verb::RmF, Some(true)) => {
                        return Err(format!("{}: is a directory (use rm-rf)", a(0)));
                    }
                    (Verb::Rmdir, Some(false)) => return Err(format!("{}: not a directory", a(0))),
                    _ => {
                        let (fs, rel, p) = self.fs(a(0))?;
                        fs.remove(&rel, verb == Verb::RmRf).map_err(at(&p))?;
                    }
                }
            }
            Verb::Touch => {
                let (fs, rel, p) = self.fs(a(0))?;
                fs.touch(&rel).map_err(at(&p))?;
            }
            Verb::Ls => {
                let (fs, rel, p) = self.fs(a(0))?;
                out = fs
                    .list(&rel)
                    .map_err(at(&p))?
                    .iter()
                    .map(|n| format!("{n}\n"))
                    .collect::<String>()
                    .into_bytes();
            }
            Verb::Ln | Verb::LnF | Verb::LnS | Verb::LnSf => {
                let force = matches!(verb, Verb::LnF | Verb::LnSf);
                if force && self.kind(a(1))? == Some(false) {
                    let (fs, rel, p) = self.fs(a(1))?;
                    fs.remove(&rel, false).map_err(at(&p))?;
                }
                if matches!(verb, Verb::LnS | Verb::LnSf) {
                    let (fs, rel, p) = self.fs(a(1))?;
                    fs.symlink(a(0), &rel).map_err(at(&p))?;
                } else {
                    if !self.same_mount(a(0), a(1))? {
                        return Err("hard links cannot cross filesystems".into());
                    }
                    let link = self.route(a(1))?.1;
                    let (fs, target, p) = self.fs(a(0))?;
                    fs.hardlink(&target, &link).map_err(at(&p))?;
                }
            }
            Verb::Cp | Verb::CpA | Verb::CpR | Verb::Mv => {
                let (src, mut dst) = (a(0).to_string(), a(1).to_string());
                if self.kind(&dst)? == Some(true) {
                    let base = normalize(&src).pop().ok_or("cannot copy /")?;
                    dst = format!("{}/{base}", dst.trim_end_matches('/'));
                }
                if verb == Verb::Cp && self.kind(&src)? == Some(true) {
                    return Err(format!("{src}: is a directory (use cp-r or cp-a)"));
                }
                if self.same_mount(&src, &dst)? {
                    let d = self.route(&dst)?.1;
                    let (fs, s, p) = self.fs(&src)?;
                    if verb == Verb::Mv {
                        fs.rename(&s, &d)
                    } else {
                        fs.copy(&s, &d)
                    }
                    .map_err(at(&p))?;
                } else {
                    if self.kind(&src)? != Some(false) {
                        return Err("copying a directory between filesystems is not supported; copy its files".into());
                    }
                    self.guest_to_guest(&src, &dst)?;
                    if verb == Verb::Mv {
                        let (fs, rel, p) = self.fs(&src)?;
                        fs.remove(&rel, false).map_err(at(&p))?;
                    }
                }
            }
            Verb::CopyIn => {
                let dir = args.last().map(String::as_str).unwrap_or("/");
                if self.kind(dir)? != Some(true) {
                    return Err(format!("{dir}: target is not a directory in the guest"));
                }
                for l in &args[..args.len() - 1] {
                    self.copy_in(l, dir, 0)?;
                }
            }
            Verb::CopyOut => {
                let ldir = args.last().map(String::as_str).unwrap_or(".").to_string();
                if self
                    .scratch
                    .kind(&normalize(&ldir).join("/"))
                    .map_err(gerr)?
                    != Some(true)
                {
                    return Err(format!("{ldir}: local target is not a directory"));
                }
                for g in &args[..args.len() - 1] {
                    self.copy_out(g, &ldir, 0)?;
                }
            }
            Verb::Glob => {
                let (cmd, rest) = args.split_first().ok_or("glob: a command is required")?;
                let cap = self.limits.glob_combinations;
                let mut matches = Vec::with_capacity(rest.len());
                let mut combinations: usize = 1;
                for arg in rest {
                    let m = self.glob_expand(arg)?;
                    combinations = combinations.saturating_mul(m.len());
                    matches.push(m);
                }
                if combinations > cap {
                    let counts: Vec<String> = matches.iter().map(|m| m.len().to_string()).collect();
                    return Err(format!(
                        "glob: {} argument combinations ({}), more than the {cap} one glob may run",
                        counts.join(" × "),
                        if combinations == usize::MAX {
                            "too many to count".to_string()
                        } else {
                            combinations.to_string()
                        }
                    ));
                }
                // Odometer over the matches: one combination in memory at a time.
                let mut index = vec![0usize; matches.len()];
                for _ in 0..combinations {
                    if let Some(why) = self.local.stopped() {
                        return Err(why);
                    }
                    let combo: Vec<String> = index
                        .iter()
                        .zip(&matches)
                        .map(|(&i, m)| m[i].clone())
                        .collect();
                    let o = self.guest(cmd, &combo, stdin)?;
                    if out.len() as u64 + o.len() as u64 > self.limits.file_in_memory {
                        return Err(format!(
                            "glob: the output of {cmd} is larger than {} bytes",
                            self.limits.file_in_memory
                        ));
                    }
                    out.extend_from_slice(&o);
                    for k in (0..index.len()).rev() {
                        index[k] += 1;
                        if index[k] < matches[k].len() {
                            break;
                        }
                        index[k] = 0;
                    }
                }
            }
            Verb::Write | Verb::WriteAppend => {
                self.write_guest(a(0), a(1).as_bytes(), verb == Verb::WriteAppend)?;
            }
            Verb::Command | Verb::Sh => {
                let root = self
                    .mounts
                    .iter()
                    .find(|m| m.point.is_empty())
                    .and_then(|m| m.fs.host_root().map(Path::to_path_buf))
                    .ok_or_else(|| {
                        format!("{name}: needs a root filesystem mounted with the kernel at /")
                    })?;
                let argv = if verb == Verb::Sh {
                    vec!["/bin/sh".to_string(), "-c".to_string(), a(0).to_string()]
                } else {
                    split_words(a(0))
                };
                if argv.is_empty() {
                    return Err(format!("{name}: nothing to run"));
                }
                let o = self
                    .local
                    .run_in_guest(&root, &argv, stdin.map(str::as_bytes))?;
                if o.status != 0 {
                    return Err(format!(
                        "{} exited with status {}: {}",
                        argv[0],
                        o.status,
                        String::from_utf8_lossy(&o.stderr).trim()
                    ));
                }
                out = o.stdout;
            }
            Verb::CompressOut => {
                if a(0) != "gzip" {
                    return Err(format!(
                        "compress-out: {:?} is not supported; use gzip",
                        a(0)
                    ));
                }
                let (i, rel) = self.route_index(a(1))?;
                let point = shown(&self.mounts[i].point);
                let reader = self.mounts[i].fs.open_read(&rel).map_err(at(&point))?;
                let mut gz = flate2::read::GzEncoder::new(reader, flate2::Compression::default());
                self.scratch
                    .write_from(&normalize(a(2)).join("/"), &mut gz, false)
                    .map_err(gerr)?;
            }
            Verb::Version => {
                out = format!(
                    "major: 1\nminor: 48\nrelease: 0\nextra: streamer {}\n",
                    env!("CARGO_PKG_VERSION")
                )
                .into_bytes();
            }
            Verb::InspectOs => out = self.inspect_os()?,
            Verb::Exists | Verb::IsFile | Verb::IsDir => {
                let k = self.kind(a(0))?;
                let yes = match verb {
                    Verb::Exists => k.is_some(),
                    Verb::IsFile => k == Some(false),
                    _ => k == Some(true),
                };
                out = format!("{yes}\n").into_bytes();
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
