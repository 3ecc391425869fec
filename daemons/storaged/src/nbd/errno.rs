//! Mapping device errors to the errno values NBD puts on the wire.
//!
//! Clients act on very few errors: ENOSPC tells a guest's filesystem it is out of room, so it
//! must survive the trip; anything else the device reports is, to the client, an I/O error.
//! Request-validation errors (EINVAL, EPERM) are chosen by the transmission code, not here.

use std::io;

use nbd_wire::{EIO, ENOSPC};

/// The NBD errno to send for a failed device operation.
pub fn errno_of(err: &io::Error) -> u32 {
    let out_of_space = matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || matches!(
            err.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        );
    if out_of_space { ENOSPC } else { EIO }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_survives_and_everything_else_is_eio() {
        assert_eq!(errno_of(&io::Error::from_raw_os_error(libc::ENOSPC)), 28);
        assert_eq!(errno_of(&io::Error::from_raw_os_error(libc::EDQUOT)), 28);
        assert_eq!(errno_of(&io::Error::from(io::ErrorKind::StorageFull)), 28);
        assert_eq!(errno_of(&io::Error::from_raw_os_error(libc::EIO)), 5);
        assert_eq!(errno_of(&io::Error::from_raw_os_error(libc::EACCES)), 5);
        assert_eq!(errno_of(&io::Error::other("layer checksum mismatch")), 5);
    }
}
