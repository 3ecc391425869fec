//! iSCSI text parameters (RFC 7143 §6.1): `key=value` pairs, each ended by a NUL, in the data
//! segment of Login and Text PDUs; and the encodings of binary values (`0x…` hex, `0b…`
//! base64) that CHAP uses.

use base64::Engine;

/// Longest key accepted (RFC 7143 §6.1: 63 bytes).
const MAX_KEY: usize = 63;
/// Longest value accepted (a CHAP challenge in hex is the longest a peer needs here).
const MAX_VALUE: usize = 8192;

/// The pairs of a data segment, in order. A segment may end without its last NUL.
pub fn parse(data: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in data.split(|b| *b == 0).filter(|i| !i.is_empty()) {
        let text = std::str::from_utf8(item)
            .map_err(|_| "a text parameter that is not UTF-8".to_string())?;
        let (k, v) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?} is not key=value"))?;
        if k.is_empty() || k.len() > MAX_KEY || v.len() > MAX_VALUE {
            return Err(format!("the text parameter {k:?} is too long or empty"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Encodes `pairs` as a data segment.
pub fn encode(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// A binary value: `0x` hex or `0b` base64 (RFC 7143 §6.1, "binary-value").
pub fn decode_binary(v: &str) -> Option<Vec<u8>> {
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        let hex = if hex.len() % 2 == 1 {
            format!("0{hex}")
        } else {
            hex.to_string()
        };
        return hex::decode(hex).ok();
    }
    if let Some(b64) = v.strip_prefix("0b").or_else(|| v.strip_prefix("0B")) {
        return base64::engine::general_purpose::STANDARD.decode(b64).ok();
    }
    None
}

/// `bytes` as a `0x` hex value.
pub fn encode_binary(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_read_back_and_bad_text_is_named() {
        let pairs = vec![
            (
                "InitiatorName".to_string(),
                "iqn.1993-08.org.debian:01".to_string(),
            ),
            ("HeaderDigest".to_string(), "CRC32C,None".to_string()),
        ];
        assert_eq!(parse(&encode(&pairs)).unwrap(), pairs);
        // Without the last NUL, and with padding NULs.
        assert_eq!(parse(b"A=1\0B=2").unwrap().len(), 2);
        assert_eq!(parse(b"A=1\0\0\0").unwrap().len(), 1);
        assert!(parse(b"novalue\0").unwrap_err().contains("key=value"));
        assert!(parse(&[0xff, b'=', b'1']).is_err());
        assert!(parse(format!("{}=1", "k".repeat(64)).as_bytes()).is_err());
    }

    #[test]
    fn binary_values_in_hex_and_base64() {
        assert_eq!(decode_binary("0x0aFF").unwrap(), [0x0a, 0xff]);
        assert_eq!(decode_binary("0xaff").unwrap(), [0x0a, 0xff]);
        assert_eq!(decode_binary("0bCv8=").unwrap(), [0x0a, 0xff]);
        assert_eq!(decode_binary("12"), None);
        assert_eq!(encode_binary(&[1, 0xab]), "0x01ab");
    }
}
