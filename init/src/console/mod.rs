//! The maintenance menu on the serial console (`/init console`, supervised by PID 1 on
//! ttyS0). It waits for Enter, so boot messages stay readable, then offers the operator's
//! maintenance tasks. The dialogue is here, over any input and output, with the system
//! behind the [`Actions`] trait so it is tested without an appliance; `system` implements
//! the actions on the appliance.

pub mod system;

use std::io::{self, BufRead, Write};

use crate::config;

/// What the menu asks the system to do.
pub trait Actions {
    /// Version, addresses, role, service health, alerts, data usage, volumes.
    fn details(&mut self) -> String;
    /// The log names the operator can view (`kernel`, `init`, one per daemon).
    fn log_names(&mut self) -> Vec<String>;
    /// Shows one log (paged when on a terminal).
    fn show_log(&mut self, name: &str) -> Result<(), String>;
    /// The configuration file's current text (empty when there is none).
    fn config_text(&mut self) -> Result<String, String>;
    /// Replaces the configuration file (the text is already validated).
    fn save_config(&mut self, text: &str) -> Result<(), String>;
    /// Turns terminal echo on or off (for passwords); a no-op off a terminal.
    fn echo(&mut self, on: bool);
    /// Sets the Administrator password through deployd; returns a message for the operator.
    fn reset_password(&mut self, password: &str) -> Result<String, String>;
    /// Writes a support dump; returns where.
    fn support_dump(&mut self) -> Result<String, String>;
    /// Marks the data and configuration for erasure and reboots.
    fn factory_reset(&mut self) -> Result<(), String>;
    fn reboot(&mut self) -> Result<(), String>;
    fn power_off(&mut self) -> Result<(), String>;
    /// Runs a root shell until it exits.
    fn shell(&mut self) -> Result<(), String>;
    /// Runs `streamerctl ARGS` against this appliance's API, logged in as Administrator
    /// with `password`; its output.
    fn streamerctl(&mut self, password: &str, args: &[String]) -> Result<String, String>;
}

/// What the operator types to confirm a factory reset.
pub const FACTORY_RESET_CONFIRMATION: &str = "erase everything";

const MENU: &str = "\
Streamer maintenance
  1) Details (version, addresses, health, volumes)
  2) Logs (kernel and daemons)
  3) Management network and hostname
  4) Reset the Administrator password
  5) Support dump
  6) Factory reset
  7) Reboot
  8) Power off
  9) Root shell
  p) High availability: pair with another appliance, or unpair
  0) Leave the menu
";

/// Runs the menu until the input ends. Leaving the menu (0) goes back to waiting for
/// Enter, so the console is never left without it.
pub fn run(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    actions: &mut dyn Actions,
) -> io::Result<()> {
    loop {
        writeln!(out, "\nPress Enter for the maintenance menu.")?;
        out.flush()?;
        if read_line(input)?.is_none() {
            return Ok(());
        }
        if !menu(input, out, actions)? {
            return Ok(());
        }
    }
}

/// One visit to the menu; `false` when the input ended.
fn menu(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    actions: &mut dyn Actions,
) -> io::Result<bool> {
    loop {
        write!(out, "\n{MENU}choice> ")?;
        out.flush()?;
        let Some(choice) = read_line(input)? else {
            return Ok(false);
        };
        let result = match choice.as_str() {
            "1" => {
                write!(out, "{}", actions.details())?;
                Ok(())
            }
            "2" => logs(input, out, actions)?,
            "3" => network(input, out, actions)?,
            "4" => password(input, out, actions)?,
            "5" => actions
                .support_dump()
                .map(|path| writeln!(out, "support dump written to {path}").unwrap_or(())),
            "6" => factory_reset(input, out, actions)?,
            "7" => {
                if confirmed(input, out, "Reboot the appliance?")? {
                    actions.reboot()
                } else {
                    Ok(())
                }
            }
            "8" => {
                if confirmed(input, out, "Power off the appliance?")? {
                    actions.power_off()
                } else {
                    Ok(())
                }
            }
            "9" => {
                writeln!(out, "Root shell: `exit` returns to the menu.")?;
                actions.shell()
            }
            "p" | "P" => pairing(input, out, actions)?,
            "0" | "q" => return Ok(true),
            "" => Ok(()),
            other => {
                writeln!(
                    out,
                    "no such choice: {other:?} (type a number from 0 to 9, or p)"
                )?;
                Ok(())
            }
        };
        if let Err(e) = result {
            writeln!(out, "error: {e}")?;
        }
    }
}

