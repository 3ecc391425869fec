//! `MANIFEST.MF`: five `Key:Value` lines (the value runs to the end of the line, colons and
//! all); some bundles omit the final newline.

use super::BundleError;

/// A bundle's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `Artifact Name`: the bundle's name (may differ from the zip's file name).
    pub name: String,
    pub description: String,
    /// `Read Only:true` makes every extracted artifact read-only.
    pub read_only: bool,
    pub time_stamp: String,
    /// `Artifact Type`: `USER` in every bundle seen.
    pub artifact_type: String,
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Self, BundleError> {
        let mut m = Manifest {
            name: String::new(),
            description: String::new(),
            read_only: false,
            time_stamp: String::new(),
            artifact_type: "USER".into(),
        };
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(BundleError::Invalid(format!(
                    "MANIFEST.MF line {line:?} is not \"Key:Value\"."
                )));
            };
            let value = value.trim().to_string();
            match key.trim() {
                "Artifact Name" => m.name = value,
                "Description" => m.description = value,
                "Read Only" => m.read_only = value.eq_ignore_ascii_case("true"),
                "Time Stamp" => m.time_stamp = value,
                "Artifact Type" => m.artifact_type = value,
                // Unknown keys are kept out of the model but not refused.
                _ => {}
            }
        }
        if m.name.is_empty() {
            return Err(BundleError::Invalid(
                "MANIFEST.MF has no \"Artifact Name\".".into(),
            ));
        }
        Ok(m)
    }

    /// The manifest as HPE writes it.
    pub fn render(&self) -> String {
        format!(
            "Artifact Name:{}\nDescription:{}\nRead Only:{}\nTime Stamp:{}\nArtifact Type:{}\n",
            one_line(&self.name),
            one_line(&self.description),
            self.read_only,
            self.time_stamp,
            self.artifact_type
        )
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hpe_manifest_without_final_newline() {
        let m = Manifest::parse(
            "Artifact Name:HPE-RHEL7-EFI-2019-06-11-v5.0\nDescription:a: b\nRead Only:true\nTime Stamp:2019-06-11T11:22:36.362Z\nArtifact Type:USER",
        )
        .unwrap();
        assert_eq!(m.name, "HPE-RHEL7-EFI-2019-06-11-v5.0");
        assert_eq!(m.description, "a: b");
        assert!(m.read_only);
        assert_eq!(m.time_stamp, "2019-06-11T11:22:36.362Z");
        assert_eq!(Manifest::parse(&m.render()).unwrap(), m);
        assert!(Manifest::parse("Description:x\n").is_err());
    }
}
