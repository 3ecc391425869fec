//! The configuration file the image ships is one init reads without complaint.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;

#[test]
fn the_shipped_configuration_parses_as_init_reads_it() {
    let s = streamer_init::config::parse_file(
        Path::new("streamer.conf"),
        streamer_image::DEFAULT_CONFIG,
    )
    .unwrap();
    assert_eq!(s.hostname.as_deref(), Some("streamer"));
    assert_eq!(s.mgmt, Some(streamer_init::config::Mgmt::Dhcp));
}