/// A line without its end, or `None` at the end of the input.
fn read_line(input: &mut dyn BufRead) -> io::Result<Option<String>> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim().to_owned()))
}

fn ask(input: &mut dyn BufRead, out: &mut dyn Write, prompt: &str) -> io::Result<String> {
    write!(out, "{prompt}")?;
    out.flush()?;
    Ok(read_line(input)?.unwrap_or_default())
}

fn confirmed(input: &mut dyn BufRead, out: &mut dyn Write, question: &str) -> io::Result<bool> {
    let a = ask(input, out, &format!("{question} [y/N] "))?;
    Ok(matches!(a.as_str(), "y" | "Y" | "yes"))
}

fn logs(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    actions: &mut dyn Actions,
) -> io::Result<Result<(), String>> {
    let names = actions.log_names();
    let a = ask(
        input,
        out,
        &format!("Which log ({})? [kernel] ", names.join(", ")),
    )?;
    let name = if a.is_empty() { "kernel".to_owned() } else { a };
    if !names.contains(&name) {
        return Ok(Err(format!("no log named {name:?}")));
    }
    Ok(actions.show_log(&name))
}

fn network(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    actions: &mut dyn Actions,
) -> io::Result<Result<(), String>> {
    let text = match actions.config_text() {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    let path = std::path::Path::new(config::CONFIG_FILE);
    let current = config::parse_file(path, &text).unwrap_or_default();
    writeln!(
        out,
        "Management network: {} (now)",
        current
            .mgmt
            .as_ref()
            .map_or("dhcp (default)".to_owned(), |m| m.to_string())
    )?;
    writeln!(
        out,
        "Enter `dhcp` or `static:ADDRESS/PREFIX[,gw=GATEWAY][,dns=SERVER]...`;"
    )?;
    let mgmt = ask(input, out, "new setting (empty keeps it): ")?;
    let mut new_text = text.clone();
    if !mgmt.is_empty() {
        if let Err(e) = config::parse_mgmt(&mgmt) {
            return Ok(Err(format!(
                "{mgmt:?} is not a management setting: {e}; nothing saved"
            )));
        }
        new_text = config::set_key(&new_text, "mgmt", &mgmt);
    }
    let hostname = ask(
        input,
        out,
        &format!(
            "hostname [{}] (empty keeps it): ",
            current.hostname.as_deref().unwrap_or("streamer")
        ),
    )?;
    if !hostname.is_empty() {
        new_text = config::set_key(&new_text, "hostname", &hostname);
    }
    if new_text == text {
        writeln!(out, "nothing changed")?;
        return Ok(Ok(()));
    }
    // The whole file is checked as init will read it at the next boot.
    if let Err(e) = config::parse_file(path, &new_text) {
        return Ok(Err(format!("{e}; nothing saved")));
    }
    if let Err(e) = actions.save_config(&new_text) {
        return Ok(Err(e));
    }
    writeln!(
        out,
        "saved to {}; it applies at the next boot",
        config::CONFIG_FILE
    )?;
    if confirmed(input, out, "Reboot now?")? {
        return Ok(actions.reboot());
    }
    Ok(Ok(()))
}

fn password(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    actions: &mut dyn Actions,
) -> io::Result<Result<(), String>> {
    actions.echo(false);
    let first = ask(input, out, "new Administrator password: ");
    writeln!(out)?;
    let second = ask(input, out, "again: ");
    writeln!(out)?;
    actions.echo(true);
    let (first, second) = (first?, second?);
    if first != second {
        return Ok(Err("the passwords differ; nothing changed".into()));
    }
    let min = crate::services::MIN_PASSWORD_LEN;
    if first.chars().count() < min {
        return Ok(Err(format!(
            "the password needs at least {min} characters; nothing changed"
        )));
    }
    Ok(actions
        .reset_password(&first)
        .map(|m| writeln!(out, "{m}").unwrap_or(())))
}

const PAIRING_MENU: &str = "\
  1) Show this appliance's pair state, nodes and alerts
  2) Start a pairing here (this appliance's artifacts are kept): make join tokens
  3) Join the pair being made on another appliance, with its join token
  4) Unpair this appliance (it keeps every artifact and restarts)
";

/// The pairing menu: each choice is an API call made with `streamerctl` as Administrator.
fn pairing(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    actions: &mut dyn Actions,
) -> io::Result<Result<(), String>> {
    write!(out, "{PAIRING_MENU}")?;
    let choice = ask(input, out, "choice (empty: back)> ")?;
    let args: Vec<String> = match choice.as_str() {
        "" => return Ok(Ok(())),
        "1" => vec!["appliance".into(), "pairing".into()],
        "2" => {
            let address = ask(
                input,
                out,
                "this appliance's address on the enclosure network: ",
            )?;
            let vip = ask(
                input,
                out,
                "management virtual IP with prefix (e.g. 10.0.0.100/24): ",
            )?;
            let witness = ask(input, out, "witness host's address: ")?;
            [
                "appliance",
                "pair",
                "--address",
                &address,
                "--virtual-ip",
                &vip,
            ]
            .into_iter()
            .map(String::from)
            .chain(["--witness".to_string(), witness])
            .collect()
        }
        "3" => {
            let with = ask(input, out, "first appliance's address: ")?;
            let token = ask(input, out, "join token: ")?;
            let address = ask(
                input,
                out,
                "this appliance's address on the enclosure network: ",
            )?;
            ["appliance", "join", "--pair-with", &with, "--token", &token]
                .into_iter()
                .map(String::from)
                .chain(["--address".to_string(), address])
                .collect()
        }
        "4" => {
            if !confirmed(input, out, "Unpair this appliance and restart it?")? {
                return Ok(Ok(()));
            }
            vec!["appliance".into(), "unpair".into(), "--yes".into()]
        }
        other => return Ok(Err(format!("no such choice: {other:?}"))),
    };
    actions.echo(false);
    let password = ask(input, out, "Administrator password: ");
    writeln!(out)?;
    actions.echo(true);
    let password = password?;
    let mut result = actions.streamerctl(&password, &args);
    if choice == "1" {
        for more in [["appliance", "nodes"], ["appliance", "alerts"]] {
            let more: Vec<String> = more.into_iter().map(String::from).collect();
            result = result.and_then(|a| actions.streamerctl(&password, &more).map(|b| a + &b));
        }
    }
    Ok(result.map(|text| write!(out, "{text}").unwrap_or(())))
}

fn factory_reset(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    actions: &mut dyn Actions,
) -> io::Result<Result<(), String>> {
    writeln!(
        out,
        "Factory reset erases every golden image, OS volume, plan and user, and the \
         network configuration, then reboots."
    )?;
    let a = ask(
        input,
        out,
        &format!("Type `{FACTORY_RESET_CONFIRMATION}` to confirm: "),
    )?;
    if a != FACTORY_RESET_CONFIRMATION {
        writeln!(out, "not confirmed; nothing erased")?;
        return Ok(Ok(()));
    }
    Ok(actions.factory_reset())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Default)]
    struct Fake {
        calls: Vec<String>,
        config: String,
        echo_off: bool,
    }

    impl Actions for Fake {
        fn details(&mut self) -> String {
            self.calls.push("details".into());
            "Hostname streamer\n".into()
        }
        fn log_names(&mut self) -> Vec<String> {
            vec!["kernel".into(), "deployd".into()]
        }
        fn show_log(&mut self, name: &str) -> Result<(), String> {
            self.calls.push(format!("log {name}"));
            Ok(())
        }
        fn config_text(&mut self) -> Result<String, String> {
            Ok(self.config.clone())
        }
        fn save_config(&mut self, text: &str) -> Result<(), String> {
            self.calls.push("save".into());
            self.config = text.into();
            Ok(())
        }
        fn echo(&mut self, on: bool) {
            self.echo_off = !on;
            self.calls.push(format!("echo {on}"));
        }
        fn reset_password(&mut self, password: &str) -> Result<String, String> {
            self.calls.push(format!("password {password}"));
            Ok("password reset".into())
        }
        fn support_dump(&mut self) -> Result<String, String> {
            self.calls.push("dump".into());
            Ok("/data/support/x.tar.gz".into())
        }
        fn factory_reset(&mut self) -> Result<(), String> {
            self.calls.push("factory reset".into());
            Ok(())
        }
        fn reboot(&mut self) -> Result<(), String> {
            self.calls.push("reboot".into());
            Ok(())
        }
        fn power_off(&mut self) -> Result<(), String> {
            self.calls.push("power off".into());
            Ok(())
        }
        fn streamerctl(&mut self, password: &str, args: &[String]) -> Result<String, String> {
            self.calls
                .push(format!("streamerctl[{password}] {}", args.join(" ")));
            Ok("ok\n".into())
        }
        fn shell(&mut self) -> Result<(), String> {
            self.calls.push("shell".into());
            Ok(())
        }
    }

    fn session(input: &str, fake: &mut Fake) -> String {
        let mut out = Vec::new();
        run(&mut input.as_bytes(), &mut out, fake).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn waits_for_enter_then_runs_each_choice() {
        let mut f = Fake::default();
        let out = session("\n1\n2\ndeployd\n5\n9\n0\n\n8\ny\n", &mut f);
        assert_eq!(
            f.calls,
            ["details", "log deployd", "dump", "shell", "power off"]
        );
        assert!(out.starts_with("\nPress Enter for the maintenance menu."));
        assert!(out.contains("Hostname streamer"));
        assert!(out.contains("support dump written to /data/support/x.tar.gz"));
        // Leaving the menu returns to the Enter prompt.
        assert_eq!(out.matches("Press Enter").count(), 2);
    }

    #[test]
    fn pairing_choices_run_streamerctl_as_administrator() {
        let mut f = Fake::default();
        let out = session(
            "\np\n2\n10.0.0.1\n10.0.0.100/24\n10.0.0.3\nsecret-pw\np\n4\nn\np\n1\npw\n",
            &mut f,
        );
        let runs: Vec<&String> = f.calls.iter().filter(|c| !c.starts_with("echo")).collect();
        assert_eq!(
            runs,
            [
                "streamerctl[secret-pw] appliance pair --address 10.0.0.1 --virtual-ip \
                 10.0.0.100/24 --witness 10.0.0.3",
                "streamerctl[pw] appliance pairing",
                "streamerctl[pw] appliance nodes",
                "streamerctl[pw] appliance alerts",
            ]
        );
        // The password is asked with the terminal's echo off.
        assert_eq!(f.calls.iter().filter(|c| *c == "echo false").count(), 2);
        assert!(!out.contains("secret-pw"), "{out}");
    }

    #[test]
    fn destructive_choices_need_confirmation() {
        let mut f = Fake::default();
        let out = session("\n7\n\n8\nn\n6\nyes\n6\nerase everything\n", &mut f);
        assert_eq!(f.calls, ["factory reset"]);
        assert!(out.contains("not confirmed; nothing erased"));
    }

    #[test]
    fn unknown_choices_and_unknown_logs_are_explained() {
        let mut f = Fake::default();
        let out = session("\n42\n2\nsecret\n", &mut f);
        assert!(out.contains("no such choice: \"42\""));
        assert!(out.contains("error: no log named \"secret\""));
        assert!(f.calls.is_empty());
    }

    #[test]
    fn password_reset_checks_both_entries_and_length() {
        let mut f = Fake::default();
        let out = session(
            "\n4\nlongenough1\nlongenough2\n4\nshort\nshort\n4\ngood-pass\ngood-pass\n",
            &mut f,
        );
        assert!(out.contains("error: the passwords differ; nothing changed"));
        assert!(out.contains("error: the password needs at least 8 characters"));
        let echo = ["echo false", "echo true"];
        let expected: Vec<&str> = [echo, echo, echo]
            .concat()
            .into_iter()
            .chain(["password good-pass"])
            .collect();
        assert_eq!(f.calls, expected);
        assert!(!f.echo_off, "echo is back on after the prompt");
    }

    #[test]
    fn network_settings_are_validated_before_saving() {
        let mut f = Fake {
            config: "# ours\nmgmt = dhcp\n".into(),
            ..Fake::default()
        };
        let out = session("\n3\nstatic:10.0.0.500/24\n", &mut f);
        assert!(out.contains("is not a management setting"), "{out}");
        assert!(f.calls.is_empty());

        let out = session(
            "\n3\nstatic:192.168.10.5/24,gw=192.168.10.1\nlab-a\nn\n",
            &mut f,
        );
        assert!(out.contains("Management network: dhcp (now)"));
        assert!(out.contains("it applies at the next boot"));
        assert_eq!(
            f.config,
            "# ours\nmgmt = static:192.168.10.5/24,gw=192.168.10.1\nhostname = lab-a\n"
        );
        assert_eq!(f.calls, ["save"]);

        let out = session("\n3\n\n\n", &mut f);
        assert!(out.contains("nothing changed"));
        let out = session("\n3\n\nbad_host!\n", &mut f);
        assert!(
            out.contains("hostname") && out.contains("nothing saved"),
            "{out}"
        );
    }
}
